//! Watch guarantees (etcd's API guarantees: ordered, unique, reliable, atomic, resumable,
//! bookmarkable), the victim mechanism for slow consumers, compaction, filters, prev_kv,
//! fragments and watch ids. Delivered events are compared with the events the KV store
//! reported for each write, not with the backend history the watchers read from.

use std::path::Path;

use detcd::mvcc::{no_leases, Config, KeyRange, KvStore, WatchConfig, WatchableStore, NO_WATCH_ID};
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::watch_create_request::FilterType;
use detcd::proto::etcdserverpb::*;
use detcd::proto::mvccpb::event::EventType;
use detcd::proto::mvccpb::Event;
use detcd::runtime::{seeded_rng, SimDisk};
use rand::Rng;
use tokio::sync::mpsc::Receiver;

struct Harness {
    store: WatchableStore,
    /// Every event written, in order, as the KV store reported it.
    log: Vec<Event>,
}

impl Harness {
    fn new(buffer: usize) -> Self {
        Self::with(Config::default(), buffer)
    }

    fn with(cfg: Config, buffer: usize) -> Self {
        Self::watching(
            cfg,
            WatchConfig {
                stream_buffer: buffer,
                max_revisions_per_sync: 7,
                ..WatchConfig::default()
            },
        )
    }

    fn watching(cfg: Config, watch: WatchConfig) -> Self {
        let kv = KvStore::open(&SimDisk::new(3), Path::new("/db"), cfg).unwrap();
        Harness {
            store: WatchableStore::new(kv, watch),
            log: Vec::new(),
        }
    }

    fn put(&mut self, key: &str, value: &str) {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        self.record(|kv| kv.put(&req, &no_leases).map(|r| r.1));
    }

    /// Runs a write through the watchable store and logs the events the KV store reported.
    fn record(&mut self, f: impl FnOnce(&mut KvStore) -> detcd::mvcc::error::Result<Vec<Event>>) {
        let ((), events) = self.store.write(|kv| Ok(((), f(kv)?))).unwrap();
        self.log.extend(events);
    }

    fn delete(&mut self, key: &str, end: &str) {
        let req = DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            ..Default::default()
        };
        self.record(|kv| kv.delete_range(&req).map(|r| r.1));
    }

    fn txn_puts(&mut self, keys: &[&str]) {
        let ops = keys
            .iter()
            .map(|k| RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: k.as_bytes().to_vec(),
                    value: b"t".to_vec(),
                    ..Default::default()
                })),
            })
            .collect();
        let req = TxnRequest {
            success: ops,
            ..Default::default()
        };
        self.record(|kv| kv.txn(&req, &no_leases).map(|r| r.1));
    }

    fn watch(&mut self, stream: u64, key: &str, end: &str, start: i64) -> i64 {
        let req = WatchCreateRequest {
            key: key.into(),
            range_end: end.into(),
            start_revision: start,
            ..Default::default()
        };
        let resp = self.store.watch(stream, &req);
        assert!(resp.created && !resp.canceled, "{resp:?}");
        resp.watch_id
    }

    /// Syncs until no watcher is behind, draining the stream each pass.
    fn settle(&mut self, rx: &mut Receiver<WatchResponse>, out: &mut Vec<WatchResponse>) {
        for pass in 0.. {
            out.extend(drain(rx));
            if !self.store.sync_watchers().unwrap() {
                break;
            }
            assert!(pass < 10_000, "watchers never caught up");
        }
        out.extend(drain(rx));
    }

    /// What a watcher of `range` from `start` must see: the log, filtered.
    fn expected(&self, range: &KeyRange, start: i64) -> Vec<Event> {
        self.log
            .iter()
            .filter(|e| rev(e) >= start && range.contains(&e.kv.as_ref().unwrap().key))
            .cloned()
            .collect()
    }
}

fn drain(rx: &mut Receiver<WatchResponse>) -> Vec<WatchResponse> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn rev(e: &Event) -> i64 {
    e.kv.as_ref().unwrap().mod_revision
}

fn events_of(resps: &[WatchResponse], id: i64) -> Vec<Event> {
    resps
        .iter()
        .filter(|r| r.watch_id == id)
        .flat_map(|r| r.events.clone())
        .collect()
}

