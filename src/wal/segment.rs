//! Segment files: naming, and reading one segment's records.

use std::path::Path;

use super::record::{self, Invalid, Record};
use super::WalError;

/// A segment file name: `{seq:016x}-{first_index:016x}.wal`, where `first_index` is the
/// index of the first entry appended to it (entries may overwrite earlier indexes later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
}

pub const SUFFIX: &str = ".wal";
pub const TMP_SUFFIX: &str = ".wal.tmp";

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{SUFFIX}", self.seq, self.first_index)
    }

    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (seq, index) = stem.split_once('-')?;
        if seq.len() != 16 || index.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(index, 16).ok()?,
        })
    }
}

/// The records of one segment, up to where valid data ends.
#[derive(Debug)]
pub struct SegmentRecords {
    pub records: Vec<Record>,
    /// Offset just past the last valid record.
    pub end: usize,
    /// Where a torn write was found (only ever in the last segment).
    pub torn_at: Option<usize>,
}

/// Decodes the records of a segment's bytes. In the last segment a record that a crash tore
/// ends the data; anywhere else, and for damage a crash cannot cause, it is an error that
/// names the file and offset.
pub fn read_records(path: &Path, data: &[u8], is_last: bool) -> Result<SegmentRecords, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut offset = 0;
    // The seed record is checked against its own zero-initialised crc; later records chain.
    let mut crc = 0;
    loop {
        match record::decode(data, offset, crc) {
            Ok(r) => {
                offset = r.end;
                crc = r.crc;
                records.push(r);
            }
            Err(Invalid::End) => {
                if !is_last && data[offset..].iter().any(|&b| b != 0) {
                    return Err(corrupt(offset, "records end before the data does".into()));
                }
                return Ok(SegmentRecords {
                    records,
                    end: offset,
                    torn_at: None,
                });
            }
            Err(invalid) => {
                let (torn, reason) = match invalid {
                    Invalid::End => unreachable!("handled above"),
                    Invalid::Truncated { reason } => (is_last, reason),
                    Invalid::Bad { reason, extent } => (
                        is_last && record::has_zero_sector(data, offset, extent),
                        reason,
                    ),
                };
                if !torn {
                    return Err(corrupt(offset, reason));
                }
                return Ok(SegmentRecords {
                    records,
                    end: offset,
                    torn_at: Some(offset),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_sequence() {
        let a = SegmentName {
            seq: 2,
            first_index: 0x1f,
        };
        assert_eq!(a.file_name(), "0000000000000002-000000000000001f.wal");
        assert_eq!(SegmentName::parse(&a.file_name()), Some(a));
        assert_eq!(
            SegmentName::parse("0000000000000002-000000000000001f.wal.tmp"),
            None
        );
        assert_eq!(SegmentName::parse("2-1f.wal"), None);
        let b = SegmentName {
            seq: 10,
            first_index: 1,
        };
        assert!(
            a.file_name() < b.file_name(),
            "lexical order must be sequence order"
        );
    }
}
