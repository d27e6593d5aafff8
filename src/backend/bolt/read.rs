//! The reader: the current meta page, then each tree walked depth-first, one node in
//! memory at a time, every bound checked (see the module header: nothing is trusted).

use super::*;

/// Deeper than any tree bbolt writes (a page holds two elements at least, so 64 levels
/// would index more than 2^64 keys).
const MAX_DEPTH: usize = 64;

/// Where a file is read from: its length and bytes at an offset.
pub trait Source {
    /// Bytes in the file.
    fn size(&self) -> u64;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn io(e: std::io::Error) -> BoltError {
    BoltError::Io(e.to_string())
}

struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    high_water: u64,
    txid: u64,
}

/// The meta page at byte `at`, if it is one and valid.
fn meta<S: Source + ?Sized>(src: &S, at: u64) -> Result<Meta, BoltError> {
    let mut m = [0u8; META_SUMMED + 8];
    if at + (PAGE_HEADER + m.len()) as u64 > src.size() {
        return Err(BoltError::Invalid);
    }
    src.read_at(at + PAGE_HEADER as u64, &mut m).map_err(io)?;
    if u32_at(&m, 0) != MAGIC {
        return Err(BoltError::Invalid);
    }
    if u32_at(&m, 4) != VERSION {
        return Err(BoltError::VersionMismatch);
    }
    let checksum = u64_at(&m, META_SUMMED);
    if checksum != 0 && checksum != fnv64a(&m[..META_SUMMED]) {
        return Err(BoltError::Checksum);
    }
    Ok(Meta {
        page_size: u32_at(&m, 8),
        root: u64_at(&m, 16),
        freelist: u64_at(&m, 32),
        high_water: u64_at(&m, 40),
        txid: u64_at(&m, 48),
    })
}

/// The current meta: of the two meta pages, the valid one with the larger txid. The
/// second page sits one page size in, as the first one says if it can, else at 4096.
fn current_meta<S: Source + ?Sized>(src: &S) -> Result<Meta, BoltError> {
    let first = meta(src, 0);
    let second_at = match &first {
        Ok(m) if (512..=65536).contains(&m.page_size) => m.page_size as u64,
        _ => PAGE_SIZE as u64,
    };
    let m = match (first, meta(src, second_at)) {
        (Ok(a), Ok(b)) => {
            if b.txid > a.txid {
                b
            } else {
                a
            }
        }
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
        (Err(e), Err(_)) => return Err(e),
    };
    if !m.page_size.is_power_of_two() || !(512..=65536).contains(&m.page_size) {
        return Err(BoltError::Invalid);
    }
    let corrupt = |what: &str| BoltError::Corrupt {
        page: 0,
        what: what.to_string(),
    };
    if m.high_water < 3 {
        return Err(corrupt("fewer than 3 pages in use"));
    }
    if m.root < 2 || m.root >= m.high_water {
        return Err(corrupt("root bucket page out of range"));
    }
    if m.freelist != NO_FREELIST && (m.freelist < 2 || m.freelist >= m.high_water) {
        return Err(corrupt("freelist page out of range"));
    }
    let needed = (m.high_water as u128) * m.page_size as u128;
    if needed > src.size() as u128 {
        return Err(BoltError::Truncated {
            len: src.size(),
            pages: m.high_water,
            page_size: m.page_size,
        });
    }
    Ok(m)
}

fn corrupt(page: u64, what: impl Into<String>) -> BoltError {
    BoltError::Corrupt {
        page,
        what: what.into(),
    }
}

struct Reader<'a, S: ?Sized> {
    src: &'a S,
    meta: Meta,
    /// Pages already part of a node; a second reference is corruption (or a cycle).
    seen: Vec<bool>,
}

impl<S: Source + ?Sized> Reader<'_, S> {
    /// The bytes of node `id`, with its overflow pages, marked as seen.
    fn page(&mut self, id: u64) -> Result<Vec<u8>, BoltError> {
        if id < 2 || id >= self.meta.high_water {
            return Err(corrupt(id, "page id out of range"));
        }
        let size = self.meta.page_size as u64;
        let mut head = [0u8; PAGE_HEADER];
        self.src.read_at(id * size, &mut head).map_err(io)?;
        let end = id + 1 + u32_at(&head, 12) as u64;
        if end > self.meta.high_water {
            return Err(corrupt(id, "overflow beyond the high-water mark"));
        }
        for p in id..end {
            if std::mem::replace(&mut self.seen[p as usize], true) {
                return Err(corrupt(p, "page referenced twice"));
            }
        }
        let mut node = vec![0; ((end - id) * size) as usize];
        self.src.read_at(id * size, &mut node).map_err(io)?;
        Ok(node)
    }

    /// Calls `f` with the leaf elements of the tree at `id`, in order.
    fn walk<E: From<BoltError>>(
        &mut self,
        id: u64,
        depth: usize,
        f: &mut impl FnMut(&[u8], &[u8], u32) -> Result<(), E>,
    ) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Err(corrupt(id, "tree deeper than 64 levels").into());
        }
        let node = self.page(id)?;
        match u16_at(&node, 8) {
            LEAF => leaf_items(&node, f, |what| corrupt(id, what)),
            BRANCH => {
                let count = u16_at(&node, 10) as usize;
                if count == 0 {
                    return Err(corrupt(id, "empty branch").into());
                }
                for i in 0..count {
                    let (_, _, child) =
                        element(&node, i, |e| u64_at(e, 8)).map_err(|w| corrupt(id, w))?;
                    self.walk(child, depth + 1, f)?;
                }
                Ok(())
            }
            flags => Err(corrupt(
                id,
                format!("flags {flags:#x} where a branch or leaf belongs"),
            )
            .into()),
        }
    }
}

