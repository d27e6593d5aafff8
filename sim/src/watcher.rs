//! A watcher of the checked key space: one stream at a time on some member, resumed on
//! the next member from the revision after the last event when a stream breaks. Every
//! response is recorded for the watch checker, which holds the streams to etcd's watch
//! guarantees and to the history's writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::watch_client::WatchClient;
use detcd::proto::etcdserverpb::watch_request::RequestUnion;
use detcd::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use detcd::proto::mvccpb::{self, event::EventType};
use detcd::runtime::{trace, Clock};
use detcd_check::watch::{Kv as WatchKv, Response, WatchEvent};
use futures::StreamExt as _;

use crate::kv_cluster::client_url;

/// The checked key space `k0`.. as a range.
const KEY: &str = "k";
const RANGE_END: &str = "l";
/// A stream silent this long is given up and resumed elsewhere.
const SILENCE: Duration = Duration::from_secs(5);

/// Recorded responses, in the order they arrived.
pub type Responses = Arc<Mutex<Vec<Response>>>;

fn kv(kv: &mvccpb::KeyValue) -> WatchKv {
    WatchKv {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: Some(String::from_utf8_lossy(&kv.value).into_owned()),
        mod_revision: kv.mod_revision as u64,
    }
}

/// Watches `k`..`l` with `prev_kv` until `until` has passed, recording into `out`.
pub async fn watch(members: usize, until: Duration, out: Responses) {
    let start = Clock.now();
    let (mut member, mut stream_no, mut next_rev) = (0, 0u64, 1i64);
    while start.elapsed() < until {
        stream_no += 1;
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: KEY.into(),
                range_end: RANGE_END.into(),
                start_revision: next_rev,
                prev_kv: true,
                ..Default::default()
            })),
        };
        let stream = async {
            let mut c = WatchClient::connect(client_url(member)).await.ok()?;
            // The request stream stays open (pending) so the server keeps the watch.
            let requests = futures::stream::iter([create]).chain(futures::stream::pending());
            Some(c.watch(requests).await.ok()?.into_inner())
        };
        let Ok(Some(mut stream)) = tokio::time::timeout(SILENCE, stream).await else {
            member = (member + 1) % members;
            Clock.sleep(Duration::from_millis(100)).await;
            continue;
        };
        let start_revision = next_rev as u64;
        while start.elapsed() < until {
            let Ok(Ok(Some(resp))) = tokio::time::timeout(SILENCE, stream.message()).await else {
                break;
            };
            if resp.compact_revision > 0 {
                // Its start was compacted away, and etcd cancels such a watch: resume at
                // the oldest revision kept.
                next_rev = next_rev.max(resp.compact_revision);
                break;
            }
            if resp.events.is_empty() {
                continue;
            }
            let events: Vec<WatchEvent> = resp
                .events
                .iter()
                .filter_map(|e| {
                    let current = kv(e.kv.as_ref()?);
                    let kind = match e.r#type() {
                        EventType::Put => "put",
                        EventType::Delete => "delete",
                    };
                    Some(WatchEvent {
                        kind: kind.into(),
                        kv: current,
                        prev_kv: e.prev_kv.as_ref().map(kv),
                    })
                })
                .collect();
            let last = events.iter().map(|e| e.kv.mod_revision).max().unwrap_or(0);
            next_rev = next_rev.max(last as i64 + 1);
            trace(b'W', &[stream_no, last, events.len() as u64]);
            let mut out = out.lock().unwrap();
            let line = out.len() + 1;
            out.push(Response {
                watch: stream_no,
                key: KEY.into(),
                range_end: Some(RANGE_END.into()),
                start_revision,
                events,
                line,
            });
        }
        member = (member + 1) % members;
    }
}
