//! The watchable store, etcd's watchableStore: the KV store plus watchers that see its
//! changes in revision order.
//!
//! Watchers live on streams (one per gRPC Watch call), each with a bounded buffer that the
//! API layer drains. A write never waits for a reader: a watcher whose buffer is full
//! becomes a *victim* holding its undelivered responses, and [`WatchableStore::sync_watchers`]
//! (run by the server on a timer) retries victims and moves *unsynced* watchers (created at
//! an old revision, or released victims that fell behind) forward through the backend's
//! history, a bounded number of revisions at a time, until they rejoin the *synced* group
//! that writes notify directly.
//!
//! Guarantees (etcd's): per watcher, events arrive in revision order, once each, with no
//! gap, all events of one revision in one response (unless the watcher asked for
//! fragments); a watcher whose start is compacted away gets the compact revision instead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use tokio::sync::mpsc::{channel, error::TrySendError, Receiver, Sender};

use super::error::Result;
use super::key_range::KeyRange;
use super::kvstore::{header, KvStore};
use super::kvstore_txn::Events;
use super::watcher::{fragment, Sync, Watcher, WatcherKey};
use super::watcher_group::WatcherGroup;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;

/// The watch id etcd uses for responses that belong to no watcher (progress replies).
pub const NO_WATCH_ID: i64 = -1;

/// Bounds on the watch machinery.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Responses buffered per stream before its watchers become victims (etcd: 128).
    pub stream_buffer: usize,
    /// Unsynced watchers moved forward per sync pass (etcd: 512).
    pub max_watchers_per_sync: usize,
    /// Revisions read from the backend per sync pass, so catching up is incremental.
    pub max_revisions_per_sync: i64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            stream_buffer: 128,
            max_watchers_per_sync: 512,
            max_revisions_per_sync: 1000,
        }
    }
}

#[derive(Debug)]
struct Stream {
    tx: Sender<WatchResponse>,
    /// Server-chosen ids count up from here, skipping ids in use; like etcd, a freed id
    /// is not handed out again soon, so late responses cannot be mistaken for a new one's.
    next_id: i64,
}

/// The KV store with its watchers.
#[derive(Debug)]
pub struct WatchableStore {
    kv: KvStore,
    cfg: WatchConfig,
    streams: BTreeMap<u64, Stream>,
    next_stream: u64,
    watchers: BTreeMap<WatcherKey, Watcher>,
    synced: WatcherGroup,
    /// Invariant: exactly the watchers whose `sync` is `Unsynced`.
    unsynced: BTreeSet<WatcherKey>,
    /// Invariant: exactly the watchers whose `sync` is `Victim`.
    victims: BTreeSet<WatcherKey>,
    /// The last unsynced watcher a sync pass moved; the next pass starts after it.
    sync_cursor: Option<WatcherKey>,
}

