//! Snapshots in the member: the files in the snap directory, sending the backend to a
//! follower that needs entries the leader has compacted, receiving one, and putting a
//! received database in place of the backend.
//!
//! The snap directory holds, as etcd's does, the backend `db`, the snapshot metadata files
//! ([`crate::snap`]), and a received database `{index:016x}.snap.db` from the moment it is
//! complete until the member swaps it in. The swap is a rename after the snapshot is
//! durable in the WAL; if a crash comes between, [`recover_backend`] finishes it at boot.
//!
//! On the wire ([`PeerClient::snapshot`]) the first chunk carries the MsgSnap and the
//! database size; every chunk carries at most [`MAX_CHUNK_BYTES`] and their crc32. The
//! receiver writes a temporary file, checks the size, the checksums, redb's integrity and
//! every row ([`snapshot_rows`]), renames it, and only then steps the MsgSnap into Raft.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Status, Streaming};

use super::member::Fatal;
use crate::backend::SnapshotSource;
use crate::lease::Lessor;
use crate::mvcc::{KvStore, WatchableStore};
use crate::net::Dialer;
use crate::proto::peerpb::peer_client::PeerClient;
use crate::proto::peerpb::SnapshotChunk;
use crate::proto::raftpb::{Message, MessageType};
use crate::runtime::{self, CrashPoint, Disk, DiskFile, OpenMode};
use crate::server::snapshot_rows;
use crate::snap::{SnapError, Snapshotter};
use crate::wal::{Wal, WalError};

/// The live backend's name in the snap directory, as in etcd.
pub const DB: &str = "db";
/// Snapshot metadata files kept (etcd's `--max-snapshots` default).
pub const KEEP_SNAPSHOTS: usize = 5;
/// Largest chunk of a streamed database.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// Largest database a member accepts: etcd's suggested maximum backend quota.
pub const MAX_SNAPSHOT_BYTES: u64 = 8 << 30;
/// A send may take this long, plus [`SEND_SECONDS_PER_MIB`] per MiB of database.
const SEND_TIMEOUT_BASE: Duration = Duration::from_secs(30);
const SEND_SECONDS_PER_MIB: u64 = 1;

const RECEIVED_SUFFIX: &str = ".snap.db";
const PARTIAL_SUFFIX: &str = ".snap.db.tmp";
const OUTGOING_SUFFIX: &str = ".send.db";