/// Atomic: no revision is split across responses (without fragmenting).
fn assert_atomic(resps: &[WatchResponse], id: i64) {
    let mut seen_last = i64::MIN;
    for r in resps
        .iter()
        .filter(|r| r.watch_id == id && !r.events.is_empty())
    {
        let first = rev(&r.events[0]);
        assert!(
            first > seen_last,
            "revision {first} split across responses (previous ended at {seen_last})"
        );
        seen_last = rev(r.events.last().unwrap());
    }
}

#[test]
fn history_replay_then_live_stream_is_ordered_unique_and_gapless() {
    let mut h = Harness::new(128);
    for i in 0..20 {
        h.put(&format!("k{}", i % 4), &i.to_string());
    }
    let (s, mut rx) = h.store.new_stream();
    let id = h.watch(s, "k", "l", 3);
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    for i in 0..5 {
        h.put("k1", &format!("live{i}"));
        h.delete("k2", "");
    }
    h.settle(&mut rx, &mut got);
    assert_eq!(
        events_of(&got, id),
        h.expected(&KeyRange::Between(b"k".to_vec(), b"l".to_vec()), 3)
    );
    assert_atomic(&got, id);
}

#[test]
fn all_events_of_a_txn_arrive_in_one_response() {
    let mut h = Harness::new(128);
    let (s, mut rx) = h.store.new_stream();
    let id = h.watch(s, "a", "\0", 0);
    h.txn_puts(&["a", "b", "c"]);
    let resps = drain(&mut rx);
    assert_eq!(resps.len(), 1, "{resps:?}");
    assert_eq!(resps[0].events.len(), 3);
    assert_eq!(resps[0].watch_id, id);
    assert_eq!(resps[0].header.as_ref().unwrap().revision, 2);
}

/// A consumer that does not read must not stall writes: its watcher becomes a victim,
/// then catches up from the backend once the consumer reads, missing nothing.
#[test]
fn slow_consumers_become_victims_and_miss_nothing() {
    let mut h = Harness::new(2);
    let (s, mut rx) = h.store.new_stream();
    let id = h.watch(s, "k", "", 0);
    for i in 0..50 {
        h.put("k", &i.to_string());
    }
    assert_eq!(
        h.store.watcher_counts(),
        (0, 0, 1),
        "the full buffer made a victim"
    );
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    assert_eq!(
        events_of(&got, id),
        h.expected(&KeyRange::Single(b"k".to_vec()), 2)
    );
    assert_eq!(h.store.watcher_counts(), (1, 0, 0));
}

#[test]
fn a_watcher_behind_the_compaction_gets_the_compact_revision() {
    let mut h = Harness::new(16);
    for i in 0..10 {
        h.put("k", &i.to_string());
    }
    h.store
        .write(|kv| {
            Ok((
                kv.compact(&CompactionRequest {
                    revision: 6,
                    physical: true,
                })?,
                Vec::new(),
            ))
        })
        .unwrap();
    let (s, mut rx) = h.store.new_stream();
    let id = h.watch(s, "k", "", 2);
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].watch_id, got[0].compact_revision, got[0].canceled),
        (id, 6, true)
    );
    // Resuming at the compact revision works, as clients do after this response.
    let id = h.watch(s, "k", "", 6);
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    assert_eq!(
        events_of(&got, id),
        h.expected(&KeyRange::Single(b"k".to_vec()), 6)
    );
}

#[test]
fn filters_and_prev_kv() {
    let mut h = Harness::new(16);
    let (s, mut rx) = h.store.new_stream();
    let no_put = WatchCreateRequest {
        key: b"k".to_vec(),
        filters: vec![FilterType::Noput as i32],
        ..Default::default()
    };
    let no_put = h.store.watch(s, &no_put).watch_id;
    let prev = WatchCreateRequest {
        key: b"k".to_vec(),
        prev_kv: true,
        ..Default::default()
    };
    let prev = h.store.watch(s, &prev).watch_id;
    h.put("k", "v1");
    h.put("k", "v2");
    h.delete("k", "");
    let resps = drain(&mut rx);
    let deletes = events_of(&resps, no_put);
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].r#type, EventType::Delete as i32);
    let evs = events_of(&resps, prev);
    let prev_values: Vec<Option<Vec<u8>>> = evs
        .iter()
        .map(|e| e.prev_kv.as_ref().map(|p| p.value.clone()))
        .collect();
    assert_eq!(
        prev_values,
        vec![None, Some(b"v1".to_vec()), Some(b"v2".to_vec())]
    );
}

