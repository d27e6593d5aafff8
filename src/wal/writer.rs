//! Creating, opening (with replay), appending to, cutting and releasing a WAL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use prost::Message;

use super::record::{self, RecordType, MAX_PAYLOAD};
use super::replay::{read_segment, read_segments, Replayer, Tail};
use super::segment::{self, SegmentName, TMP_SUFFIX};
use super::{Metadata, Result, SnapshotMark, WalError, WalOptions};
use crate::proto::raftpb::{Entry, HardState};
use crate::runtime::{Clock, Disk, DiskFile, OpenMode, SECTOR};

/// An open WAL, positioned to append after the last valid record.
#[derive(Debug)]
pub struct Wal {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    options: WalOptions,
    metadata: Metadata,
    /// Live segments, oldest first; the last one is `tail`.
    segments: Vec<SegmentName>,
    tail: Box<dyn DiskFile>,
    /// Offset in `tail` where the next record goes.
    offset: u64,
    /// Chain crc of the last record written.
    crc: u32,
    /// Index of the last entry in the log (or of the newest snapshot past it).
    last_index: u64,
    /// The last hard state saved, repeated at the head of every new segment.
    hard_state: HardState,
    /// Reused encoding buffer, so a save does not allocate per record.
    buf: Vec<u8>,
    /// Set by the first I/O error on the write path; writes are refused after it.
    failed: Option<String>,
    /// Where fsyncs of the tail report their latency (etcd's
    /// `etcd_disk_wal_fsync_duration_seconds`), if anywhere.
    fsync_latency: Option<Histogram>,
    /// `--unsafe-no-fsync`: appends are written but never fsynced, so a machine crash
    /// may lose acknowledged writes.
    unsafe_no_fsync: bool,
}

/// What a WAL held, as replayed by [`Wal::open`].
#[derive(Debug, Default)]
pub struct Replay {
    pub metadata: Metadata,
    pub hard_state: HardState,
    /// Entries after the snapshot the replay started from, in index order, with entries
    /// that later records overwrote removed.
    pub entries: Vec<Entry>,
    /// Every snapshot mark in the replayed segments, in log order.
    pub snapshots: Vec<SnapshotMark>,
    /// The file and offset of a torn write that was truncated away, if any.
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// How much of a segment [`Wal::read_metadata`] reads: its head (seed, metadata, hard
/// state, snapshot mark) is a few hundred bytes.
const HEAD_READ: u64 = 64 * 1024;

pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WalError {
    let path = path.to_path_buf();
    move |source| WalError::Io { op, path, source }
}

fn segment_names(disk: &dyn Disk, dir: &Path) -> Result<Vec<SegmentName>> {
    let names = disk.list(dir).map_err(io_err("list", dir))?;
    let mut segments: Vec<SegmentName> =
        names.iter().filter_map(|n| SegmentName::parse(n)).collect();
    segments.sort();
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(WalError::Corrupt {
                path: dir.join(pair[1].file_name()),
                offset: 0,
                reason: format!(
                    "segment sequence jumps from {} to {}",
                    pair[0].seq, pair[1].seq
                ),
            });
        }
    }
    Ok(segments)
}

/// Removes segment files that a crash left before they were renamed into place.
fn remove_temporaries(disk: &dyn Disk, dir: &Path) -> Result<()> {
    let names = disk.list(dir).map_err(io_err("list", dir))?;
    let mut removed = false;
    for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
        let path = dir.join(name);
        disk.remove(&path).map_err(io_err("remove", &path))?;
        removed = true;
    }
    if removed {
        disk.sync_dir(dir).map_err(io_err("sync dir", dir))?;
    }
    Ok(())
}

fn encode_message(
    buf: &mut Vec<u8>,
    base: u64,
    crc: u32,
    typ: RecordType,
    msg: &impl Message,
) -> Result<u32> {
    let size = msg.encoded_len();
    if size > MAX_PAYLOAD {
        return Err(WalError::TooLarge {
            size,
            limit: MAX_PAYLOAD,
        });
    }
    Ok(record::encode(buf, base, crc, typ, |b| {
        msg.encode_raw(b);
    }))
}

fn seed_payload(prev_crc: u32, seq: u64) -> [u8; 12] {
    let mut p = [0; 12];
    p[..4].copy_from_slice(&prev_crc.to_le_bytes());
    p[4..].copy_from_slice(&seq.to_le_bytes());
    p
}

