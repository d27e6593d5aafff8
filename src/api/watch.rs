//! The Watch service: one bidirectional stream per call. Requests go to the server's
//! watch stream; its replies (first) and events go back in order, each header completed.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::server::watch::WatchStream;
use crate::server::Server;

/// Replies to create and cancel requests not yet sent; a client that sends this many
/// requests without reading responses loses its stream.
const CONTROL_QUEUE_LEN: usize = 1024;

#[derive(Clone)]
pub struct WatchService(pub Server);

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Serves the requests of one stream until the client stops sending; the stream closes
/// when `stream` is dropped.
async fn read_requests(
    stream: WatchStream,
    mut requests: Streaming<WatchRequest>,
    control: mpsc::Sender<WatchResponse>,
) {
    while let Ok(Some(req)) = requests.message().await {
        if !stream.serve(req, &control) {
            break;
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (stream, events) = self.0.open_watch_stream();
        let (control, replies) = mpsc::channel(CONTROL_QUEUE_LEN);
        tokio::spawn(read_requests(stream, request.into_inner(), control));
        let server = self.0.clone();
        let out = futures::stream::unfold(
            (replies, events, server),
            |(mut replies, mut events, server)| async move {
                let mut resp = tokio::select! {
                    biased;
                    Some(r) = replies.recv() => r,
                    Some(r) = events.recv() => r,
                    else => return None,
                };
                // Never the store's revision: taking its lock here could wait on a write.
                resp.header = server.header(Some(resp.header.map_or(0, |h| h.revision)));
                Some((Ok(resp), (replies, events, server)))
            },
        );
        Ok(Response::new(Box::pin(out)))
    }
}