/// When to snapshot and how much log to keep; the defaults are etcd's.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Applied entries between snapshots (`--snapshot-count`).
    pub count: u64,
    /// Entries kept in memory before a snapshot's index, so that a follower only a little
    /// behind catches up from the log (`--experimental-snapshot-catchup-entries`).
    pub catchup_entries: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            count: 100_000,
            catchup_entries: 5000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Snap(#[from] SnapError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("snapshot: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

/// Name of the received database for a snapshot at `index`.
pub fn received_db_name(index: u64) -> String {
    format!("{index:016x}{RECEIVED_SUFFIX}")
}

/// At boot, before the backend opens: if the newest snapshot the WAL knows was received
/// and its database not yet swapped in, swaps it in; then removes leftovers of transfers.
pub fn recover_backend(
    disk: &Arc<dyn Disk>,
    wal_dir: &Path,
    snap_dir: &Path,
) -> Result<(), SnapshotError> {
    if Wal::exists(disk.as_ref(), wal_dir) {
        let marks = Wal::snapshot_marks(disk.as_ref(), wal_dir)?;
        let newest = Snapshotter::new(disk.clone(), snap_dir)?.load_newest_marked(&marks)?;
        if let Some(snap) = newest.filter(|s| s.backend != DB) {
            let received = snap_dir.join(&snap.backend);
            if disk.exists(&received) {
                tracing::info!(db = %received.display(), "swapping in a received snapshot");
                swap_in(disk.as_ref(), &received, &snap_dir.join(DB))?;
            }
        }
    }
    remove_where(disk.as_ref(), snap_dir, |n| {
        n.ends_with(RECEIVED_SUFFIX) || n.ends_with(PARTIAL_SUFFIX) || n.ends_with(OUTGOING_SUFFIX)
    })
}

/// Removes received databases for snapshots at or before `index`: Raft refuses those, so
/// one that arrived twice, or late, is never swapped in.
pub fn remove_stale_received(
    disk: &dyn Disk,
    snap_dir: &Path,
    index: u64,
) -> Result<(), SnapshotError> {
    remove_where(disk, snap_dir, |n| {
        n.strip_suffix(RECEIVED_SUFFIX)
            .and_then(|i| u64::from_str_radix(i, 16).ok())
            .is_some_and(|i| i <= index)
    })
}

fn remove_where(
    disk: &dyn Disk,
    dir: &Path,
    remove: impl Fn(&str) -> bool,
) -> Result<(), SnapshotError> {
    let names = disk.list(dir).map_err(io_err("list", dir))?;
    for name in names.iter().filter(|n| remove(n)) {
        let path = dir.join(name);
        disk.remove(&path).map_err(io_err("remove", &path))?;
    }
    Ok(())
}

/// Durably renames the received database over the backend file.
fn swap_in(disk: &dyn Disk, received: &Path, live: &Path) -> Result<(), SnapshotError> {
    disk.rename(received, live)
        .map_err(io_err("rename", received))?;
    let dir = dir_of(live);
    disk.sync_dir(&dir).map_err(io_err("sync dir", &dir))
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Replaces the store's backend with the database received at `db` and reloads what
/// lives beside it: the key index, watchers (all of which catch up again from the new
/// history, as in etcd's watchableStore.Restore) and leases. A failure is fatal: the
/// member cannot go on without its state.
pub fn restore_store(
    disk: &dyn Disk,
    db: &Path,
    store: &mut WatchableStore,
    lessor: &mut Lessor,
) -> Result<(), Fatal> {
    disk.crash_point(CrashPoint::ApplyBeforeOpenSnapshot)
        .map_err(|e| Fatal::new("restoring a snapshot", e))?;
    let live = store.backend().path().to_path_buf();
    let cfg = store.kv().config().clone();
    swap_in(disk, db, &live).map_err(|e| Fatal::new("restoring a snapshot", e))?;
    let kv = KvStore::open(disk, &live, cfg).map_err(|e| {
        Fatal::new(
            format!("opening the restored backend {}", live.display()),
            e,
        )
    })?;
    store.restore(kv);
    lessor
        .reopen(store)
        .map_err(|e| Fatal::new("reloading leases from the restored backend", e))
}

/// A snapshot to send: the MsgSnap and the backend it describes.
#[derive(Debug)]
pub struct Outgoing {
    pub message: Message,
    pub source: SnapshotSource,
    pub disk: Arc<dyn Disk>,
    /// Where the copy to send is written (the snap directory).
    pub dir: PathBuf,
}

fn snapshot_index(m: &Message) -> u64 {
    m.snapshot
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .map_or(0, |m| m.index)
}

/// Copies the backend to a file and streams it to the member at `url`; returns once the
/// receiver has it durably and in its Raft's hands.
pub async fn send(
    dialer: &Dialer,
    url: &str,
    cluster_id: u64,
    out: Outgoing,
) -> Result<(), String> {
    let index = snapshot_index(&out.message);
    let path = out.dir.join(format!(
        "{:016x}-{index:016x}{OUTGOING_SUFFIX}",
        out.message.to
    ));
    let (disk, copy_path, source) = (out.disk.clone(), path.clone(), out.source);
    let written = runtime::blocking(move || -> Result<(u64, Arc<dyn DiskFile>), String> {
        source
            .write_to(disk.as_ref(), &copy_path)
            .map_err(|e| format!("copying the backend: {e}"))?;
        let file = disk
            .open(&copy_path, OpenMode::Existing)
            .map_err(|e| format!("opening the backend copy: {e}"))?;
        let size = file
            .len()
            .map_err(|e| format!("sizing the backend copy: {e}"))?;
        Ok((size, Arc::from(file)))
    })
    .await;
    let result = match written {
        Ok((size, file)) => stream(dialer, url, cluster_id, out.message, size, file).await,
        Err(e) => Err(e),
    };
    let _ = out.disk.remove(&path);
    result
}

async fn stream(
    dialer: &Dialer,
    url: &str,
    cluster_id: u64,
    message: Message,
    size: u64,
    file: Arc<dyn DiskFile>,
) -> Result<(), String> {
    let channel = dialer.connect(url).await?;
    // Chunks are read on a task of their own, at most two ahead of the stream.
    let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(2);
    let reader = tokio::spawn(async move {
        let mut offset = 0u64;
        let mut message = Some(message);
        // The first chunk goes even for an empty file, since it carries the MsgSnap.
        while offset < size || message.is_some() {
            let len = (size - offset).min(MAX_CHUNK_BYTES as u64) as usize;
            let f = file.clone();
            let read = runtime::blocking(move || {
                let mut data = vec![0; len];
                f.read_at(offset, &mut data).map(|()| data)
            })
            .await;
            // Ending early leaves the receiver short of the size, which it refuses.
            let Ok(data) = read.inspect_err(|e| {
                tracing::warn!(offset, error = %e, "reading the backend copy failed");
            }) else {
                return;
            };
            let chunk = SnapshotChunk {
                cluster_id,
                total_size: if message.is_some() { size } else { 0 },
                message: message.take(),
                crc32: crc32fast::hash(&data),
                data,
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
            offset += len as u64;
        }
    });
    let chunks =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let timeout = SEND_TIMEOUT_BASE + Duration::from_secs(SEND_SECONDS_PER_MIB * (size >> 20));
    let mut client = PeerClient::new(channel).max_encoding_message_size(2 * MAX_CHUNK_BYTES);
    let call = client.snapshot(chunks);
    let result = tokio::time::timeout(timeout, call).await;
    reader.abort();
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Where received snapshots are written, and where their MsgSnap goes.
#[derive(Clone, Debug)]
pub struct Inbox {
    pub disk: Arc<dyn Disk>,
    pub dir: PathBuf,
}

/// What the receiver checked of the first chunk.
struct Header {
    message: Message,
    index: u64,
    size: u64,
}

fn check_header(
    first: &mut SnapshotChunk,
    member_id: u64,
    cluster_id: u64,
) -> Result<Header, Status> {
    if first.cluster_id != cluster_id {
        return Err(Status::failed_precondition(format!(
            "cluster ID mismatch: member {member_id:x} is in cluster {cluster_id:x}, the sender in {:x}",
            first.cluster_id
        )));
    }
    let message = first
        .message
        .take()
        .filter(|m| m.r#type() == MessageType::MsgSnap)
        .ok_or_else(|| Status::invalid_argument("snapshot stream does not start with a MsgSnap"))?;
    if message.to != member_id {
        return Err(Status::invalid_argument(format!(
            "snapshot for member {:x} delivered to member {member_id:x}",
            message.to
        )));
    }
    let index = snapshot_index(&message);
    if index == 0 {
        return Err(Status::invalid_argument(
            "MsgSnap without snapshot metadata",
        ));
    }
    if first.total_size > MAX_SNAPSHOT_BYTES {
        return Err(Status::resource_exhausted(format!(
            "snapshot of {} bytes exceeds the limit of {MAX_SNAPSHOT_BYTES} bytes",
            first.total_size
        )));
    }
    Ok(Header {
        message,
        index,
        size: first.total_size,
    })
}

/// Receives one snapshot stream into the snap directory, then hands its MsgSnap to Raft
/// through `inbound`.
pub async fn receive(
    mut stream: Streaming<SnapshotChunk>,
    member_id: u64,
    cluster_id: u64,
    inbox: &Inbox,
    inbound: &tokio::sync::mpsc::Sender<Message>,
    sender_known: &(dyn Fn(u64) -> bool + Sync),
) -> Result<(), Status> {
    let mut first = stream
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
    let header = check_header(&mut first, member_id, cluster_id)?;
    // Nothing of a stranger's snapshot is written.
    if !sender_known(header.message.from) {
        return Err(Status::failed_precondition(format!(
            "snapshot from {:x}, which is not a member",
            header.message.from
        )));
    }
    let name = received_db_name(header.index);
    let partial = inbox.dir.join(format!("{name}.tmp"));
    let result = write_chunks(first, &mut stream, &header, inbox, &partial, &name).await;
    if result.is_err() {
        let _ = inbox.disk.remove(&partial);
        return result;
    }
    tracing::info!(
        index = header.index,
        bytes = header.size,
        "received a snapshot"
    );
    inbound
        .send(header.message)
        .await
        .map_err(|_| Status::unavailable("member stopped"))
}

async fn write_chunks(
    first: SnapshotChunk,
    stream: &mut Streaming<SnapshotChunk>,
    header: &Header,
    inbox: &Inbox,
    partial: &Path,
    name: &str,
) -> Result<(), Status> {
    let internal = |what: &str, e: &dyn std::fmt::Display| Status::internal(format!("{what}: {e}"));
    let disk = inbox.disk.clone();
    if disk.exists(partial) {
        disk.remove(partial)
            .map_err(|e| internal("removing a partial snapshot", &e))?;
    }
    let file: Arc<dyn DiskFile> = Arc::from(
        disk.open(partial, OpenMode::CreateNew)
            .map_err(|e| internal("creating the snapshot file", &e))?,
    );
    let mut offset = 0u64;
    let mut chunk = Some(first);
    while let Some(c) = chunk {
        if c.data.len() > MAX_CHUNK_BYTES {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk of {} bytes exceeds {MAX_CHUNK_BYTES}",
                c.data.len()
            )));
        }
        if crc32fast::hash(&c.data) != c.crc32 {
            return Err(Status::data_loss(format!(
                "snapshot chunk at offset {offset}: crc32 mismatch"
            )));
        }
        let end = offset + c.data.len() as u64;
        if end > header.size {
            return Err(Status::invalid_argument(format!(
                "snapshot data runs past its size of {} bytes",
                header.size
            )));
        }
        let f = file.clone();
        runtime::blocking(move || f.write_at(offset, &c.data))
            .await
            .map_err(|e| internal("writing the snapshot file", &e))?;
        offset = end;
        chunk = stream.message().await?;
    }
    if offset != header.size {
        return Err(Status::data_loss(format!(
            "snapshot truncated: {offset} of {} bytes",
            header.size
        )));
    }
    let (partial, done, dir) = (
        partial.to_path_buf(),
        inbox.dir.join(name),
        inbox.dir.clone(),
    );
    runtime::blocking(move || {
        file.sync()
            .map_err(|e| internal("syncing the snapshot file", &e))?;
        drop(file);
        // Checked under its partial name: the caller removes it if it fails, and a crash
        // before the rename leaves nothing boot would swap in.
        snapshot_rows::check(disk.as_ref(), &partial).map_err(|e| {
            Status::data_loss(format!(
                "received snapshot database fails its integrity check: {e}"
            ))
        })?;
        disk.rename(&partial, &done)
            .map_err(|e| internal("renaming the snapshot file", &e))?;
        disk.sync_dir(&dir)
            .map_err(|e| internal("syncing the snap directory", &e))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::tests::{open_at as open, put};
    use crate::proto::etcdserverpb::{LeaseGrantRequest, WatchCreateRequest};
    use crate::runtime::SimDisk;

    /// After a restore the store reads the received database, its watchers catch up from
    /// the new history, and its leases are the received ones with their keys.
    #[test]
    fn restore_swaps_the_backend_and_reloads_watchers_and_leases() {
        let disk = SimDisk::new(5);
        let (mut live, mut live_lessor) = open(&disk, "/snap/db");
        put(&mut live, &mut live_lessor, "k1", 0);
        let (stream, mut rx) = live.new_stream();
        let created = live.watch(
            stream,
            &WatchCreateRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..Default::default()
            },
        );
        assert!(created.created);

        let (mut leader, mut leader_lessor) = open(&disk, "/snap/0000000000000009.snap.db");
        put(&mut leader, &mut leader_lessor, "k1", 0);
        let grant = LeaseGrantRequest { ttl: 60, id: 7 };
        leader_lessor
            .grant(&mut leader, &grant, Duration::ZERO)
            .unwrap();
        put(&mut leader, &mut leader_lessor, "k2", 7);
        leader.kv_mut().commit().unwrap();
        drop((leader, leader_lessor));

        let received = Path::new("/snap/0000000000000009.snap.db");
        restore_store(&disk, received, &mut live, &mut live_lessor).unwrap();
        assert!(
            !disk.exists(received),
            "the received file became the backend"
        );
        assert_eq!(live.backend().path(), Path::new("/snap/db"));
        assert_eq!(live.kv().rev(), 3);
        assert_eq!(
            live.watcher_counts(),
            (0, 1, 0),
            "the watcher must catch up"
        );
        live.sync_watchers().unwrap();
        let resp = rx
            .try_recv()
            .expect("the restored history reaches the watcher");
        assert_eq!(resp.events.len(), 1);
        assert_eq!(resp.events[0].kv.as_ref().unwrap().key, b"k2");
        let lease = live_lessor.get(7).expect("the received lease");
        assert!(lease.keys.contains(b"k2".as_slice()));
    }

    #[test]
    fn stale_received_databases_are_removed() {
        let disk = SimDisk::new(6);
        let dir = Path::new("/snap");
        disk.create_dir_all(dir).unwrap();
        for name in [
            received_db_name(8),
            received_db_name(9),
            received_db_name(10),
            DB.into(),
        ] {
            disk.open(&dir.join(name), OpenMode::CreateNew).unwrap();
        }
        remove_stale_received(&disk, dir, 9).unwrap();
        assert_eq!(
            disk.list(dir).unwrap(),
            vec![received_db_name(10), DB.to_string()]
        );
    }
}