/// The head of a new segment, written to a temporary file, made durable, then renamed into
/// place, so a segment under its final name always starts with a complete head.
struct SegmentHead<'a> {
    name: SegmentName,
    prev_crc: u32,
    metadata: &'a Metadata,
    hard_state: &'a HardState,
    snapshot: Option<&'a SnapshotMark>,
}

impl SegmentHead<'_> {
    fn write(
        &self,
        disk: &dyn Disk,
        dir: &Path,
        options: &WalOptions,
    ) -> Result<(Box<dyn DiskFile>, u64, u32)> {
        let path = dir.join(self.name.file_name());
        let tmp = dir.join(format!("{}.tmp", self.name.file_name()));
        let mut buf = Vec::new();
        let seed = seed_payload(self.prev_crc, self.name.seq);
        let mut crc = record::encode(&mut buf, 0, 0, RecordType::Seed, |b| {
            b.extend_from_slice(&seed)
        });
        crc = encode_message(&mut buf, 0, crc, RecordType::Metadata, self.metadata)?;
        crc = encode_message(&mut buf, 0, crc, RecordType::HardState, self.hard_state)?;
        if let Some(mark) = self.snapshot {
            crc = encode_message(&mut buf, 0, crc, RecordType::Snapshot, mark)?;
        }
        crc = record::pad_to_sector(&mut buf, 0, crc);
        let file = disk
            .open(&tmp, OpenMode::CreateNew)
            .map_err(io_err("create", &tmp))?;
        file.set_len(options.segment_size.max(buf.len() as u64))
            .map_err(io_err("preallocate", &tmp))?;
        file.write_at(0, &buf).map_err(io_err("write", &tmp))?;
        file.sync().map_err(io_err("fsync", &tmp))?;
        drop(file);
        disk.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        disk.sync_dir(dir).map_err(io_err("sync dir", dir))?;
        let file = disk
            .open(&path, OpenMode::Existing)
            .map_err(io_err("open", &path))?;
        Ok((file, buf.len() as u64, crc))
    }
}

impl Wal {
    /// True if `dir` holds a WAL.
    pub fn exists(disk: &dyn Disk, dir: &Path) -> bool {
        disk.exists(dir) && segment_names(disk, dir).is_ok_and(|s| !s.is_empty())
    }

    /// Every snapshot mark in the WAL, oldest first, without changing anything: what a
    /// member reads at start to pick the newest snapshot file that the WAL agrees with.
    pub fn snapshot_marks(disk: &dyn Disk, dir: &Path) -> Result<Vec<SnapshotMark>> {
        Ok(Self::scan(disk, dir)?.snapshots)
    }

