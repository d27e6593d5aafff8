//! One watcher: what it watches, what it has been sent, and how its responses are built.

use std::collections::VecDeque;

use super::key_range::KeyRange;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;

/// A watcher is named by its stream and its id within the stream.
pub type WatcherKey = (u64, i64);

/// Where a watcher stands relative to the store's history.
#[derive(Debug)]
pub(super) enum Sync {
    /// Has everything up to the current revision; gets new events as they are written.
    Synced,
    /// Behind: catches up from the backend in [`super::WatchableStore::sync_watchers`].
    Unsynced,
    /// Its stream's buffer was full: holds the responses not yet sent, in order.
    Victim(VecDeque<WatchResponse>),
}

#[derive(Debug)]
pub(super) struct Watcher {
    pub range: KeyRange,
    /// The first revision not yet handed to the stream (or to `Victim`'s queue).
    pub next_rev: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    pub sync: Sync,
}

impl Watcher {
    pub fn new(
        range: KeyRange,
        next_rev: i64,
        filters: &[i32],
        prev_kv: bool,
        progress_notify: bool,
        fragment: bool,
    ) -> Self {
        Watcher {
            range,
            next_rev,
            no_put: filters.contains(&(FilterType::Noput as i32)),
            no_delete: filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv,
            progress_notify,
            fragment,
            sync: Sync::Unsynced,
        }
    }

    /// Whether the watcher is to see `ev`: its key is in range, its revision not yet sent,
    /// and no filter drops its kind.
    pub fn wants(&self, ev: &Event) -> bool {
        let kv = ev.kv.as_ref().expect("events carry a kv");
        let dropped = if ev.r#type == EventType::Put as i32 {
            self.no_put
        } else {
            self.no_delete
        };
        kv.mod_revision >= self.next_rev && self.range.contains(&kv.key) && !dropped
    }
}

/// Splits a response whose encoding exceeds `limit` bytes into fragments, each with at
/// least one event and all but the last marked `fragment` (etcd's sendFragments).
pub(super) fn fragment(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    use prost::Message;
    if resp.encoded_len() <= limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut out = Vec::new();
    let mut current = WatchResponse {
        events: Vec::new(),
        ..resp.clone()
    };
    for ev in resp.events {
        let size = ev.encoded_len();
        if !current.events.is_empty() && current.encoded_len() + size > limit {
            let next = WatchResponse {
                events: Vec::new(),
                ..current.clone()
            };
            out.push(WatchResponse {
                fragment: true,
                ..std::mem::replace(&mut current, next)
            });
        }
        current.events.push(ev);
    }
    out.push(current);
    out
}
