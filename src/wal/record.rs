//! The record frame: how one WAL record sits on disk.
//!
//! ```text
//! offset  size  field
//! 0       4     len        payload length, little-endian
//! 4       4     len_check  !len, so a damaged length is caught before it is trusted
//! 8       4     crc        crc32 of (type, masked payload), chained from the previous crc
//! 12      1     type       RecordType
//! 13      len   payload    protobuf, XOR-masked with a keystream derived from the offset
//! ```
//!
//! Masking makes a written record never contain a 512-byte run of zeros, so a zeroed
//! sector inside a record proves the record was never completely written (a torn write
//! into preallocated space) rather than damaged after it was written. Every write ends
//! with a pad record at a sector boundary, so no write shares a sector with data written
//! before it: a dropped sector is always a whole sector of zeros. A zeroed header marks
//! the end of the records.

use crc32fast::Hasher;

/// Bytes before the payload.
pub const HEADER: usize = 13;

/// The largest payload a record may have; a request this big would be refused far above.
pub const MAX_PAYLOAD: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// First record of every segment: the chain crc at the end of the previous segment and
    /// the segment's sequence number.
    Seed = 1,
    Metadata = 2,
    Entry = 3,
    HardState = 4,
    Snapshot = 5,
    /// Filler that ends a write at a sector boundary; carries nothing.
    Pad = 6,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => RecordType::Seed,
            2 => RecordType::Metadata,
            3 => RecordType::Entry,
            4 => RecordType::HardState,
            5 => RecordType::Snapshot,
            6 => RecordType::Pad,
            _ => return None,
        })
    }
}

/// XORs `data` with a keystream determined by `offset` (splitmix64); its own inverse.
fn mask(offset: u64, data: &mut [u8]) {
    let mut state = offset ^ 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        for (b, k) in chunk.iter_mut().zip(z.to_le_bytes()) {
            *b ^= k;
        }
    }
}

pub(crate) fn checksum(prev: u32, typ: u8, masked_payload: &[u8]) -> u32 {
    let mut h = Hasher::new_with_initial(prev);
    h.update(&[typ]);
    h.update(masked_payload);
    h.finalize()
}

/// Appends one framed record to `buf`, which will be written at file offset `base`;
/// returns the new chain crc.
pub fn encode(
    buf: &mut Vec<u8>,
    base: u64,
    prev_crc: u32,
    typ: RecordType,
    payload: impl FnOnce(&mut Vec<u8>),
) -> u32 {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    payload(buf);
    let len = buf.len() - start - HEADER;
    assert!(
        len <= MAX_PAYLOAD,
        "record payload({len}) exceeds MAX_PAYLOAD({MAX_PAYLOAD})"
    );
    let offset = base + start as u64;
    mask(offset, &mut buf[start + HEADER..]);
    let crc = checksum(prev_crc, typ as u8, &buf[start + HEADER..]);
    let len = len as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&(!len).to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    buf[start + 12] = typ as u8;
    crc
}

/// Appends a [`RecordType::Pad`] record so that `buf`, written at `base`, ends on a sector
/// boundary; returns the new chain crc. Each write then fills whole sectors that held only
/// zeros, so a sector a crash drops reads as zeros and gives the tear away.
pub fn pad_to_sector(buf: &mut Vec<u8>, base: u64, prev_crc: u32) -> u32 {
    let sector = crate::runtime::SECTOR as usize;
    let end = base as usize + buf.len();
    let mut gap = (sector - end % sector) % sector;
    if gap == 0 {
        return prev_crc;
    }
    if gap < HEADER {
        gap += sector;
    }
    encode(buf, base, prev_crc, RecordType::Pad, |b| {
        b.resize(b.len() + gap - HEADER, 0)
    })
}

/// One decoded record.
#[derive(Debug)]
pub struct Record {
    pub typ: RecordType,
    pub payload: Vec<u8>,
    pub crc: u32,
    /// Offset just past this record.
    pub end: usize,
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A zeroed header: the records end here.
    End,
    /// The file ends inside the record: only a lost file extension does that.
    Truncated { reason: String },
    /// Not a whole record; `extent` is how far the damaged frame reaches (clipped to the data).
    Bad { reason: String, extent: usize },
}

/// Decodes the record at `offset` of `data`, checking it against the chain crc `prev_crc`.
pub fn decode(data: &[u8], offset: usize, prev_crc: u32) -> Result<Record, Invalid> {
    let bad = |reason: String, extent: usize| Invalid::Bad {
        reason,
        extent: extent.min(data.len()),
    };
    if data.len() < offset + HEADER {
        if data[offset..].iter().all(|&b| b == 0) {
            return Err(Invalid::End);
        }
        return Err(Invalid::Truncated {
            reason: format!("header cut short by the end of the file ({})", data.len()),
        });
    }
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    let (len, len_check, crc) = (word(offset), word(offset + 4), word(offset + 8));
    if len == 0 && len_check == 0 {
        return Err(Invalid::End);
    }
    if len != !len_check {
        return Err(bad(
            format!("length {len} does not match its check {len_check:#x}"),
            offset + HEADER,
        ));
    }
    let len = len as usize;
    if len > MAX_PAYLOAD {
        return Err(bad(
            format!("length {len} exceeds the limit {MAX_PAYLOAD}"),
            offset + HEADER,
        ));
    }
    let end = offset + HEADER + len;
    if end > data.len() {
        return Err(Invalid::Truncated {
            reason: format!("record of {len} bytes runs past the end of the file"),
        });
    }
    let typ_byte = data[offset + 12];
    let payload = &data[offset + HEADER..end];
    let actual = checksum(prev_crc, typ_byte, payload);
    if actual != crc {
        return Err(bad(
            format!("checksum {actual:#010x} does not match the stored {crc:#010x}"),
            end,
        ));
    }
    let typ = RecordType::from_u8(typ_byte)
        .ok_or_else(|| bad(format!("unknown record type {typ_byte}"), end))?;
    let mut payload = payload.to_vec();
    mask(offset as u64, &mut payload);
    Ok(Record {
        typ,
        payload,
        crc,
        end,
    })
}

