//! A streaming bulk writer: buckets and their keys arrive in order, each tree is built
//! bottom-up as they come (leaves and branches filled up to a page; a single larger
//! element gets overflow pages), and pages go to the sink one by one after the two meta
//! pages and an empty freelist, which are written last. Memory holds one page per tree
//! level and the bucket names, whatever the size of the database.

use super::*;

/// Where the file goes: bytes at an offset (pages are written in order, then pages 0-2).
pub trait Sink {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
}

impl Sink for Vec<u8> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let end = offset as usize + bytes.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[offset as usize..end].copy_from_slice(bytes);
        Ok(())
    }
}

/// One element of a node: a key and either a leaf value (with its flags) or a child page.
struct Element {
    key: Vec<u8>,
    value: Vec<u8>,
    flags: u32,
    child: u64,
}

impl Element {
    fn size(&self) -> usize {
        ELEMENT + self.key.len() + self.value.len()
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
        b.extend_from_slice(&e.key);
        b.extend_from_slice(&e.value);
    }
    b
}

/// The file's pages past the first three, appended in order.
struct Pages<S> {
    sink: S,
    next: u64,
}

impl<S: Sink> Pages<S> {
    /// Writes a node (flags and elements), padded to whole pages; returns its page id.
    fn push(&mut self, flags: u16, elements: &[Element]) -> Result<u64, BoltError> {
        let mut bytes = node(flags, elements);
        let id = self.next;
        let pages = bytes.len().div_ceil(PAGE_SIZE).max(1);
        bytes[0..8].copy_from_slice(&id.to_le_bytes());
        bytes[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        bytes.resize(pages * PAGE_SIZE, 0);
        self.sink
            .write_at(id * PAGE_SIZE as u64, &bytes)
            .map_err(|e| BoltError::Io(e.to_string()))?;
        self.next += pages as u64;
        Ok(id)
    }
}

/// A tree being built: per level, the node being filled (level 0: leaves).
#[derive(Default)]
struct Tree {
    levels: Vec<(Vec<Element>, usize)>,
}

impl Tree {
    fn push<S: Sink>(
        &mut self,
        pages: &mut Pages<S>,
        level: usize,
        e: Element,
    ) -> Result<(), BoltError> {
        if self.levels.len() == level {
            self.levels.push((Vec::new(), PAGE_HEADER));
        }
        let (run, size) = &self.levels[level];
        if !run.is_empty() && size + e.size() > PAGE_SIZE {
            self.flush(pages, level)?;
        }
        let (run, size) = &mut self.levels[level];
        *size += e.size();
        run.push(e);
        Ok(())
    }

    /// Writes the node of `level` and hands it to the level above.
    fn flush<S: Sink>(&mut self, pages: &mut Pages<S>, level: usize) -> Result<(), BoltError> {
        let run = std::mem::take(&mut self.levels[level].0);
        self.levels[level].1 = PAGE_HEADER;
        if run.is_empty() {
            return Ok(());
        }
        let id = pages.push(if level == 0 { LEAF } else { BRANCH }, &run)?;
        let key = run.into_iter().next().expect("non-empty").key;
        let child = Element {
            key,
            value: Vec::new(),
            flags: 0,
            child: id,
        };
        self.push(pages, level + 1, child)
    }

    /// Writes what is left, level by level; returns the root page.
    fn finish<S: Sink>(mut self, pages: &mut Pages<S>) -> Result<u64, BoltError> {
        let mut level = 0;
        loop {
            if self.levels.len() <= level + 1 {
                let run = self.levels.pop().map(|(run, _)| run).unwrap_or_default();
                return pages.push(if level == 0 { LEAF } else { BRANCH }, &run);
            }
            self.flush(pages, level)?;
            level += 1;
        }
    }
}

/// A bucket being written: its elements held back while they could still be inlined
/// (bbolt's rule: one leaf of at most a quarter page), a tree once they cannot.
enum Bucket {
    Inline(Vec<Element>, usize),
    Paged(Tree),
}

/// Writes a bolt file to a sink: [`Writer::bucket`], then its keys in ascending order with
/// [`Writer::put`], bucket after bucket (in any order of names), then [`Writer::finish`].
pub struct Writer<S> {
    pages: Pages<S>,
    /// Bucket names and their values in the root bucket, finished buckets only.
    done: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The bucket being written: its name, its last key, its elements.
    current: Option<(Vec<u8>, Vec<u8>, Bucket)>,
}

impl<S: Sink> Writer<S> {
    pub fn new(sink: S) -> Self {
        Writer {
            pages: Pages { sink, next: 3 },
            done: BTreeMap::new(),
            current: None,
        }
    }

