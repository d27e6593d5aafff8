//! Applies committed client requests to the MVCC store, and turns what they return into
//! the bytes a proposer waits for.

use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;

use super::member::StateMachine;
use crate::mvcc::{self, KvStore, WatchableStore};
use crate::proto::internalpb::internal_raft_request::Request;
use crate::proto::internalpb::internal_raft_response::Response;
use crate::proto::internalpb::{InternalRaftRequest, InternalRaftResponse};

/// The MVCC store with its watchers, shared by the apply loop (writes) and the API
/// (serializable reads, watch streams).
pub type SharedStore = Arc<Mutex<WatchableStore>>;

pub fn lock(store: &SharedStore) -> MutexGuard<'_, WatchableStore> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state machine of a KV member.
pub struct KvApplier {
    store: SharedStore,
}

impl KvApplier {
    pub fn new(store: SharedStore) -> Self {
        KvApplier { store }
    }
}

/// Runs one request; key writes go through the watchable store so watchers see them.
fn run(store: &mut WatchableStore, request: Request) -> mvcc::error::Result<Response> {
    let none = mvcc::no_leases;
    Ok(match request {
        Request::Range(r) => Response::Range(store.kv().range(&r)?),
        Request::Put(r) => Response::Put(store.write(|kv| kv.put(&r, &none))?.0),
        Request::DeleteRange(r) => Response::DeleteRange(store.write(|kv| kv.delete_range(&r))?.0),
        Request::Txn(r) => Response::Txn(store.write(|kv| kv.txn(&r, &none))?.0),
        Request::Compaction(r) => {
            Response::Compaction(store.write(|kv| Ok((kv.compact(&r)?, Vec::new())))?.0)
        }
    })
}

/// Runs `f` on the KV store for its side effects on the backend, outside any key write.
fn on_kv<R>(
    store: &mut WatchableStore,
    f: impl FnOnce(&mut KvStore) -> mvcc::error::Result<R>,
) -> mvcc::error::Result<R> {
    Ok(store.write(|kv| Ok((f(kv)?, Vec::new())))?.0)
}

impl StateMachine for KvApplier {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let mut store = lock(&self.store);
        let response = match InternalRaftRequest::decode(payload) {
            Ok(InternalRaftRequest {
                request: Some(request),
            }) => {
                if let Err(e) = on_kv(&mut store, |kv| kv.begin_entry(index)) {
                    panic!("backend failed to start entry {index}: {e}");
                }
                match run(&mut store, request) {
                    Ok(r) => r,
                    Err(mvcc::Error::Backend(e)) => {
                        panic!("backend failed applying entry {index}: {e}")
                    }
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            _ => Response::Error(format!("etcdserver: malformed log entry {index}")),
        };
        InternalRaftResponse {
            response: Some(response),
        }
        .encode_to_vec()
    }

    fn end_batch(&mut self) {
        let mut store = lock(&self.store);
        let committed = on_kv(&mut store, |kv| {
            kv.commit()?;
            while kv.compaction_pending() {
                kv.compaction_step()?;
            }
            Ok(())
        });
        if let Err(e) = committed {
            panic!("backend commit failed: {e}");
        }
    }

    fn applied_index(&self) -> u64 {
        lock(&self.store).kv().consistent_index()
    }
}
