//! Coalescing of queued watch responses, so that a fan-out burst costs fewer gRPC messages.
//!
//! A put reaching N watchers on a stream queues N responses there, one per watcher, and a
//! batch of puts queues that many per put. When the stream's reader falls behind, the
//! queue holds several responses of one watcher: they go out as one response carrying all
//! their events, in order, as etcd sends a watcher's catch-up from history. What a client
//! can observe per watcher stays the same: every event once, in revision order, each
//! revision's events together, and nothing moves across a response that is not only events
//! (created, canceled, compacted, progress, or a fragment). Responses of different
//! watchers may leave in another order than they were queued, which etcd never promised.

use std::collections::BTreeMap;

use prost::Message;

use crate::mvcc::NO_WATCH_ID;
use crate::proto::etcdserverpb::WatchResponse;

/// Responses taken from a stream's queue at once.
pub const MAX_BATCH: usize = 256;
/// Bytes of events a joined response stays under: enough to turn a burst into one
/// message, far below what clients accept (gRPC's usual 4 MiB).
pub const MAX_JOINED_BYTES: usize = 64 << 10;

/// Whether `r` only carries events, which may join a neighbour's.
fn only_events(r: &WatchResponse) -> bool {
    !r.events.is_empty() && !r.created && !r.canceled && !r.fragment && r.compact_revision == 0
}

fn events_len(r: &WatchResponse) -> usize {
    r.events.iter().map(Message::encoded_len).sum()
}

/// `queued` in sending order, each watcher's event-only responses joined while the events
/// stay under `limit` bytes. A response that is not only events ends the joining for its
/// watcher (for every watcher when it is the stream's own, [`NO_WATCH_ID`]).
pub fn coalesce(queued: Vec<WatchResponse>, limit: usize) -> Vec<WatchResponse> {
    let mut out: Vec<(WatchResponse, usize)> = Vec::with_capacity(queued.len());
    // Per watcher, the response in `out` that later events may still join.
    let mut open: BTreeMap<i64, usize> = BTreeMap::new();
    for r in queued {
        if !only_events(&r) {
            if r.watch_id == NO_WATCH_ID {
                open.clear();
            } else {
                open.remove(&r.watch_id);
            }
            out.push((r, 0));
            continue;
        }
        let len = events_len(&r);
        if let Some(&i) = open.get(&r.watch_id) {
            let (into, size) = &mut out[i];
            if *size + len <= limit {
                into.events.extend(r.events);
                into.header = r.header;
                *size += len;
                continue;
            }
        }
        open.insert(r.watch_id, out.len());
        out.push((r, len));
    }
    out.into_iter().map(|(r, _)| r).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::{Event, KeyValue};

    /// What one response of the queue is, for generating queues.
    #[derive(Clone, Debug)]
    enum Item {
        Events { watch: i64, count: usize },
        Progress { watch: i64 },
        Canceled { watch: i64 },
        Fragment { watch: i64 },
        StreamProgress,
    }

    fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            8 => (0..4i64, 1..4usize).prop_map(|(watch, count)| Item::Events { watch, count }),
            1 => (0..4i64).prop_map(|watch| Item::Progress { watch }),
            1 => (0..4i64).prop_map(|watch| Item::Canceled { watch }),
            1 => (0..4i64).prop_map(|watch| Item::Fragment { watch }),
            1 => Just(Item::StreamProgress),
        ]
    }

    /// Builds the queue; every event gets the next revision, so that order is checkable.
    fn queue(items: &[Item]) -> Vec<WatchResponse> {
        let mut rev = 0;
        let event = |rev: &mut i64| {
            *rev += 1;
            Event {
                kv: Some(KeyValue {
                    key: b"k".to_vec(),
                    mod_revision: *rev,
                    value: vec![0; 10],
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        items
            .iter()
            .map(|it| {
                let mut r = WatchResponse::default();
                match *it {
                    Item::Events { watch, count } => {
                        r.watch_id = watch;
                        r.events = (0..count).map(|_| event(&mut rev)).collect();
                    }
                    Item::Progress { watch } => r.watch_id = watch,
                    Item::Canceled { watch } => {
                        r.watch_id = watch;
                        r.canceled = true;
                    }
                    Item::Fragment { watch } => {
                        r.watch_id = watch;
                        r.fragment = true;
                        r.events = vec![event(&mut rev)];
                    }
                    Item::StreamProgress => r.watch_id = NO_WATCH_ID,
                }
                r.header = Some(ResponseHeader {
                    revision: rev,
                    ..Default::default()
                });
                r
            })
            .collect()
    }

    /// Per watcher, what it sees: event revisions, with a marker (negative: the position
    /// of the response) for each response that is not only events, and for stream-wide ones.
    fn seen(rs: &[WatchResponse]) -> BTreeMap<i64, Vec<i64>> {
        let mut by: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut barriers = 0;
        for r in rs {
            if only_events(r) {
                let revs = r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision);
                by.entry(r.watch_id).or_default().extend(revs);
            } else {
                barriers += 1;
                let to: Vec<i64> = if r.watch_id == NO_WATCH_ID {
                    (0..4).collect()
                } else {
                    vec![r.watch_id]
                };
                for w in to {
                    by.entry(w).or_default().push(-barriers);
                    by.get_mut(&w)
                        .unwrap()
                        .extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
                }
            }
        }
        by
    }

    proptest! {
        /// Each watcher sees the same events in the same order, on the same side of every
        /// response that is not only events; joined responses stay under the limit unless
        /// one alone was over it, and carry the header of their last part.
        #[test]
        fn coalescing_keeps_what_each_watcher_sees(
            items in prop::collection::vec(item(), 0..60),
            limit in 0usize..400,
        ) {
            let before = queue(&items);
            let after = coalesce(before.clone(), limit);
            prop_assert_eq!(seen(&before), seen(&after));
            prop_assert!(after.len() <= before.len());
            let singles: Vec<usize> = before.iter().filter(|r| only_events(r)).map(events_len).collect();
            for r in after.iter().filter(|r| only_events(r)) {
                let len = events_len(r);
                prop_assert!(len <= limit || singles.contains(&len), "{} bytes over {}", len, limit);
                let last = r.events.last().unwrap().kv.as_ref().unwrap().mod_revision;
                prop_assert_eq!(r.header.as_ref().unwrap().revision, last);
            }
        }
    }

    #[test]
    fn a_burst_for_two_watchers_leaves_as_two_responses() {
        let items: Vec<Item> = (0..10)
            .flat_map(|_| [0, 1].map(|watch| Item::Events { watch, count: 1 }))
            .collect();
        let after = coalesce(queue(&items), 1 << 20);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].events.len(), 10);
        assert_eq!(after[1].events.len(), 10);
    }
}
