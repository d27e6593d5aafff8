//! A bulk writer: every tree built bottom-up from sorted input, leaves and branches filled
//! up to a page (a single larger element gets overflow pages), pages laid out in order
//! after the two meta pages and an empty freelist, so every page is reachable.

use super::*;

/// One element of a node: a key and either a leaf value (with its flags) or a child page.
struct Element<'a> {
    key: &'a [u8],
    value: &'a [u8],
    flags: u32,
    child: u64,
}

impl Element<'_> {
    fn size(&self) -> usize {
        ELEMENT + self.key.len() + self.value.len()
    }
}

/// The file as it grows, page after page.
struct Pages(Vec<u8>);

impl Pages {
    fn next_id(&self) -> u64 {
        (self.0.len() / PAGE_SIZE) as u64
    }

    /// Appends a node (header and elements), padded to whole pages; returns its page id.
    fn push(&mut self, mut node: Vec<u8>) -> u64 {
        let id = self.next_id();
        let pages = node.len().div_ceil(PAGE_SIZE).max(1);
        node[0..8].copy_from_slice(&id.to_le_bytes());
        node[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        node.resize(pages * PAGE_SIZE, 0);
        self.0.extend_from_slice(&node);
        id
    }
}

/// Encodes one node: page header (id and overflow left 0), elements, then their data.
fn node(flags: u16, elements: &[Element]) -> Vec<u8> {
    let mut b = Vec::with_capacity(PAGE_HEADER + elements.iter().map(Element::size).sum::<usize>());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    let count = u16::try_from(elements.len()).expect("a node holds at most a page of elements");
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    let mut data = PAGE_HEADER + ELEMENT * elements.len();
    for (i, e) in elements.iter().enumerate() {
        let pos = (data - (PAGE_HEADER + ELEMENT * i)) as u32;
        let ksize = e.key.len() as u32;
        if flags == BRANCH {
            b.extend_from_slice(&pos.to_le_bytes());
            b.extend_from_slice(&ksize.to_le_bytes());
            b.extend_from_slice(&e.child.to_le_bytes());
        } else {
            b.extend_from_slice(&e.flags.to_le_bytes());
            b.extend_from_slice(&pos.to_le_bytes());
            b.extend_from_slice(&ksize.to_le_bytes());
            b.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
        }
        data += e.key.len() + e.value.len();
    }
    for e in elements {
        b.extend_from_slice(e.key);
        b.extend_from_slice(e.value);
    }
    b
}

/// Splits sorted elements into runs that fit a page each (at least one element per run).
fn fill(elements: Vec<Element>) -> Vec<Vec<Element>> {
    let mut runs = vec![Vec::new()];
    let mut size = PAGE_HEADER;
    for e in elements {
        let run = runs.last_mut().expect("never empty");
        if !run.is_empty() && size + e.size() > PAGE_SIZE {
            runs.push(Vec::new());
            size = PAGE_HEADER;
        }
        size += e.size();
        runs.last_mut().expect("never empty").push(e);
    }
    runs
}

/// Writes a tree of sorted leaf elements; returns its root page.
fn tree(pages: &mut Pages, leaves: Vec<Element>) -> u64 {
    let mut level: Vec<(&[u8], u64)> = fill(leaves)
        .into_iter()
        .map(|run| {
            (
                run.first().map_or(&[][..], |e| e.key),
                pages.push(node(LEAF, &run)),
            )
        })
        .collect();
    while level.len() > 1 {
        let children = level.iter().map(|&(key, child)| Element {
            key,
            value: &[],
            flags: 0,
            child,
        });
        level = fill(children.collect())
            .into_iter()
            .map(|run| (run[0].key, pages.push(node(BRANCH, &run))))
            .collect();
    }
    level[0].1
}

fn leaves(bucket: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Element<'_>> {
    bucket
        .iter()
        .map(|(key, value)| Element {
            key,
            value,
            flags: 0,
            child: 0,
        })
        .collect()
}

/// A bucket's value in its parent: inline (bbolt's rule: one leaf, at most a quarter page)
/// or the header of a tree written to `pages`.
fn bucket_value(pages: &mut Pages, bucket: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let elements = leaves(bucket);
    let inline_size = PAGE_HEADER + elements.iter().map(Element::size).sum::<usize>();
    let mut value = Vec::with_capacity(BUCKET_HEADER);
    if inline_size <= PAGE_SIZE / 4 {
        value.extend_from_slice(&[0; BUCKET_HEADER]);
        value.extend_from_slice(&node(LEAF, &elements));
    } else {
        value.extend_from_slice(&tree(pages, elements).to_le_bytes());
        value.extend_from_slice(&0u64.to_le_bytes());
    }
    value
}

fn meta_page(id: u64, root: u64, high_water: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    p[0..8].copy_from_slice(&id.to_le_bytes());
    p[8..10].copy_from_slice(&META.to_le_bytes());
    let mut m = Vec::with_capacity(META_SUMMED + 8);
    m.extend_from_slice(&MAGIC.to_le_bytes());
    m.extend_from_slice(&VERSION.to_le_bytes());
    m.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&root.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&2u64.to_le_bytes()); // the freelist page
    m.extend_from_slice(&high_water.to_le_bytes());
    m.extend_from_slice(&id.to_le_bytes()); // txid: meta page id = txid % 2, as bbolt's init
    m.extend_from_slice(&fnv64a(&m).to_le_bytes());
    p[PAGE_HEADER..PAGE_HEADER + m.len()].copy_from_slice(&m);
    p
}

/// The bolt file holding `buckets`. Refuses keys and values outside bbolt's limits.
pub fn write(buckets: &Buckets) -> Result<Vec<u8>, BoltError> {
    for (name, bucket) in buckets {
        for key in std::iter::once(name).chain(bucket.keys()) {
            if key.is_empty() || key.len() > MAX_KEY_SIZE {
                return Err(BoltError::KeySize(key.len()));
            }
        }
        if let Some(v) = bucket.values().find(|v| v.len() > MAX_VALUE_SIZE) {
            return Err(BoltError::ValueSize(v.len()));
        }
    }
    // Pages 0 and 1 (meta) and 2 (freelist) are filled in last.
    let mut pages = Pages(vec![0; 3 * PAGE_SIZE]);
    let values: Vec<(&[u8], Vec<u8>)> = buckets
        .iter()
        .map(|(name, bucket)| (name.as_slice(), bucket_value(&mut pages, bucket)))
        .collect();
    let root = tree(
        &mut pages,
        values
            .iter()
            .map(|(key, value)| Element {
                key,
                value,
                flags: BUCKET_LEAF,
                child: 0,
            })
            .collect(),
    );
    let high_water = pages.next_id();
    let mut file = pages.0;
    for id in 0..2 {
        let at = id as usize * PAGE_SIZE;
        file[at..at + PAGE_SIZE].copy_from_slice(&meta_page(id, root, high_water));
    }
    let freelist = 2 * PAGE_SIZE;
    file[freelist..freelist + 8].copy_from_slice(&2u64.to_le_bytes());
    file[freelist + 8..freelist + 10].copy_from_slice(&FREELIST.to_le_bytes());
    Ok(file)
}
