//! Compaction: the index forgets superseded revisions at once; the backend loses them in
//! batches of `compaction_batch_limit` scanned rows, each its own commit, so that applies
//! interleave (etcd's batches count scanned keys too: a batch costs the same whether it
//! removes everything or nothing).
//! Progress is in `meta`: a crash between scheduling and finishing redoes the removal on
//! open.

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};

use super::error::{Error, Result};
use super::kvstore::{header, KvStore};
use super::revision::Revision;
use crate::backend::{be, get_u64, put_u64, KEY, META};
use crate::proto::etcdserverpb::{CompactionRequest, CompactionResponse};
use crate::runtime::CrashPoint;

const SCHEDULED: &[u8] = b"scheduledCompactRev";
const FINISHED: &[u8] = b"finishedCompactRev";

/// Physical removal left to do.
#[derive(Debug)]
pub(super) struct Compaction {
    at: i64,
    keep: BTreeSet<Revision>,
    /// Backend keys before this one are done.
    cursor: Vec<u8>,
}

/// (scheduled, finished) compaction revisions; -1 when there was none.
pub(super) fn progress(tx: &WriteTransaction) -> Result<(i64, i64)> {
    let read = |k| -> Result<i64> { Ok(get_u64(tx, META, k)? as i64 - 1) };
    Ok((read(SCHEDULED)?, read(FINISHED)?))
}

fn store_progress(tx: &WriteTransaction, key: &[u8], rev: i64) -> Result<()> {
    // Stored plus one, so that an absent entry (0) reads as "none" (-1).
    Ok(put_u64(tx, META, key, (rev + 1) as u64)?)
}

impl KvStore {
    /// Compacts history up to `req.revision`: later reads below it fail with
    /// [`Error::Compacted`]. With `physical`, returns only after the backend has dropped
    /// the superseded revisions; otherwise the server drives [`KvStore::compaction_step`].
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse> {
        let rev = req.revision;
        if rev <= self.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.current_rev {
            return Err(Error::FutureRev);
        }
        self.schedule_compaction(rev)?;
        if req.physical {
            self.finish_compaction()?;
        }
        Ok(CompactionResponse {
            header: Some(header(self.current_rev)),
        })
    }

    pub(super) fn schedule_compaction(&mut self, rev: i64) -> Result<()> {
        // A compaction still running belongs to a lower revision; the new keep set
        // supersedes its one, so drop it and start over.
        store_progress(self.backend.tx(), SCHEDULED, rev)?;
        self.backend
            .crash_point(CrashPoint::CompactBeforeCommitScheduled)?;
        self.compact_rev = rev;
        let keep = self.index.compact(rev);
        self.compaction = Some(Compaction {
            at: rev,
            keep,
            cursor: Vec::new(),
        });
        Ok(())
    }

    /// Scans one batch of `compaction_batch_limit` revisions, removes the superseded ones
    /// and commits (nothing, without a pending compaction); returns whether more is left.
    pub fn compaction_step(&mut self) -> Result<bool> {
        let Some(job) = self.compaction.as_mut() else {
            return Ok(false);
        };
        // The scheduled revision commits with the first batch.
        let first = job.cursor.is_empty();
        let end = Revision::start_key(job.at + 1);
        let limit = self.cfg.compaction_batch_limit;
        let tx = self.backend.tx();
        let mut done = true;
        {
            let mut table = tx.open_table(KEY).map_err(be)?;
            let mut doomed = Vec::new();
            for (scanned, entry) in table
                .range(job.cursor.as_slice()..end.as_slice())
                .map_err(be)?
                .enumerate()
            {
                let (k, _) = entry.map_err(be)?;
                if scanned == limit {
                    job.cursor = k.value().to_vec();
                    done = false;
                    break;
                }
                if !job.keep.contains(&Revision::from_key(k.value()).0) {
                    doomed.push(k.value().to_vec());
                }
            }
            for k in &doomed {
                table.remove(k.as_slice()).map_err(be)?;
            }
        }
        if done {
            self.backend
                .crash_point(CrashPoint::CompactBeforeSetFinished)?;
            store_progress(self.backend.tx(), FINISHED, job.at)?;
            self.backend
                .crash_point(CrashPoint::CompactAfterSetFinished)?;
            self.compaction = None;
        }
        self.backend
            .crash_point(CrashPoint::CompactBeforeCommitBatch)?;
        self.commit()?;
        if first {
            self.backend
                .crash_point(CrashPoint::CompactAfterCommitScheduled)?;
        }
        self.backend
            .crash_point(CrashPoint::CompactAfterCommitBatch)?;
        Ok(!done)
    }

    /// Whether physical removal is still to do.
    pub fn compaction_pending(&self) -> bool {
        self.compaction.is_some()
    }

    /// Runs the pending compaction to its end.
    pub fn finish_compaction(&mut self) -> Result<()> {
        while self.compaction_step()? {}
        Ok(())
    }
}
