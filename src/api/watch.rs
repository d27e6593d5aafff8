//! The Watch service: one bidirectional stream per call. Requests go to the server's
//! watch stream; its replies (first) and events go back in order, each header completed.
//! As etcd's, a stream outlives the end of its requests (a client's half-close, or the end
//! of a gateway request body): it ends when the client stops reading.

use std::collections::VecDeque;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::AuthInfo;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::runtime::CrashPoint;
use crate::server::auth::Access;
use crate::server::watch::WatchStream;
use crate::server::Server;

use super::watch_coalesce::{coalesce, MAX_BATCH, MAX_JOINED_BYTES};

/// Replies to create and cancel requests not yet sent; a client that sends this many
/// requests without reading responses loses its stream.
const CONTROL_QUEUE_LEN: usize = 1024;

#[derive(Clone)]
pub struct WatchService(pub Server);

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Serves the requests of one stream, then keeps its watches until the client stops
/// reading; the stream closes when `stream` is dropped.
async fn read_requests(
    server: Server,
    caller: Option<AuthInfo>,
    stream: WatchStream,
    requests: impl Stream<Item = WatchRequest>,
    control: mpsc::Sender<WatchResponse>,
) {
    let mut requests = std::pin::pin!(requests);
    loop {
        let req = tokio::select! {
            Some(req) = requests.next() => req,
            () = control.closed() => return,
            else => break,
        };
        let refused = match &req.request_union {
            Some(RequestUnion::CreateRequest(create)) => server
                .authorize(caller.as_ref(), Access::Watch(create))
                .err(),
            _ => None,
        };
        let served = match refused {
            // etcd answers a watch it refuses as created and at once canceled.
            Some(e) => control
                .try_send(WatchResponse {
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: e.to_string(),
                    ..WatchResponse::default()
                })
                .is_ok(),
            None => stream.serve(req, &control),
        };
        if !served {
            return;
        }
    }
    control.closed().await;
}

impl WatchService {
    /// One watch stream for `caller`: `requests` in; replies and events out.
    pub fn open(
        &self,
        caller: Option<AuthInfo>,
        requests: impl Stream<Item = WatchRequest> + Send + 'static,
    ) -> ResponseStream {
        let (stream, events) = self.0.open_watch_stream();
        let (control, replies) = mpsc::channel(CONTROL_QUEUE_LEN);
        tokio::spawn(read_requests(
            self.0.clone(),
            caller,
            stream,
            requests,
            control,
        ));
        let server = self.0.clone();
        // Events queued together leave coalesced per watcher, and under the request size
        // limit, which a watcher asking for fragments expects responses to keep.
        let limit = server.max_request_bytes().min(MAX_JOINED_BYTES);
        let out = futures::stream::unfold(
            (replies, events, server, VecDeque::new()),
            move |(mut replies, mut events, server, mut ready)| async move {
                let mut resp = match ready.pop_front() {
                    Some(r) => r,
                    None => tokio::select! {
                        biased;
                        Some(r) = replies.recv() => r,
                        Some(r) = events.recv() => {
                            let mut queued = vec![r];
                            while queued.len() < MAX_BATCH {
                                let Ok(r) = events.try_recv() else { break };
                                queued.push(r);
                            }
                            ready = coalesce(queued, limit).into();
                            ready.pop_front().expect("coalescing keeps a response")
                        }
                        else => return None,
                    },
                };
                // A member whose power fails here drops its streams; clients resume elsewhere.
                server
                    .crash_point(CrashPoint::BeforeSendWatchResponse)
                    .ok()?;
                // Never the store's revision: taking its lock here could wait on a write.
                resp.header = server.header(Some(resp.header.map_or(0, |h| h.revision)));
                Some((Ok(resp), (replies, events, server, ready)))
            },
        );
        Box::pin(out)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let requests = super::messages(request.into_inner());
        Ok(Response::new(self.open(caller, requests)))
    }
}
