//! Watch streams as the server keeps them: one per Watch call, carrying any number of
//! watchers. Create, cancel and progress requests go to the watchable store; its events
//! and the replies to create and cancel requests (which must precede the watcher's
//! events) go to the stream's two queues.

use tokio::sync::mpsc;

use super::store::{lock, SharedStore};
use super::v3::Server;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};

/// One client's watch stream; closed (its watchers removed) when dropped.
pub struct WatchStream {
    store: SharedStore,
    id: u64,
}

impl Server {
    /// Opens a watch stream: its handle, and the queue of its watchers' events.
    pub fn open_watch_stream(&self) -> (WatchStream, mpsc::Receiver<WatchResponse>) {
        let (id, events) = lock(&self.store).new_stream();
        let stream = WatchStream {
            store: self.store.clone(),
            id,
        };
        (stream, events)
    }
}

impl WatchStream {
    /// Serves one request; a reply goes to `control`. False if `control` is full: a
    /// client that sends requests without reading responses loses its stream.
    pub fn serve(&self, req: WatchRequest, control: &mpsc::Sender<WatchResponse>) -> bool {
        let mut st = lock(&self.store);
        // Replies are queued with the store locked, so no event of a new watcher can
        // overtake its "created" reply.
        let reply = match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => Some(st.watch(self.id, &create)),
            Some(RequestUnion::CancelRequest(cancel)) => st.cancel(self.id, cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => {
                st.request_progress(self.id);
                None
            }
            None => None,
        };
        reply.is_none_or(|reply| control.try_send(reply).is_ok())
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        lock(&self.store).close_stream(self.id);
    }
}
