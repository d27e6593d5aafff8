//! The Lock service as etcd's server runs it (its `v3lock` over a concurrency mutex): Lock
//! takes the contender key `<name>/<lease>` and waits until every key created before it is
//! gone; the key is the lock, held until Unlock deletes it or its lease expires. A client
//! fences writes with the key's create revision.

use super::concurrency::{contenders, first_or_last_created, Abandon};
use super::error::{Error, Result};
use super::v3::Server;
use crate::proto::etcdserverpb::{DeleteRangeRequest, RangeRequest};
use crate::proto::v3lockpb::{LockResponse, UnlockResponse};
use crate::runtime::{self, Bug};

impl Server {
    /// Acquires the lock `name` for `lease`; answers once it is held.
    pub async fn lock(&self, name: &[u8], lease: i64) -> Result<LockResponse> {
        let lease = self.session_lease(lease).await?;
        let mine = self.contend(name, lease, b"").await?;
        let guard = Abandon::new(self, &mine.key);
        let prefix = contenders(name);
        let owner = self.range(first_or_last_created(&prefix, None)).await?;
        let mut header = mine.header;
        let waits = owner
            .kvs
            .first()
            .is_some_and(|kv| kv.create_revision != mine.rev);
        if waits && !runtime::planted(Bug::LockNoWait) {
            self.wait_deletes(&prefix, mine.rev - 1).await?;
            // The lease may have expired while waiting, taking the key with it.
            let still = self
                .range(RangeRequest {
                    key: mine.key.clone(),
                    ..RangeRequest::default()
                })
                .await?;
            if still.kvs.is_empty() {
                guard.keep();
                return Err(Error::SessionExpired);
            }
            header = still.header;
        }
        guard.keep();
        Ok(LockResponse {
            header,
            key: mine.key,
        })
    }

    /// Releases a lock by deleting its key (a missing key is not an error, as in etcd).
    pub async fn unlock(&self, key: Vec<u8>) -> Result<UnlockResponse> {
        let resp = self
            .delete_range(
                None,
                DeleteRangeRequest {
                    key,
                    ..DeleteRangeRequest::default()
                },
            )
            .await?;
        Ok(UnlockResponse {
            header: resp.header,
        })
    }
}
