//! The Watch service: one bidirectional stream per call, carrying any number of watchers.
//! Create, cancel and progress requests go to the watchable store; its responses (and the
//! ones to create and cancel requests, which must precede the watcher's events) go back
//! in order.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{ResponseHeader, WatchRequest, WatchResponse};
use crate::server::kv_apply::{lock, SharedStore};
use crate::server::member::MemberHandle;

/// Replies to create and cancel requests not yet sent; a client that sends this many
/// requests without reading responses loses its stream.
const CONTROL_QUEUE_LEN: usize = 1024;

#[derive(Clone)]
pub struct WatchService {
    pub member: MemberHandle,
    pub store: SharedStore,
    pub cluster_id: u64,
    pub member_id: u64,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Serves the requests of one stream until the client stops sending, then closes it.
async fn read_requests(
    store: SharedStore,
    stream: u64,
    mut requests: Streaming<WatchRequest>,
    control: mpsc::Sender<WatchResponse>,
) {
    while let Ok(Some(req)) = requests.message().await {
        let mut st = lock(&store);
        // Replies are queued with the store locked, so no event of a new watcher can
        // overtake its "created" reply.
        let reply = match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => Some(st.watch(stream, &create)),
            Some(RequestUnion::CancelRequest(cancel)) => st.cancel(stream, cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => {
                st.request_progress(stream);
                None
            }
            None => None,
        };
        if let Some(reply) = reply {
            if control.try_send(reply).is_err() {
                break;
            }
        }
    }
    lock(&store).close_stream(stream);
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (stream, events) = lock(&self.store).new_stream();
        let (control, replies) = mpsc::channel(CONTROL_QUEUE_LEN);
        tokio::spawn(read_requests(
            self.store.clone(),
            stream,
            request.into_inner(),
            control,
        ));
        let service = self.clone();
        let out = futures::stream::unfold(
            (replies, events, service),
            |(mut replies, mut events, service)| async move {
                let mut resp = tokio::select! {
                    biased;
                    Some(r) = replies.recv() => r,
                    Some(r) = events.recv() => r,
                    else => return None,
                };
                let revision = resp.header.map_or(0, |h| h.revision);
                resp.header = Some(ResponseHeader {
                    cluster_id: service.cluster_id,
                    member_id: service.member_id,
                    revision,
                    raft_term: service.member.status().term,
                });
                Some((Ok(resp), (replies, events, service)))
            },
        );
        Ok(Response::new(Box::pin(out)))
    }
}