/// Element `i` of `node`: its key, where the key ends in `node`, and what `rest` reads
/// from its 16 bytes.
fn element<T>(
    node: &[u8],
    i: usize,
    rest: impl Fn(&[u8]) -> T,
) -> Result<(&[u8], usize, T), String> {
    let at = PAGE_HEADER + i * ELEMENT;
    let e = node
        .get(at..at + ELEMENT)
        .ok_or_else(|| format!("element {i} beyond the page"))?;
    let (pos, ksize) = if u16_at(node, 8) == BRANCH {
        (u32_at(e, 0), u32_at(e, 4))
    } else {
        (u32_at(e, 4), u32_at(e, 8))
    };
    let (start, end) = (at + pos as usize, at + pos as usize + ksize as usize);
    let key = node
        .get(start..end)
        .ok_or_else(|| format!("key of element {i} beyond the page"))?;
    Ok((key, end, rest(e)))
}

/// Calls `f` with the elements of a leaf node (a page, or an inline bucket's bytes).
fn leaf_items<E: From<BoltError>>(
    node: &[u8],
    f: &mut impl FnMut(&[u8], &[u8], u32) -> Result<(), E>,
    corrupt: impl Fn(String) -> BoltError,
) -> Result<(), E> {
    if node.len() < PAGE_HEADER || u16_at(node, 8) != LEAF {
        return Err(corrupt("not a leaf".to_string()).into());
    }
    for i in 0..u16_at(node, 10) as usize {
        let (key, start, (flags, vsize)) =
            element(node, i, |e| (u32_at(e, 0), u32_at(e, 12))).map_err(&corrupt)?;
        let value = node
            .get(start..start + vsize as usize)
            .ok_or_else(|| corrupt(format!("value of element {i} beyond the page")))?;
        f(key, value, flags)?;
    }
    Ok(())
}

/// Calls `f(bucket, key, value)` for every key of every bucket of a bolt file, buckets in
/// name order and keys in order within each. Nested buckets are refused (etcd has none).
pub fn read_each<S, E>(
    src: &S,
    mut f: impl FnMut(&[u8], &[u8], &[u8]) -> Result<(), E>,
) -> Result<(), E>
where
    S: Source + ?Sized,
    E: From<BoltError>,
{
    let meta = current_meta(src)?;
    let root = meta.root;
    let mut r = Reader {
        src,
        seen: vec![false; meta.high_water as usize],
        meta,
    };
    let mut buckets: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    r.walk(root, 0, &mut |name: &[u8], value: &[u8], flags| {
        let bucket = String::from_utf8_lossy(name).into_owned();
        if flags & BUCKET_LEAF == 0 {
            return Err(BoltError::Unsupported {
                bucket,
                what: "a key outside any bucket",
            });
        }
        if value.len() < BUCKET_HEADER {
            return Err(corrupt(root, format!("bucket {bucket:?}: short header")));
        }
        if buckets
            .last()
            .is_some_and(|(last, _)| last.as_slice() >= name)
        {
            return Err(corrupt(root, "bucket names out of order"));
        }
        buckets.push((name.to_vec(), value.to_vec()));
        Ok(())
    })?;
    for (name, value) in buckets {
        let bucket = String::from_utf8_lossy(&name).into_owned();
        let id = u64_at(&value, 0);
        let mut last: Option<Vec<u8>> = None;
        let mut each = |k: &[u8], v: &[u8], flags: u32| -> Result<(), E> {
            if flags & BUCKET_LEAF != 0 {
                return Err(BoltError::Unsupported {
                    bucket: bucket.clone(),
                    what: "nested buckets",
                }
                .into());
            }
            if last.as_deref().is_some_and(|l| l >= k) {
                return Err(corrupt(id, format!("bucket {bucket:?}: keys out of order")).into());
            }
            last = Some(k.to_vec());
            f(&name, k, v)
        };
        if id == 0 {
            leaf_items(&value[BUCKET_HEADER..], &mut each, |what| {
                corrupt(root, format!("inline bucket {bucket:?}: {what}"))
            })?;
        } else {
            r.walk(id, 0, &mut each)?;
        }
        if last.is_none() {
            // An empty bucket still exists.
            f(&name, &[], &[])?;
        }
    }
    Ok(())
}

/// Reads a whole bolt file into memory (see [`read_each`] to stream it).
pub fn read(file: &[u8]) -> Result<Buckets, BoltError> {
    let mut buckets = Buckets::new();
    read_each(file, |bucket, k, v| {
        let kvs = buckets.entry(bucket.to_vec()).or_default();
        if !k.is_empty() {
            kvs.insert(k.to_vec(), v.to_vec());
        }
        Ok::<_, BoltError>(())
    })?;
    Ok(buckets)
}

/// Bytes of the pages in use (bbolt's `Tx.Size`), from the current meta page.
pub fn used_bytes<S: Source + ?Sized>(src: &S) -> Result<u64, BoltError> {
    let m = current_meta(src)?;
    Ok(m.high_water * m.page_size as u64)
}