    /// Starts bucket `name` (ending the one before).
    pub fn bucket(&mut self, name: &[u8]) -> Result<(), BoltError> {
        self.end_bucket()?;
        if name.is_empty() || name.len() > MAX_KEY_SIZE {
            return Err(BoltError::KeySize(name.len()));
        }
        if self.done.contains_key(name) {
            return Err(BoltError::Order(String::from_utf8_lossy(name).into_owned()));
        }
        self.current = Some((
            name.to_vec(),
            Vec::new(),
            Bucket::Inline(Vec::new(), PAGE_HEADER),
        ));
        Ok(())
    }

    /// Adds a key to the current bucket; keys must come in strictly ascending order.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        let Some((name, last, bucket)) = self.current.as_mut() else {
            return Err(BoltError::Order("a key before any bucket".to_string()));
        };
        if key.is_empty() || key.len() > MAX_KEY_SIZE {
            return Err(BoltError::KeySize(key.len()));
        }
        if value.len() > MAX_VALUE_SIZE {
            return Err(BoltError::ValueSize(value.len()));
        }
        if !last.is_empty() && last.as_slice() >= key {
            return Err(BoltError::Order(String::from_utf8_lossy(name).into_owned()));
        }
        *last = key.to_vec();
        let e = Element {
            key: key.to_vec(),
            value: value.to_vec(),
            flags: 0,
            child: 0,
        };
        match bucket {
            Bucket::Inline(elements, size) => {
                *size += e.size();
                elements.push(e);
                if *size > PAGE_SIZE / 4 {
                    let mut tree = Tree::default();
                    for e in std::mem::take(elements) {
                        tree.push(&mut self.pages, 0, e)?;
                    }
                    *bucket = Bucket::Paged(tree);
                }
                Ok(())
            }
            Bucket::Paged(tree) => tree.push(&mut self.pages, 0, e),
        }
    }

    fn end_bucket(&mut self) -> Result<(), BoltError> {
        let Some((name, _, bucket)) = self.current.take() else {
            return Ok(());
        };
        let mut value = Vec::with_capacity(BUCKET_HEADER);
        match bucket {
            Bucket::Inline(elements, _) => {
                value.extend_from_slice(&[0; BUCKET_HEADER]);
                value.extend_from_slice(&node(LEAF, &elements));
            }
            Bucket::Paged(tree) => {
                value.extend_from_slice(&tree.finish(&mut self.pages)?.to_le_bytes());
                value.extend_from_slice(&0u64.to_le_bytes());
            }
        }
        self.done.insert(name, value);
        Ok(())
    }

    /// Writes the root bucket, the freelist and the meta pages; returns the sink.
    pub fn finish(mut self) -> Result<S, BoltError> {
        self.end_bucket()?;
        let mut root = Tree::default();
        for (key, value) in std::mem::take(&mut self.done) {
            let e = Element {
                key,
                value,
                flags: BUCKET_LEAF,
                child: 0,
            };
            root.push(&mut self.pages, 0, e)?;
        }
        let root = root.finish(&mut self.pages)?;
        let high_water = self.pages.next;
        let mut head = vec![0u8; 3 * PAGE_SIZE];
        for id in 0..2u64 {
            let at = id as usize * PAGE_SIZE;
            head[at..at + PAGE_SIZE].copy_from_slice(&meta_page(id, root, high_water));
        }
        let freelist = 2 * PAGE_SIZE;
        head[freelist..freelist + 8].copy_from_slice(&2u64.to_le_bytes());
        head[freelist + 8..freelist + 10].copy_from_slice(&FREELIST.to_le_bytes());
        let mut sink = self.pages.sink;
        sink.write_at(0, &head)
            .map_err(|e| BoltError::Io(e.to_string()))?;
        Ok(sink)
    }
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

/// The bolt file holding `buckets`, in memory. Refuses keys and values outside bbolt's
/// limits.
pub fn write(buckets: &Buckets) -> Result<Vec<u8>, BoltError> {
    let mut w = Writer::new(Vec::new());
    for (name, bucket) in buckets {
        w.bucket(name)?;
        for (k, v) in bucket {
            w.put(k, v)?;
        }
    }
    w.finish()
}