/// True if some whole 512-byte sector overlapping `[from, to)` is all zeros: the mark of a
/// write that a crash tore (preallocated space reads as zeros; masked records never do).
pub fn has_zero_sector(data: &[u8], from: usize, to: usize) -> bool {
    const SECTOR: usize = crate::runtime::SECTOR as usize;
    let to = to.min(data.len());
    let mut sector = from / SECTOR * SECTOR;
    while sector < to {
        let end = (sector + SECTOR).min(data.len());
        if data[sector..end].iter().all(|&b| b == 0) {
            return true;
        }
        sector += SECTOR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(payload: &[u8], base: u64, prev: u32) -> (Vec<u8>, u32) {
        let mut buf = Vec::new();
        let crc = encode(&mut buf, base, prev, RecordType::Entry, |b| {
            b.extend_from_slice(payload)
        });
        (buf, crc)
    }

    #[test]
    fn round_trip_with_chain() {
        let (a, crc_a) = one(b"first", 0, 7);
        let mut data = a.clone();
        let (b, crc_b) = {
            let mut buf = Vec::new();
            let crc = encode(
                &mut buf,
                a.len() as u64,
                crc_a,
                RecordType::HardState,
                |b| b.extend_from_slice(b"second"),
            );
            (buf, crc)
        };
        data.extend_from_slice(&b);
        let r1 = decode(&data, 0, 7).unwrap();
        assert_eq!(
            (r1.typ, r1.payload.as_slice(), r1.crc),
            (RecordType::Entry, &b"first"[..], crc_a)
        );
        let r2 = decode(&data, r1.end, r1.crc).unwrap();
        assert_eq!(r2.payload, b"second");
        assert_eq!(r2.crc, crc_b);
        assert!(
            matches!(decode(&data, 0, 8), Err(Invalid::Bad { .. })),
            "chain not checked"
        );
    }

    /// Masking is what lets a zero sector prove a torn write: zeros in, no zero run out.
    #[test]
    fn zero_payload_is_masked() {
        let (buf, _) = one(&[0; 4096], 0, 0);
        assert!(!has_zero_sector(&buf, 0, buf.len()));
        let r = decode(&buf, 0, 0).unwrap();
        assert_eq!(r.payload, vec![0; 4096]);
    }

    #[test]
    fn zero_header_is_the_end() {
        let data = vec![0; 64];
        assert_eq!(decode(&data, 0, 0).unwrap_err(), Invalid::End);
        assert_eq!(decode(&data, 60, 0).unwrap_err(), Invalid::End);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let (buf, _) = one(b"some payload bytes", 0, 1);
        for bit in 0..buf.len() * 8 {
            let mut data = buf.clone();
            data[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&data, 0, 1).is_err(),
                "flip of bit {bit} was not detected"
            );
        }
    }

    /// Every write must end on a sector boundary, whatever its start and length.
    #[test]
    fn padding_ends_on_a_sector_boundary_and_decodes() {
        for base in [0u64, 512, 1024] {
            for len in [0usize, 1, 498, 499, 500, 511, 512, 700] {
                let mut buf = Vec::new();
                let crc = encode(&mut buf, base, 9, RecordType::Entry, |b| {
                    b.resize(b.len() + len, 1)
                });
                let end_crc = pad_to_sector(&mut buf, base, crc);
                assert_eq!(
                    (base as usize + buf.len()) % 512,
                    0,
                    "base {base} len {len}"
                );
                let mut data = vec![0; base as usize];
                data.extend_from_slice(&buf);
                let first = decode(&data, base as usize, 9).unwrap();
                if first.end < data.len() {
                    let pad = decode(&data, first.end, first.crc).unwrap();
                    assert_eq!(
                        (pad.typ, pad.crc, pad.end),
                        (RecordType::Pad, end_crc, data.len())
                    );
                }
            }
        }
    }

    #[test]
    fn zero_sector_detection() {
        let mut data = vec![1u8; 2048];
        assert!(!has_zero_sector(&data, 0, 2048));
        data[1024..1536].fill(0);
        assert!(has_zero_sector(&data, 1000, 1100));
        assert!(!has_zero_sector(&data, 0, 1000));
        assert!(!has_zero_sector(&data, 1600, 4000));
    }
}
