//! Applies committed client requests to the MVCC store, and turns what they return into
//! the bytes a proposer waits for.

use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;

use super::member::StateMachine;
use crate::mvcc::{self, KvStore};
use crate::proto::internalpb::internal_raft_request::Request;
use crate::proto::internalpb::internal_raft_response::Response;
use crate::proto::internalpb::{InternalRaftRequest, InternalRaftResponse};

/// The MVCC store, shared by the apply loop (writes) and the API (serializable reads).
pub type SharedStore = Arc<Mutex<KvStore>>;

pub fn lock(store: &SharedStore) -> MutexGuard<'_, KvStore> {
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

fn run(store: &mut KvStore, request: Request) -> mvcc::error::Result<Response> {
    let none = mvcc::no_leases;
    Ok(match request {
        Request::Range(r) => Response::Range(store.range(&r)?),
        Request::Put(r) => Response::Put(store.put(&r, &none)?.0),
        Request::DeleteRange(r) => Response::DeleteRange(store.delete_range(&r)?.0),
        Request::Txn(r) => Response::Txn(store.txn(&r, &none)?.0),
        Request::Compaction(r) => Response::Compaction(store.compact(&r)?),
    })
}

impl StateMachine for KvApplier {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let mut store = lock(&self.store);
        let response = match InternalRaftRequest::decode(payload) {
            Ok(InternalRaftRequest {
                request: Some(request),
            }) => {
                if let Err(e) = store.begin_entry(index) {
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
        if let Err(e) = store.commit() {
            panic!("backend commit failed: {e}");
        }
        while store.compaction_pending() {
            match store.compaction_step() {
                Ok(_) => {}
                Err(e) => panic!("compaction failed: {e}"),
            }
        }
    }

    fn applied_index(&self) -> u64 {
        lock(&self.store).consistent_index()
    }
}
