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
    /// Events went out since the last progress tick, which makes the next notification
    /// redundant (etcd elides it).
    pub sent_since_progress: bool,
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
            sent_since_progress: false,
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

/// Splits a response whose encoding reaches `limit` bytes into fragments, each under the
/// limit unless it holds a single event, all but the last marked `fragment` (etcd's
/// sendFragments).
pub(super) fn fragment(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    use prost::Message;
    if resp.encoded_len() < limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let empty = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..resp.clone()
    };
    let mut out = Vec::new();
    let mut current = empty.clone();
    for ev in resp.events {
        current.events.push(ev);
        if current.events.len() > 1 && current.encoded_len() >= limit {
            let ev = current.events.pop().expect("just pushed");
            out.push(std::mem::replace(&mut current, empty.clone()));
            current.events.push(ev);
        }
    }
    current.fragment = false;
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;
    use proptest::prelude::*;
    use prost::Message;

    proptest! {
        /// Fragments put the events back together in order, stay under the limit unless
        /// alone, and only the last is unmarked.
        #[test]
        fn fragments_reassemble_under_the_limit(sizes in prop::collection::vec(0usize..300, 0..20), limit in 50usize..600) {
            let events: Vec<Event> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| Event { kv: Some(KeyValue { key: vec![i as u8], value: vec![0; n], ..Default::default() }), ..Default::default() })
                .collect();
            let resp = WatchResponse { watch_id: 7, events: events.clone(), ..Default::default() };
            let parts = fragment(resp, limit);
            let joined: Vec<Event> = parts.iter().flat_map(|p| p.events.clone()).collect();
            prop_assert_eq!(joined, events);
            prop_assert!(!parts.last().unwrap().fragment);
            for p in &parts[..parts.len() - 1] {
                prop_assert!(p.fragment && (p.encoded_len() < limit || p.events.len() == 1), "{} bytes", p.encoded_len());
            }
        }
    }
}
