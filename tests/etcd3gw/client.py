"""What a user of the Python etcd3gw client (it speaks only the JSON gateway) does:
put/get/delete, prefix reads, leases with keys, locks, watches with the watch_prefix
iterator and cancellation. Run as `python3 client.py PORT`; any failed assertion exits non-zero."""

import sys
import threading
import time
import urllib.request

from etcd3gw.client import Etcd3Client

DEADLINE = 10.0

port = int(sys.argv[1])
c = Etcd3Client(host="127.0.0.1", port=port, api_path="/v3/")


def eventually(what, check):
    """Polls `check` until it holds or DEADLINE passes."""
    end = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < end, "not within %ss: %s" % (DEADLINE, what)
        time.sleep(0.05)


def watchers():
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return float(line.split()[1])


assert "version" in c.status()
assert c.put("foo", "bar")
assert c.get("foo") == [b"bar"], c.get("foo")
value, meta = c.get("foo", metadata=True)[0]
assert value == b"bar" and meta["key"] == b"foo" and meta["version"] == "1", meta
assert c.delete("foo")
assert c.get("foo") == []
assert not c.delete("foo")
assert c.create("once", "1") and not c.create("once", "2")
assert c.replace("once", "1", "3") and c.get("once") == [b"3"]

for k, v in [("/p/1", "a"), ("/p/2", "b"), ("/q", "c")]:
    c.put(k, v)
got = sorted((v, m["key"]) for v, m in c.get_prefix("/p/"))
assert got == [(b"a", b"/p/1"), (b"b", b"/p/2")], got
assert c.delete_prefix("/p/")
assert c.get_prefix("/p/") == []

lease = c.lease(ttl=30)
assert c.put("leased", "v", lease=lease)
assert lease.keys() == [b"leased"], lease.keys()
assert 0 < lease.ttl() <= 30
assert lease.refresh() == 30
assert lease.revoke()
assert c.get("leased") == []
assert lease.refresh() == -1, "an expired lease's keep-alive has no TTL"

# etcd3gw's lock: a txn on the key's creation revision, under a lease.
held = c.lock("job", ttl=30)
assert held.acquire() and held.is_acquired()
contender = c.lock("job", ttl=30)
assert not contender.acquire(), "the lock is held"
assert held.refresh() == 30
assert held.release() and not held.is_acquired()
assert contender.acquire() and contender.release()

baseline = watchers()
events, cancel = c.watch_prefix("/svc/")
c.put("/svc/a", "1")
c.put("/svc/b", "2")
c.delete("/svc/a")
c.put("/other", "x")
seen = []
ended = threading.Event()


def read():
    for event in events:
        seen.append((event.get("type", "PUT"), event["kv"]["key"], event["kv"].get("value")))
    ended.set()


threading.Thread(target=read, daemon=True).start()
eventually("three events", lambda: len(seen) >= 3)
assert seen == [("PUT", b"/svc/a", b"1"), ("PUT", b"/svc/b", b"2"), ("DELETE", b"/svc/a", None)], seen
cancel()
assert ended.wait(DEADLINE), "the iterator ends when the watch is cancelled"
eventually("the server drops the cancelled watch", lambda: watchers() == baseline)
print("etcd3gw: ok")