    /// The member and cluster IDs the WAL was created with, without changing anything:
    /// they name this member even after a snapshot replaced its backend with the leader's.
    /// Every segment's head carries them, so only the newest segment's head is read.
    pub fn read_metadata(disk: &dyn Disk, dir: &Path) -> Result<Metadata> {
        let segments = segment_names(disk, dir)?;
        let Some(newest) = segments.last() else {
            return Err(WalError::NotFound(dir.to_path_buf()));
        };
        let path = dir.join(newest.file_name());
        let (_, head) = read_segment(disk, &path, HEAD_READ)?;
        // Cut short, the head reads as a segment whose last record is torn.
        let read = segment::read_records(&path, &head, true)?;
        let record = read
            .records
            .iter()
            .find(|r| r.typ == RecordType::Metadata)
            .ok_or_else(|| WalError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "the segment's head has no metadata record".into(),
            })?;
        Metadata::decode(record.payload.as_slice()).map_err(|e| WalError::Corrupt {
            path,
            offset: 0,
            reason: format!("bad metadata: {e}"),
        })
    }

    /// Reads every segment, keeping the metadata and snapshot marks but no entries.
    fn scan(disk: &dyn Disk, dir: &Path) -> Result<Replay> {
        let segments = segment_names(disk, dir)?;
        if segments.is_empty() {
            return Err(WalError::NotFound(dir.to_path_buf()));
        }
        let from = SnapshotMark::default();
        let mut replayer = Replayer::new(&from, false);
        read_segments(disk, dir, &segments, 0, &mut replayer)?;
        Ok(replayer.replay)
    }

    /// Creates a WAL in `dir`, which must not hold one yet.
    pub fn create(
        disk: Arc<dyn Disk>,
        dir: &Path,
        metadata: Metadata,
        options: WalOptions,
    ) -> Result<Wal> {
        disk.create_dir_all(dir)
            .map_err(io_err("create dir", dir))?;
        if !segment_names(disk.as_ref(), dir)?.is_empty() {
            return Err(WalError::AlreadyExists(dir.to_path_buf()));
        }
        remove_temporaries(disk.as_ref(), dir)?;
        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let hard_state = HardState::default();
        let (tail, offset, crc) = SegmentHead {
            name,
            prev_crc: 0,
            metadata: &metadata,
            hard_state: &hard_state,
            snapshot: Some(&SnapshotMark::default()),
        }
        .write(disk.as_ref(), dir, &options)?;
        Ok(Wal {
            disk,
            dir: dir.to_path_buf(),
            options,
            metadata,
            segments: vec![name],
            tail,
            offset,
            crc,
            last_index: 0,
            hard_state,
            buf: Vec::new(),
            failed: None,
            fsync_latency: None,
            unsafe_no_fsync: false,
        })
    }

    /// Opens the WAL in `dir` and replays it from the snapshot `from` (index 0, term 0 for
    /// the beginning), which must be marked in the WAL. A torn tail is truncated.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        from: &SnapshotMark,
        options: WalOptions,
    ) -> Result<(Wal, Replay)> {
        if !disk.exists(dir) {
            return Err(WalError::NotFound(dir.to_path_buf()));
        }
        remove_temporaries(disk.as_ref(), dir)?;
        let segments = segment_names(disk.as_ref(), dir)?;
        let Some(start) = segments.iter().rposition(|s| s.first_index <= from.index) else {
            return match segments.first() {
                None => Err(WalError::NotFound(dir.to_path_buf())),
                Some(_) => Err(WalError::SnapshotNotFound {
                    index: from.index,
                    term: from.term,
                }),
            };
        };
        let mut replayer = Replayer::new(from, true);
        let tail = read_segments(disk.as_ref(), dir, &segments, start, &mut replayer)?;
        if !replayer.found_snapshot {
            return Err(WalError::SnapshotNotFound {
                index: from.index,
                term: from.term,
            });
        }
        let Tail {
            file,
            end: mut offset,
            dirty,
            len,
            mut crc,
        } = tail;
        let path = file.path().to_path_buf();
        if dirty {
            // Zero what follows the valid records, so new records land on zeros again and a
            // later tear is recognisable.
            file.set_len(offset).map_err(io_err("truncate", &path))?;
            file.set_len(len).map_err(io_err("truncate", &path))?;
            file.sync().map_err(io_err("fsync", &path))?;
        }
        if offset % SECTOR != 0 {
            // A torn write left the records ending mid-sector: pad, so the next write
            // starts on a sector of its own.
            let mut pad = Vec::new();
            crc = record::pad_to_sector(&mut pad, offset, crc);
            file.write_at(offset, &pad)
                .map_err(io_err("write", &path))?;
            file.sync().map_err(io_err("fsync", &path))?;
            offset += pad.len() as u64;
        }
        let replay = replayer.replay;
        Ok((
            Wal {
                disk,
                dir: dir.to_path_buf(),
                options,
                metadata: replay.metadata,
                segments,
                tail: file,
                offset,
                crc,
                last_index: replayer.last_index,
                hard_state: replay.hard_state,
                buf: Vec::new(),
                failed: None,
                fsync_latency: None,
                unsafe_no_fsync: false,
            },
            replay,
        ))
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Index of the last entry (or snapshot) saved.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Number of live segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn check_writable(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(WalError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Reports the latency of every later fsync of the tail segment to `histogram`, in
    /// seconds on the runtime clock.
    pub fn observe_fsyncs(&mut self, histogram: Histogram) {
        self.fsync_latency = Some(histogram);
    }

    /// Stops fsyncing appends (`--unsafe-no-fsync`): unsafe, a machine crash may lose
    /// acknowledged writes.
    pub fn skip_fsyncs(&mut self) {
        self.unsafe_no_fsync = true;
    }

    fn sync_tail(&self) -> Result<()> {
        if self.unsafe_no_fsync {
            return Ok(());
        }
        let start = Clock.now();
        let result = self.tail.sync();
        if let Some(h) = &self.fsync_latency {
            h.observe((Clock.now() - start).as_secs_f64());
        }
        result.map_err(io_err("fsync", self.tail.path()))
    }

    /// Writes `self.buf` at the tail, and fsyncs if `sync`; any error fails the WAL for
    /// good.
    fn write_buf(&mut self, sync: bool) -> Result<()> {
        let path = self.tail.path().to_path_buf();
        let result = self
            .tail
            .write_at(self.offset, &self.buf)
            .map_err(io_err("write", &path))
            .and_then(|()| if sync { self.sync_tail() } else { Ok(()) });
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result?;
        self.offset += self.buf.len() as u64;
        Ok(())
    }

    /// Appends `entries` and then `hard_state`, and returns once they are durable. Entries
    /// must be consecutive and start at most one past the last index (an earlier start
    /// overwrites the log from there, as Raft does on a conflict).
    ///
    /// As etcd's `MustSync`: a save of a hard state whose term and vote are unchanged, with
    /// no entries (a commit index moving), is written but not fsynced; the next fsync makes
    /// it durable. A crash may lose it: replay then gives an older commit index, and the
    /// member takes the commit back from its applied index and the leader.
    pub fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) -> Result<()> {
        self.check_writable()?;
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        let mut last = self.last_index;
        for (i, e) in entries.iter().enumerate() {
            let ok = if i == 0 {
                e.index >= 1 && e.index <= last + 1
            } else {
                e.index == last + 1
            };
            if !ok {
                return Err(WalError::Gap {
                    index: e.index,
                    last,
                });
            }
            last = e.index;
        }
        // Raft only appends entries of its current term or older ones it accepted from a
        // leader, in term order; a term never goes back.
        for pair in entries.windows(2) {
            assert!(
                pair[0].term <= pair[1].term,
                "WAL save: entry {} has term {} after entry {} of term {}",
                pair[1].index,
                pair[1].term,
                pair[0].index,
                pair[0].term
            );
        }
        if let Some(hs) = hard_state {
            assert!(
                hs.term >= self.hard_state.term,
                "WAL save: hard state term {} after term {}",
                hs.term,
                self.hard_state.term
            );
        }
        self.buf.clear();
        let mut crc = self.crc;
        for e in entries {
            crc = encode_message(&mut self.buf, self.offset, crc, RecordType::Entry, e)?;
        }
        if let Some(hs) = hard_state {
            crc = encode_message(&mut self.buf, self.offset, crc, RecordType::HardState, hs)?;
        }
        crc = record::pad_to_sector(&mut self.buf, self.offset, crc);
        let must_sync = !entries.is_empty()
            || hard_state.is_some_and(|hs| {
                hs.term != self.hard_state.term || hs.vote != self.hard_state.vote
            });
        self.write_buf(must_sync)?;
        self.crc = crc;
        self.last_index = last;
        if let Some(hs) = hard_state {
            self.hard_state = *hs;
        }
        if self.offset >= self.options.segment_size {
            self.cut()?;
        }
        Ok(())
    }

    /// Records that a snapshot at `mark` exists, durably. Replay can start from it.
    pub fn save_snapshot(&mut self, mark: &SnapshotMark) -> Result<()> {
        self.check_writable()?;
        self.buf.clear();
        let crc = encode_message(
            &mut self.buf,
            self.offset,
            self.crc,
            RecordType::Snapshot,
            mark,
        )?;
        let crc = record::pad_to_sector(&mut self.buf, self.offset, crc);
        self.write_buf(true)?;
        self.crc = crc;
        self.last_index = self.last_index.max(mark.index);
        Ok(())
    }

    /// Closes the tail segment and starts a new one.
    pub fn cut(&mut self) -> Result<()> {
        self.check_writable()?;
        let result = self.cut_inner();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    fn cut_inner(&mut self) -> Result<()> {
        let path = self.tail.path().to_path_buf();
        self.tail
            .set_len(self.offset)
            .map_err(io_err("truncate", &path))?;
        self.sync_tail()?;
        let last = *self.segments.last().expect("a WAL has a tail segment");
        let name = SegmentName {
            seq: last.seq + 1,
            first_index: self.last_index + 1,
        };
        let (tail, offset, crc) = SegmentHead {
            name,
            prev_crc: self.crc,
            metadata: &self.metadata,
            hard_state: &self.hard_state,
            snapshot: None,
        }
        .write(self.disk.as_ref(), &self.dir, &self.options)?;
        self.segments.push(name);
        self.tail = tail;
        self.offset = offset;
        self.crc = crc;
        Ok(())
    }

    /// Removes segments that hold only entries before `index` (typically a snapshot's
    /// index): every segment older than the newest one that starts at or before `index`.
    pub fn release_to(&mut self, index: u64) -> Result<()> {
        let Some(keep_from) = self.segments.iter().rposition(|s| s.first_index <= index) else {
            return Ok(());
        };
        if keep_from == 0 {
            return Ok(());
        }
        for name in self.segments.drain(..keep_from) {
            let path = self.dir.join(name.file_name());
            self.disk.remove(&path).map_err(io_err("remove", &path))?;
        }
        self.disk
            .sync_dir(&self.dir)
            .map_err(io_err("sync dir", &self.dir))
    }
}
