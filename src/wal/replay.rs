//! Reading segments back: checking each segment's seed and chain, and folding records
//! into what the WAL holds.

use std::path::Path;

use prost::Message;

use super::record::{self, RecordType};
use super::segment::{self, SegmentName};
use super::writer::{io_err, Replay};
use super::{Metadata, Result, SnapshotMark, WalError};
use crate::proto::raftpb::{Entry, HardState};
use crate::runtime::{Disk, DiskFile, OpenMode};

/// The last segment as reading left it.
pub(super) struct Tail {
    pub file: Box<dyn DiskFile>,
    /// Offset just past the last valid record.
    pub end: u64,
    /// Whether non-zero bytes (a torn write) follow `end`.
    pub dirty: bool,
    pub len: u64,
    /// Chain crc of the last valid record.
    pub crc: u32,
}

/// Replay state while records are read.
pub(super) struct Replayer<'a> {
    pub from: &'a SnapshotMark,
    /// False when only snapshot marks are wanted, so entries are not kept in memory.
    pub collect_entries: bool,
    pub replay: Replay,
    pub found_snapshot: bool,
    pub last_index: u64,
}

impl<'a> Replayer<'a> {
    pub fn new(from: &'a SnapshotMark, collect_entries: bool) -> Self {
        Replayer {
            from,
            collect_entries,
            replay: Replay::default(),
            found_snapshot: false,
            last_index: from.index,
        }
    }

    fn apply(&mut self, path: &Path, offset: usize, rec: &record::Record) -> Result<()> {
        let corrupt = |reason: String| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let decode_err = |what: &str, e: prost::DecodeError| corrupt(format!("bad {what}: {e}"));
        match rec.typ {
            RecordType::Seed => return Err(corrupt("seed record inside a segment".into())),
            RecordType::Pad => {}
            RecordType::Metadata => {
                let m = Metadata::decode(rec.payload.as_slice())
                    .map_err(|e| decode_err("metadata", e))?;
                if self.replay.metadata != Metadata::default() && self.replay.metadata != m {
                    return Err(corrupt(format!(
                        "metadata {m:?} differs from {:?} earlier in the WAL",
                        self.replay.metadata
                    )));
                }
                self.replay.metadata = m;
            }
            RecordType::HardState => {
                self.replay.hard_state = HardState::decode(rec.payload.as_slice())
                    .map_err(|e| decode_err("hard state", e))?;
            }
            RecordType::Snapshot => {
                let mark = SnapshotMark::decode(rec.payload.as_slice())
                    .map_err(|e| decode_err("snapshot mark", e))?;
                if mark.index == self.from.index {
                    if mark.term != self.from.term {
                        return Err(WalError::SnapshotMismatch {
                            index: mark.index,
                            expected: self.from.term,
                            found: mark.term,
                        });
                    }
                    self.found_snapshot = true;
                }
                self.last_index = self.last_index.max(mark.index);
                self.replay.snapshots.push(mark);
            }
            RecordType::Entry => {
                let entry =
                    Entry::decode(rec.payload.as_slice()).map_err(|e| decode_err("entry", e))?;
                if !self.collect_entries {
                    self.last_index = entry.index;
                } else if entry.index > self.from.index {
                    let keep = (entry.index - self.from.index - 1) as usize;
                    if keep > self.replay.entries.len() {
                        return Err(WalError::Gap {
                            index: entry.index,
                            last: self.from.index + self.replay.entries.len() as u64,
                        });
                    }
                    self.replay.entries.truncate(keep);
                    self.last_index = entry.index;
                    self.replay.entries.push(entry);
                } else {
                    // An overwrite at or before the snapshot removes everything after it,
                    // including entries already collected: the log ends at the snapshot.
                    self.replay.entries.clear();
                    self.last_index = self.from.index;
                }
            }
        }
        Ok(())
    }
}

/// Reads `segments[start..]` in order into `replayer`; only the last may end torn.
/// The segment at `path`, open, and its first `limit` bytes (all of it if shorter).
pub(super) fn read_segment(
    disk: &dyn Disk,
    path: &Path,
    limit: u64,
) -> Result<(Box<dyn DiskFile>, Vec<u8>)> {
    let file = disk
        .open(path, OpenMode::Existing)
        .map_err(io_err("open", path))?;
    let len = file.len().map_err(io_err("stat", path))?;
    let mut data = vec![0; len.min(limit) as usize];
    file.read_at(0, &mut data).map_err(io_err("read", path))?;
    Ok((file, data))
}

pub(super) fn read_segments(
    disk: &dyn Disk,
    dir: &Path,
    segments: &[SegmentName],
    start: usize,
    replayer: &mut Replayer<'_>,
) -> Result<Tail> {
    let mut prev_crc = None;
    let mut tail = None;
    for (i, name) in segments.iter().enumerate().skip(start) {
        let is_last = i + 1 == segments.len();
        let path = dir.join(name.file_name());
        let (file, data) = read_segment(disk, &path, u64::MAX)?;
        let read = segment::read_records(&path, &data, is_last)?;
        let corrupt = |offset: usize, reason: String| WalError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        let Some(seed) = read.records.first().filter(|r| r.typ == RecordType::Seed) else {
            return Err(corrupt(
                0,
                "segment does not start with a seed record".into(),
            ));
        };
        if seed.payload.len() != 12 {
            return Err(corrupt(
                0,
                format!("seed of {} bytes, not 12", seed.payload.len()),
            ));
        }
        let seed_prev = u32::from_le_bytes(seed.payload[..4].try_into().expect("4 bytes"));
        let seed_seq = u64::from_le_bytes(seed.payload[4..].try_into().expect("8 bytes"));
        if seed_seq != name.seq {
            return Err(corrupt(
                0,
                format!("seed names sequence {seed_seq}, not {}", name.seq),
            ));
        }
        if prev_crc.is_some_and(|p| p != seed_prev) {
            return Err(corrupt(
                0,
                format!(
                    "chain crc {seed_prev:#010x} does not continue the previous segment's {:#010x}",
                    prev_crc.unwrap_or_default()
                ),
            ));
        }
        let mut offset = seed.end;
        for rec in &read.records[1..] {
            replayer.apply(&path, offset, rec)?;
            offset = rec.end;
        }
        prev_crc = Some(read.records.last().expect("seed present").crc);
        if let Some(at) = read.torn_at {
            replayer.replay.torn_tail = Some((path.clone(), at as u64));
        }
        if is_last {
            tail = Some(Tail {
                file,
                end: read.end as u64,
                dirty: !crate::runtime::all_zero(&data[read.end..]),
                len: data.len() as u64,
                crc: prev_crc.expect("set above"),
            });
        }
    }
    Ok(tail.expect("the last segment was read"))
}
