//! The reader: the current meta page, then each tree walked depth-first with every bound
//! checked (see the module header for what is trusted: nothing).

use super::*;

/// Deeper than any tree bbolt writes (a page holds two elements at least, so 64 levels
/// would index more than 2^64 keys).
const MAX_DEPTH: usize = 64;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    high_water: u64,
    txid: u64,
}

/// The meta page at byte `at`, if it is one and valid.
fn meta(file: &[u8], at: usize) -> Result<Meta, BoltError> {
    let m = file
        .get(at + PAGE_HEADER..at + PAGE_HEADER + META_SUMMED + 8)
        .ok_or(BoltError::Invalid)?;
    if u32_at(m, 0) != MAGIC {
        return Err(BoltError::Invalid);
    }
    if u32_at(m, 4) != VERSION {
        return Err(BoltError::VersionMismatch);
    }
    let checksum = u64_at(m, META_SUMMED);
    if checksum != 0 && checksum != fnv64a(&m[..META_SUMMED]) {
        return Err(BoltError::Checksum);
    }
    Ok(Meta {
        page_size: u32_at(m, 8),
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        high_water: u64_at(m, 40),
        txid: u64_at(m, 48),
    })
}

/// The current meta: of the two meta pages, the valid one with the larger txid. The
/// second page sits one page size in, as the first one says if it can, else at 4096.
fn current_meta(file: &[u8]) -> Result<Meta, BoltError> {
    let first = meta(file, 0);
    let second_at = match &first {
        Ok(m) if (512..=65536).contains(&m.page_size) => m.page_size as usize,
        _ => PAGE_SIZE,
    };
    let m = match (first, meta(file, second_at)) {
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
    if needed > file.len() as u128 {
        return Err(BoltError::Truncated {
            len: file.len(),
            pages: m.high_water,
            page_size: m.page_size,
        });
    }
    Ok(m)
}

/// A leaf element as read: key, value and flags.
type Item<'a> = (&'a [u8], &'a [u8], u32);

struct Reader<'a> {
    file: &'a [u8],
    meta: Meta,
    /// Pages already part of a node; a second reference is corruption (or a cycle).
    seen: Vec<bool>,
}

impl<'a> Reader<'a> {
    fn corrupt(page: u64, what: impl Into<String>) -> BoltError {
        BoltError::Corrupt {
            page,
            what: what.into(),
        }
    }

    /// The bytes of node `id`, with its overflow pages, marked as seen.
    fn page(&mut self, id: u64) -> Result<&'a [u8], BoltError> {
        if id < 2 || id >= self.meta.high_water {
            return Err(Self::corrupt(id, "page id out of range"));
        }
        let size = self.meta.page_size as u64;
        let head = &self.file[(id * size) as usize..][..PAGE_HEADER];
        let overflow = u32_at(head, 12) as u64;
        let end = id + 1 + overflow;
        if end > self.meta.high_water {
            return Err(Self::corrupt(id, "overflow beyond the high-water mark"));
        }
        for p in id..end {
            if std::mem::replace(&mut self.seen[p as usize], true) {
                return Err(Self::corrupt(p, "page referenced twice"));
            }
        }
        Ok(&self.file[(id * size) as usize..(end * size) as usize])
    }

    /// Appends the leaf elements of the tree at `id`, in order.
    fn walk(&mut self, id: u64, depth: usize, out: &mut Vec<Item<'a>>) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return Err(Self::corrupt(id, "tree deeper than 64 levels"));
        }
        let node = self.page(id)?;
        match u16_at(node, 8) {
            LEAF => leaf_items(node, out).map_err(|what| Self::corrupt(id, what)),
            BRANCH => {
                let count = u16_at(node, 10) as usize;
                if count == 0 {
                    return Err(Self::corrupt(id, "empty branch"));
                }
                for i in 0..count {
                    let (_, _, child) =
                        element(node, i, |e| u64_at(e, 8)).map_err(|w| Self::corrupt(id, w))?;
                    self.walk(child, depth + 1, out)?;
                }
                Ok(())
            }
            flags => Err(Self::corrupt(
                id,
                format!("flags {flags:#x} where a branch or leaf belongs"),
            )),
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

/// The elements of a leaf node (a page, or an inline bucket's bytes).
fn leaf_items<'a>(node: &'a [u8], out: &mut Vec<Item<'a>>) -> Result<(), String> {
    if node.len() < PAGE_HEADER || u16_at(node, 8) != LEAF {
        return Err("not a leaf".to_string());
    }
    for i in 0..u16_at(node, 10) as usize {
        let (key, start, (flags, vsize)) = element(node, i, |e| (u32_at(e, 0), u32_at(e, 12)))?;
        let value = node
            .get(start..start + vsize as usize)
            .ok_or_else(|| format!("value of element {i} beyond the page"))?;
        out.push((key, value, flags));
    }
    Ok(())
}

/// Checks that `items` are in strictly ascending key order.
fn check_order(items: &[Item], page: u64) -> Result<(), BoltError> {
    match items.windows(2).position(|w| w[0].0 >= w[1].0) {
        Some(i) => Err(Reader::corrupt(
            page,
            format!("keys out of order at element {}", i + 1),
        )),
        None => Ok(()),
    }
}

/// Reads a whole bolt file. Nested buckets are refused (etcd has none).
pub fn read(file: &[u8]) -> Result<Buckets, BoltError> {
    let meta = current_meta(file)?;
    let root = meta.root;
    let mut r = Reader {
        file,
        seen: vec![false; meta.high_water as usize],
        meta,
    };
    let mut names = Vec::new();
    r.walk(root, 0, &mut names)?;
    check_order(&names, root)?;
    let mut buckets = Buckets::new();
    for (name, value, flags) in names {
        let bucket = String::from_utf8_lossy(name).into_owned();
        if flags & BUCKET_LEAF == 0 {
            return Err(BoltError::Unsupported {
                bucket,
                what: "a key outside any bucket",
            });
        }
        let header = value.get(..BUCKET_HEADER).ok_or_else(|| {
            Reader::corrupt(
                root,
                format!("bucket {bucket:?}: header of {} bytes", value.len()),
            )
        })?;
        let mut items = Vec::new();
        let id = u64_at(header, 0);
        if id == 0 {
            leaf_items(&value[BUCKET_HEADER..], &mut items).map_err(|what| {
                Reader::corrupt(root, format!("inline bucket {bucket:?}: {what}"))
            })?;
        } else {
            r.walk(id, 0, &mut items)?;
        }
        check_order(&items, id)?;
        let mut kvs = BTreeMap::new();
        for (key, value, flags) in items {
            if flags & BUCKET_LEAF != 0 {
                return Err(BoltError::Unsupported {
                    bucket,
                    what: "nested buckets",
                });
            }
            kvs.insert(key.to_vec(), value.to_vec());
        }
        buckets.insert(name.to_vec(), kvs);
    }
    Ok(buckets)
}

/// Bytes of the pages in use (bbolt's `Tx.Size`), from the current meta page.
pub fn used_bytes(file: &[u8]) -> Result<u64, BoltError> {
    let m = current_meta(file)?;
    Ok(m.high_water * m.page_size as u64)
}