/// Resumable and bookmarkable: a progress response's revision is a point from which a new
/// watcher continues exactly where the old one stood.
#[test]
fn progress_bookmarks_resume_exactly() {
    let mut h = Harness::new(16);
    let (s, mut rx) = h.store.new_stream();
    let req = WatchCreateRequest {
        key: b"k".to_vec(),
        progress_notify: true,
        ..Default::default()
    };
    let id = h.store.watch(s, &req).watch_id;
    h.put("k", "1");
    h.store.progress_notify(); // elided: an event just went out
    h.put("other", "x");
    assert!(h.store.request_progress(s), "all watchers synced");
    h.store.progress_notify();
    let resps = drain(&mut rx);
    assert_eq!(resps.len(), 3, "{resps:?}");
    assert_eq!(
        (
            resps[1].watch_id,
            resps[1].header.as_ref().unwrap().revision
        ),
        (NO_WATCH_ID, 3)
    );
    assert_eq!(
        (
            resps[2].watch_id,
            resps[2].header.as_ref().unwrap().revision,
            resps[2].events.len()
        ),
        (id, 3, 0)
    );
    h.store.cancel(s, id).unwrap();
    h.put("k", "2");
    let resumed = h.watch(s, "k", "", 3 + 1);
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    assert_eq!(
        events_of(&got, resumed),
        h.expected(&KeyRange::Single(b"k".to_vec()), 4)
    );
    // A stream with a watcher behind gets no progress: its revision would be a lie.
    let (s2, _rx2) = h.store.new_stream();
    h.watch(s2, "k", "", 1);
    assert!(!h.store.request_progress(s2));
}

#[test]
fn large_responses_fragment_when_asked() {
    let mut h = Harness::with(
        Config {
            max_request_bytes: 1000,
            ..Config::default()
        },
        64,
    );
    for i in 0..6 {
        h.put(&format!("k{i}"), &"x".repeat(300));
    }
    let (s, mut rx) = h.store.new_stream();
    let req = WatchCreateRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        start_revision: 1,
        fragment: true,
        ..Default::default()
    };
    let id = h.store.watch(s, &req).watch_id;
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    assert!(got.len() > 1, "fragmented");
    assert!(got[..got.len() - 1].iter().all(|r| r.fragment) && !got.last().unwrap().fragment);
    assert_eq!(
        events_of(&got, id),
        h.expected(&KeyRange::Between(b"k".to_vec(), b"l".to_vec()), 1)
    );
}

