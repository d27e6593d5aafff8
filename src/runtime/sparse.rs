//! File contents for [`super::SimDisk`] that do not store their zero tail: a WAL segment
//! preallocated to 64 MiB costs the simulation what was written into it, not 64 MiB of
//! zeros allocated, copied on every sync and cloned on every crash.

use super::zeros::all_zero;

/// Bytes `[0, len)`, of which only `[0, data.len())` are stored; the rest read as zeros.
#[derive(Clone, Debug, Default)]
pub(super) struct Sparse {
    data: Vec<u8>,
    len: u64,
}

impl Sparse {
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Truncates or extends with zeros, as `ftruncate` does.
    pub(super) fn set_len(&mut self, len: u64) {
        self.data.truncate(len as usize);
        self.len = len;
    }

    /// Fills `buf` from `offset`; the caller checks that the range is inside the file.
    pub(super) fn read(&self, offset: u64, buf: &mut [u8]) {
        let from = (offset as usize).min(self.data.len());
        let stored = (offset as usize + buf.len()).min(self.data.len()) - from;
        buf[..stored].copy_from_slice(&self.data[from..from + stored]);
        // The WAL reads a whole preallocated segment into a fresh zeroed buffer: zeros
        // already there need no writing, and writing them would make the untouched pages of
        // that buffer real memory.
        let tail = &mut buf[stored..];
        if !all_zero(tail) {
            tail.fill(0);
        }
    }

    /// Writes `src` at `offset`, extending the file if it ends past the end.
    pub(super) fn write(&mut self, offset: u64, src: &[u8]) {
        let end = offset as usize + src.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(src);
        self.len = self.len.max(end as u64);
    }

    /// Copies bytes `[from, to)` of `src` over the same bytes here; both are at least `to`
    /// long.
    pub(super) fn copy_range(&mut self, src: &Sparse, from: u64, to: u64) {
        let (from, to) = (from as usize, to as usize);
        let stored_to = to.min(src.data.len());
        if from < stored_to {
            self.write(from as u64, &src.data[from..stored_to]);
        }
        // Past what `src` stores it reads as zeros: so must this.
        let zeros_from = from.max(src.data.len());
        let zeros_to = to.min(self.data.len());
        if zeros_from < zeros_to {
            self.data[zeros_from..zeros_to].fill(0);
        }
    }

    /// Flips one bit of the byte at `offset`, if the file is that long.
    pub(super) fn flip(&mut self, offset: u64, bit: u8) {
        if offset >= self.len {
            return;
        }
        let at = offset as usize;
        if self.data.len() <= at {
            self.data.resize(at + 1, 0);
        }
        self.data[at] ^= 1 << bit;
    }
}

#[cfg(test)]
mod tests {
    use super::Sparse;

    fn bytes(s: &Sparse) -> Vec<u8> {
        let mut buf = vec![0xff; s.len() as usize];
        s.read(0, &mut buf);
        buf
    }

    #[test]
    fn behaves_like_a_vector_of_bytes() {
        let mut s = Sparse::default();
        let mut v: Vec<u8> = Vec::new();
        s.set_len(4096);
        v.resize(4096, 0);
        s.write(10, b"abc");
        v[10..13].copy_from_slice(b"abc");
        assert_eq!(bytes(&s), v);
        s.write(5000, b"xyz");
        v.resize(5000, 0);
        v.extend_from_slice(b"xyz");
        assert_eq!(bytes(&s), v);
        s.set_len(11);
        v.truncate(11);
        s.set_len(600);
        v.resize(600, 0);
        assert_eq!(bytes(&s), v);
        s.flip(500, 3);
        v[500] ^= 8;
        assert_eq!(bytes(&s), v);
        let mut buf = [0xffu8; 4];
        s.read(9, &mut buf);
        assert_eq!(buf, [0, b'a', 0, 0]);
    }

    #[test]
    fn copy_range_copies_stored_bytes_and_zeros() {
        let mut src = Sparse::default();
        src.write(0, &[1; 100]);
        src.set_len(1000);
        let mut dst = Sparse::default();
        dst.write(0, &[7; 800]);
        dst.set_len(1000);
        dst.copy_range(&src, 50, 700);
        let mut want = vec![7u8; 800];
        want[50..100].fill(1);
        want[100..700].fill(0);
        want.resize(1000, 0);
        assert_eq!(bytes(&dst), want);
    }
}