impl WatchableStore {
    pub fn new(kv: KvStore, cfg: WatchConfig) -> Self {
        assert!(
            cfg.stream_buffer > 0 && cfg.max_revisions_per_sync > 0,
            "zero watch bound: {cfg:?}"
        );
        WatchableStore {
            kv,
            cfg,
            streams: BTreeMap::new(),
            next_stream: 0,
            watchers: BTreeMap::new(),
            synced: WatcherGroup::default(),
            unsynced: BTreeSet::new(),
            victims: BTreeSet::new(),
            sync_cursor: None,
        }
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The KV store for what is not a key write: entries, commits, compaction, alarms.
    /// Key writes go through [`WatchableStore::write`], or watchers would miss them.
    pub fn kv_mut(&mut self) -> &mut KvStore {
        &mut self.kv
    }

    /// The shared backend, for the lease and auth tables (not for key writes, which must
    /// go through [`WatchableStore::write`]).
    pub fn backend(&mut self) -> &mut crate::backend::Backend {
        self.kv.backend()
    }

    /// Runs a write on the KV store and hands its events to the synced watchers; returns
    /// them too, for the lessor to attach and detach keys. Every key write goes through
    /// here so that watchers miss none.
    pub fn write<R>(
        &mut self,
        f: impl FnOnce(&mut KvStore) -> Result<(R, Events)>,
    ) -> Result<(R, Events)> {
        let (r, events) = f(&mut self.kv)?;
        self.notify(&events)?;
        Ok((r, events))
    }

    /// Replaces the store with one restored from a snapshot (etcd's watchableStore.Restore):
    /// synced watchers become unsynced and catch up from the new store's history.
    pub fn restore(&mut self, mut kv: KvStore) {
        kv.backend()
            .adopt_size_gauge(self.kv.backend().size_gauge());
        self.kv = kv;
        for (key, w) in self.watchers.iter_mut() {
            if matches!(w.sync, Sync::Synced) {
                self.synced.remove(*key, &w.range);
                w.sync = Sync::Unsynced;
                self.unsynced.insert(*key);
            }
        }
    }

    /// Opens a stream; the receiver yields its responses.
    pub fn new_stream(&mut self) -> (u64, Receiver<WatchResponse>) {
        let (tx, rx) = channel(self.cfg.stream_buffer);
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(id, Stream { tx, next_id: 0 });
        (id, rx)
    }

    /// Closes a stream and its watchers.
    pub fn close_stream(&mut self, stream: u64) {
        let keys: Vec<WatcherKey> = self
            .watchers
            .range((stream, i64::MIN)..=(stream, i64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.remove(k);
        }
        self.streams.remove(&stream);
    }

    /// Creates a watcher; the returned response (created, or canceled with etcd's reason)
    /// goes to the client before any event of the watcher, which the stream then carries.
    pub fn watch(&mut self, stream: u64, req: &WatchCreateRequest) -> WatchResponse {
        let refuse = |reason: &str| WatchResponse {
            header: Some(header(self.kv.rev())),
            watch_id: NO_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let range = KeyRange::new(&req.key, &req.range_end);
        if range.bounds().is_none() {
            return refuse("mvcc: watcher range is empty");
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return refuse("mvcc: watch stream closed");
        };
        let id = if req.watch_id != 0 {
            if self.watchers.contains_key(&(stream, req.watch_id)) {
                return refuse("mvcc: duplicate watch ID provided on the WatchStream");
            }
            req.watch_id
        } else {
            while self.watchers.contains_key(&(stream, s.next_id)) {
                s.next_id += 1;
            }
            s.next_id += 1;
            s.next_id - 1
        };
        let cur = self.kv.rev();
        let start = if req.start_revision <= 0 {
            cur + 1
        } else {
            req.start_revision
        };
        let mut w = Watcher::new(
            range,
            start,
            &req.filters,
            req.prev_kv,
            req.progress_notify,
            req.fragment,
        );
        let key = (stream, id);
        if start > cur {
            w.sync = Sync::Synced;
            self.synced.add(key, &w.range);
        } else {
            self.unsynced.insert(key);
        }
        self.watchers.insert(key, w);
        WatchResponse {
            header: Some(header(cur)),
            watch_id: id,
            created: true,
            ..Default::default()
        }
    }

    /// Cancels a watcher; `None` if there is no such watcher.
    pub fn cancel(&mut self, stream: u64, id: i64) -> Option<WatchResponse> {
        self.remove((stream, id))?;
        Some(WatchResponse {
            header: Some(header(self.kv.rev())),
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
    }

    fn remove(&mut self, key: WatcherKey) -> Option<Watcher> {
        let w = self.watchers.remove(&key)?;
        match w.sync {
            Sync::Synced => self.synced.remove(key, &w.range),
            Sync::Unsynced => {
                self.unsynced.remove(&key);
            }
            Sync::Victim(_) => {
                self.victims.remove(&key);
            }
        }
        Some(w)
    }

    /// Hands the events of one write (all of one revision) to the synced watchers.
    fn notify(&mut self, events: &Events) -> Result<()> {
        let Some(rev) = events
            .first()
            .map(|e| e.kv.as_ref().expect("events carry a kv").mod_revision)
        else {
            return Ok(());
        };
        let mut targets = Vec::new();
        for ev in events {
            self.synced.matching(
                &ev.kv.as_ref().expect("events carry a kv").key,
                &mut targets,
            );
        }
        // In key order, each once: a txn's events may reach a watcher through several keys.
        targets.sort_unstable();
        targets.dedup();
        for key in targets {
            // A closed stream found while sending drops its watchers, later targets too.
            let Some(w) = self.watchers.get(&key) else {
                continue;
            };
            let evs: Vec<Event> = events.iter().filter(|e| w.wants(e)).cloned().collect();
            if !evs.is_empty() {
                self.send_events(key, evs, rev, rev)?;
            }
        }
        Ok(())
    }

    /// Builds the responses for `events` (prev_kv filled, fragmented if asked), pushes them
    /// to the watcher's stream, and moves the watcher past `through`. A full buffer makes
    /// the watcher a victim holding the rest; a closed stream drops its watchers.
    fn send_events(
        &mut self,
        key: WatcherKey,
        mut events: Vec<Event>,
        header_rev: i64,
        through: i64,
    ) -> Result<()> {
        let w = &self.watchers[&key];
        if w.prev_kv {
            for ev in &mut events {
                let kv = ev.kv.as_ref().expect("events carry a kv");
                let created = ev.r#type == EventType::Put as i32 && kv.version == 1;
                if !created {
                    ev.prev_kv = self.kv.value_before(&kv.key, kv.mod_revision)?;
                }
            }
        }
        let resp = WatchResponse {
            header: Some(header(header_rev)),
            watch_id: key.1,
            events,
            ..Default::default()
        };
        let limit = self.kv.config().max_request_bytes;
        let resps = if w.fragment {
            fragment(resp, limit)
        } else {
            vec![resp]
        };
        let pending = self.push(key, resps.into());
        // Gone if its stream turned out closed.
        let Some(w) = self.watchers.get_mut(&key) else {
            return Ok(());
        };
        w.sent_since_progress = true;
        assert!(
            through + 1 > w.next_rev,
            "watcher {key:?} would go back from {} to {}",
            w.next_rev,
            through + 1
        );
        w.next_rev = through + 1;
        if let Some(pending) = pending {
            self.make_victim(key, pending);
        }
        Ok(())
    }

    /// Sends `resps` in order; returns what did not fit, or `None` when all went (or the
    /// stream is gone, in which case its watchers are dropped).
    fn push(
        &mut self,
        key: WatcherKey,
        mut resps: VecDeque<WatchResponse>,
    ) -> Option<VecDeque<WatchResponse>> {
        let stream = self.streams.get(&key.0)?;
        while let Some(resp) = resps.pop_front() {
            match stream.tx.try_send(resp) {
                Ok(()) => {}
                Err(TrySendError::Full(resp)) => {
                    resps.push_front(resp);
                    return Some(resps);
                }
                Err(TrySendError::Closed(_)) => {
                    self.close_stream(key.0);
                    return None;
                }
            }
        }
        None
    }

    fn make_victim(&mut self, key: WatcherKey, pending: VecDeque<WatchResponse>) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        match std::mem::replace(&mut w.sync, Sync::Victim(pending)) {
            Sync::Synced => self.synced.remove(key, &w.range),
            Sync::Unsynced => {
                self.unsynced.remove(&key);
            }
            Sync::Victim(_) => unreachable!("a victim is not sent to"),
        }
        self.victims.insert(key);
    }

    /// Moves a watcher that has delivered everything to synced or unsynced.
    fn settle(&mut self, key: WatcherKey) {
        let cur = self.kv.rev();
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        if w.next_rev > cur {
            w.sync = Sync::Synced;
            self.synced.add(key, &w.range);
        } else {
            w.sync = Sync::Unsynced;
            self.unsynced.insert(key);
        }
    }

    /// One pass of etcd's sync loops: retry victims, then move up to
    /// `max_watchers_per_sync` unsynced watchers forward by at most
    /// `max_revisions_per_sync` revisions. Returns whether any watcher is still behind.
    pub fn sync_watchers(&mut self) -> Result<bool> {
        let victims: Vec<WatcherKey> = self.victims.iter().copied().collect();
        for key in victims {
            // A full buffer takes nothing: its victims stay as they are (thousands wait on
            // full buffers while a fan-out burst drains). A closed stream is found below.
            let full = |s: &Stream| s.tx.capacity() == 0 && !s.tx.is_closed();
            if self.streams.get(&key.0).is_some_and(full) {
                continue;
            }
            // Gone if an earlier push found its stream closed.
            if !self.victims.remove(&key) {
                continue;
            }
            let w = self.watchers.get_mut(&key).expect("victims are watchers");
            let Sync::Victim(pending) = std::mem::replace(&mut w.sync, Sync::Unsynced) else {
                unreachable!("victim set holds victims only")
            };
            match self.push(key, pending) {
                Some(rest) => {
                    if let Some(w) = self.watchers.get_mut(&key) {
                        w.sync = Sync::Victim(rest);
                        self.victims.insert(key);
                    }
                }
                None => self.settle(key),
            }
        }
        // Round robin from where the last pass stopped: watchers that fall behind at every
        // burst (their stream's buffer fills) must not keep the others behind them waiting.
        let batch: Vec<WatcherKey> = match self.sync_cursor {
            Some(c) => self
                .unsynced
                .range((Bound::Excluded(c), Bound::Unbounded))
                .chain(self.unsynced.range(..=c))
                .take(self.cfg.max_watchers_per_sync)
                .copied()
                .collect(),
            None => self
                .unsynced
                .iter()
                .take(self.cfg.max_watchers_per_sync)
                .copied()
                .collect(),
        };
        if let Some(&last) = batch.last() {
            self.sync_cursor = Some(last);
        }
        let cur = self.kv.rev();
        let compact = self.kv.compact_rev();
        let mut live = Vec::new();
        for key in batch {
            let Some(w) = self.watchers.get(&key) else {
                continue;
            }; // stream closed
            if w.next_rev < compact {
                self.send_compacted(key, compact);
            } else {
                live.push(key);
            }
        }
        live.retain(|k| self.watchers.contains_key(k));
        if let Some(from) = live.iter().map(|k| self.watchers[k].next_rev).min() {
            let to = cur.min(from + self.cfg.max_revisions_per_sync - 1);
            let history = self.kv.history(from, to)?;
            for key in live {
                let Some(w) = self.watchers.get(&key) else {
                    continue;
                }; // stream closed
                let mut evs: Vec<Event> = history.iter().filter(|e| w.wants(e)).cloned().collect();
                if evs.len() > 1 && crate::runtime::planted(crate::runtime::Bug::WatchCatchUpSkip) {
                    evs.remove(0);
                }
                if evs.is_empty() {
                    // A watcher that starts later than this window stays where it is.
                    let w = self.watchers.get_mut(&key).expect("watcher exists");
                    w.next_rev = w.next_rev.max(to + 1);
                } else {
                    self.send_events(key, evs, cur, to)?;
                }
                let still_unsynced = self
                    .watchers
                    .get(&key)
                    .is_some_and(|w| matches!(w.sync, Sync::Unsynced));
                if still_unsynced {
                    self.unsynced.remove(&key);
                    self.settle(key);
                }
            }
        }
        Ok(!self.unsynced.is_empty() || !self.victims.is_empty())
    }

    /// A watcher whose next revision was compacted gets the compact revision and ends,
    /// as in etcd; if its buffer is full it waits for the next pass.
    fn send_compacted(&mut self, key: WatcherKey, compact: i64) {
        let resp = WatchResponse {
            header: Some(header(self.kv.rev())),
            watch_id: key.1,
            compact_revision: compact,
            canceled: true,
            ..Default::default()
        };
        if self.push(key, VecDeque::from([resp])).is_none() {
            self.remove(key);
        }
    }

    /// etcd's on-demand progress: if every watcher of the stream is synced, tells the
    /// client the current revision (all events up to it are delivered); else nothing, and
    /// the client asks again.
    pub fn request_progress(&mut self, stream: u64) -> bool {
        let all_synced = self
            .watchers
            .range((stream, i64::MIN)..=(stream, i64::MAX))
            .all(|(_, w)| matches!(w.sync, Sync::Synced));
        if !all_synced {
            return false;
        }
        let resp = WatchResponse {
            header: Some(header(self.kv.rev())),
            watch_id: NO_WATCH_ID,
            ..Default::default()
        };
        self.streams
            .get(&stream)
            .is_some_and(|s| s.tx.try_send(resp).is_ok())
    }

    /// Periodic progress notification (the server's progress interval): each synced
    /// watcher that asked for it gets an empty response at the current revision, a
    /// bookmark it can resume from, unless events went out to it since the last tick.
    /// Dropped when the buffer is full, as in etcd.
    pub fn progress_notify(&mut self) {
        let cur = self.kv.rev();
        for ((stream, id), w) in self.watchers.iter_mut() {
            if !w.progress_notify || !matches!(w.sync, Sync::Synced) {
                continue;
            }
            if std::mem::take(&mut w.sent_since_progress) {
                continue;
            }
            if let Some(s) = self.streams.get(stream) {
                let resp = WatchResponse {
                    header: Some(header(cur)),
                    watch_id: *id,
                    ..Default::default()
                };
                let _dropped_when_full = s.tx.try_send(resp);
            }
        }
    }

    /// Watchers per state (synced, unsynced, victims), for tests and metrics.
    pub fn watcher_counts(&self) -> (usize, usize, usize) {
        let n = self.watchers.len();
        (
            n - self.unsynced.len() - self.victims.len(),
            self.unsynced.len(),
            self.victims.len(),
        )
    }
}