#[test]
fn watch_ids_server_or_client_chosen() {
    let mut h = Harness::new(4);
    let (s, _rx) = h.store.new_stream();
    assert_eq!(h.watch(s, "a", "", 0), 0);
    assert_eq!(h.watch(s, "a", "", 0), 1);
    let five = WatchCreateRequest {
        key: b"a".to_vec(),
        watch_id: 5,
        ..Default::default()
    };
    assert_eq!(h.store.watch(s, &five).watch_id, 5);
    let dup = h.store.watch(s, &five);
    assert!(dup.canceled && dup.created && dup.watch_id == NO_WATCH_ID);
    assert_eq!(
        dup.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    let empty = WatchCreateRequest {
        key: b"b".to_vec(),
        range_end: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(
        h.store.watch(s, &empty).cancel_reason,
        "mvcc: watcher range is empty"
    );
    assert!(h.store.cancel(s, 1).unwrap().canceled);
    assert!(h.store.cancel(s, 1).is_none());
    assert_eq!(h.watch(s, "a", "", 0), 2, "ids count on past a freed one");
}

/// Random writes, watchers at random revisions and ranges, consumers that read at random
/// moments: every watcher ends with exactly its filtered share of the log, atomically.
#[test]
fn random_workloads_keep_every_guarantee() {
    for seed in 0..40 {
        let mut rng = seeded_rng(seed);
        let mut h = Harness::new(rng.random_range(1..5));
        let (s, mut rx) = h.store.new_stream();
        let mut watchers = Vec::new();
        let mut got = Vec::new();
        for step in 0..120 {
            let key = format!("k{}", rng.random_range(0..6));
            match rng.random_range(0..11) {
                0..=4 => h.put(&key, &step.to_string()),
                5 => h.delete(&key, &format!("k{}", rng.random_range(0..7))),
                6 => h.txn_puts(&["t1", "t2"]),
                7 => {
                    let (start, end) = (
                        format!("k{}", rng.random_range(0..3)),
                        format!("k{}", rng.random_range(3..7)),
                    );
                    let from = rng.random_range(0..h.store.kv().rev() + 2);
                    let id = h.watch(s, &start, &end, from);
                    let first = if from == 0 {
                        h.store.kv().rev() + 1
                    } else {
                        from
                    };
                    watchers.push((
                        id,
                        KeyRange::Between(start.into_bytes(), end.into_bytes()),
                        first,
                    ));
                }
                8 => got.extend(drain(&mut rx)),
                9 => {
                    h.store.sync_watchers().unwrap();
                }
                _ => {
                    let kv = h.store.kv_mut();
                    let revision = kv.rev() - rng.random_range(0..5);
                    if revision > kv.compact_rev() {
                        let physical = rng.random_bool(0.5);
                        kv.compact(&CompactionRequest { revision, physical })
                            .unwrap();
                    }
                }
            }
        }
        h.settle(&mut rx, &mut got);
        for (id, range, first) in &watchers {
            let delivered = events_of(&got, *id);
            let want = h.expected(range, *first);
            let ctx = format!("seed {seed} watcher {id} {range:?} first {first}");
            match got
                .iter()
                .find(|r| r.watch_id == *id && r.compact_revision != 0)
            {
                // Cut off by a compaction: what came before is a gapless prefix, and the
                // next event it needed was compacted away.
                Some(compacted) => {
                    assert!(compacted.canceled, "{ctx}");
                    assert_eq!(delivered[..], want[..delivered.len()], "{ctx}");
                    let next_needed = want.get(delivered.len()).map_or(i64::MAX, rev);
                    let next_rev = delivered.last().map_or(*first, |e| rev(e) + 1);
                    assert!(
                        next_rev < compacted.compact_revision,
                        "{ctx}: resumable at {next_rev}"
                    );
                    assert!(next_needed >= next_rev, "{ctx}");
                }
                None => assert_eq!(delivered, want, "{ctx}"),
            }
            assert_atomic(&got, *id);
        }
    }
}

/// A client that goes away closes its stream's receiver; the next send finds out and drops
/// the stream's watchers, wherever that happens (live notify, victim retry, catch-up).
#[test]
fn closed_streams_drop_their_watchers() {
    let mut h = Harness::new(1);
    let (victim, victim_rx) = h.store.new_stream();
    h.watch(victim, "k", "", 0);
    h.watch(victim, "k", "\0", 0);
    h.put("k", "1");
    h.put("k", "2");
    assert_eq!(
        h.store.watcher_counts(),
        (0, 0, 2),
        "a one-response buffer made both victims"
    );
    let (live, live_rx) = h.store.new_stream();
    let (behind, behind_rx) = h.store.new_stream();
    for (s, start) in [(live, 0), (behind, 1)] {
        h.watch(s, "k", "", start);
        h.watch(s, "a", "\0", start);
    }
    drop((live_rx, behind_rx, victim_rx));
    h.put("k", "3");
    assert_eq!(
        h.store.watcher_counts(),
        (0, 2, 2),
        "notify dropped the live stream"
    );
    h.store.sync_watchers().unwrap();
    assert_eq!(
        h.store.watcher_counts(),
        (0, 0, 0),
        "the sync pass dropped the others"
    );
}

/// Watching from the compaction revision is allowed (clients resume there after a
/// compacted response), so a delete at exactly that revision must survive compaction;
/// etcd loses it, detcd keeps the tombstone until the next compaction.
#[test]
fn a_delete_at_the_compaction_revision_reaches_watchers_starting_there() {
    let mut h = Harness::new(16);
    h.put("k", "1");
    h.delete("k", "");
    h.store
        .kv_mut()
        .compact(&CompactionRequest {
            revision: 3,
            physical: true,
        })
        .unwrap();
    let (s, mut rx) = h.store.new_stream();
    let id = h.watch(s, "k", "", 3);
    let mut got = Vec::new();
    h.settle(&mut rx, &mut got);
    let events = events_of(&got, id);
    assert_eq!(events.len(), 1, "{got:?}");
    assert_eq!(
        (events[0].r#type, rev(&events[0])),
        (EventType::Delete as i32, 3)
    );
}

/// Fan-out as Kubernetes clients make it: many watchers of one range (and of ranges and
/// keys that overlap it) on many streams, small buffers so that watchers keep becoming
/// victims and catching up, and txns whose keys reach one watcher through several keys.
/// Every watcher must get every event of its range exactly once, in revision order, each
/// revision in one response: a lost, doubled or reordered event fails the comparison.
#[test]
fn many_watchers_of_one_range_on_many_streams_get_every_event_once_in_order() {
    for seed in 0..20 {
        let mut rng = seeded_rng(seed);
        let mut h = Harness::watching(
            Config::default(),
            WatchConfig {
                stream_buffer: rng.random_range(1..6),
                max_watchers_per_sync: rng.random_range(1..8),
                max_revisions_per_sync: rng.random_range(1..5),
            },
        );
        let mut streams = Vec::new();
        let mut watchers = Vec::new();
        for _ in 0..6 {
            let (s, rx) = h.store.new_stream();
            let first = h.store.kv().rev() + 1;
            for (key, end) in [("k", "l"), ("k", "l"), ("k", "l"), ("k1", ""), ("k2", "\0")] {
                let id = h.watch(s, key, end, 0);
                watchers.push((
                    streams.len(),
                    id,
                    KeyRange::new(key.as_bytes(), end.as_bytes()),
                    first,
                ));
            }
            streams.push((rx, Vec::new()));
            h.put(&format!("k{}", rng.random_range(0..4)), "between streams");
        }
        for step in 0..150 {
            match rng.random_range(0..10) {
                0..=4 => h.put(&format!("k{}", rng.random_range(0..4)), &step.to_string()),
                5 => h.txn_puts(&["k1", "k2", "k3"]),
                6 => h.delete("k0", "k3"),
                7 => {
                    h.store.sync_watchers().unwrap();
                }
                _ => {
                    let (rx, got) = &mut streams[rng.random_range(0..6)];
                    got.extend(drain(rx));
                }
            }
        }
        for pass in 0.. {
            for (rx, got) in &mut streams {
                got.extend(drain(rx));
            }
            if !h.store.sync_watchers().unwrap() {
                break;
            }
            assert!(pass < 10_000, "seed {seed}: watchers never caught up");
        }
        for (rx, got) in &mut streams {
            got.extend(drain(rx));
        }
        for (stream, id, range, first) in &watchers {
            let got = &streams[*stream].1;
            let ctx = format!("seed {seed} stream {stream} watcher {id} {range:?}");
            assert_eq!(events_of(got, *id), h.expected(range, *first), "{ctx}");
            assert_atomic(got, *id);
        }
    }
}

/// The sync pass moves at most `max_watchers_per_sync` unsynced watchers; the next pass
/// must start after the last one moved, or watchers early in the order that are still
/// behind (here each pass moves a watcher one revision) keep the later ones waiting: with
/// the first watchers always chosen first, the last would get nothing for 15 passes.
#[test]
fn sync_passes_take_unsynced_watchers_in_turn() {
    let mut h = Harness::watching(
        Config::default(),
        WatchConfig {
            stream_buffer: 64,
            max_watchers_per_sync: 2,
            max_revisions_per_sync: 1,
        },
    );
    for i in 0..5 {
        h.put("k", &i.to_string());
    }
    let (s, mut rx) = h.store.new_stream();
    let ids: Vec<i64> = (0..6).map(|_| h.watch(s, "k", "", 2)).collect();
    let mut got = Vec::new();
    for _ in 0..3 {
        h.store.sync_watchers().unwrap();
        got.extend(drain(&mut rx));
    }
    for id in ids {
        assert_eq!(
            events_of(&got, id).first().map(rev),
            Some(2),
            "watcher {id} was not moved in the first three passes"
        );
    }
}
