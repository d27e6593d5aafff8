//! The writer against a model (what goes in comes out), and the reader against corrupt
//! bytes (an error or a database, never a panic).

use proptest::prelude::*;

use super::*;

fn buckets() -> impl Strategy<Value = Buckets> {
    let key = prop::collection::vec(any::<u8>(), 1..40);
    // Mostly small values; some larger than a page, for overflow pages.
    let value = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 4000..9000),
    ];
    let bucket = prop::collection::btree_map(key.clone(), value, 0..600);
    prop::collection::btree_map(key, bucket, 0..6)
}

/// A database of several levels, inline and paged buckets, and an overflow value.
fn sample() -> Vec<u8> {
    let mut b = Buckets::new();
    let big: BTreeMap<Vec<u8>, Vec<u8>> = (0u32..3000)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; (i % 50) as usize]))
        .collect();
    b.insert(b"key".to_vec(), big);
    b.insert(
        b"meta".to_vec(),
        BTreeMap::from([(b"a".to_vec(), b"1".to_vec())]),
    );
    b.insert(
        b"large".to_vec(),
        BTreeMap::from([(b"v".to_vec(), vec![7; 10_000])]),
    );
    b.insert(b"empty".to_vec(), BTreeMap::new());
    write(&b).unwrap()
}

#[test]
fn sample_round_trips() {
    let file = sample();
    let b = read(&file).unwrap();
    assert_eq!(b[&b"key"[..]].len(), 3000);
    assert_eq!(b[&b"large"[..]][&b"v"[..]], vec![7; 10_000]);
    assert!(b[&b"empty"[..]].is_empty());
}

#[test]
fn refusals() {
    let file = sample();
    assert!(matches!(
        read(&file[..100]),
        Err(BoltError::Truncated { .. })
    ));
    assert!(matches!(
        read(&file[..file.len() - 1]),
        Err(BoltError::Truncated { .. })
    ));
    assert_eq!(read(&[0u8; 8192]), Err(BoltError::Invalid));
    let mut bad = file.clone();
    bad[PAGE_HEADER + 20] ^= 1; // meta 0's root, checksummed; meta 1 is still good
    assert!(read(&bad).is_ok());
    bad[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    assert_eq!(read(&bad), Err(BoltError::Checksum));
    let mut empty_key = Buckets::new();
    empty_key.insert(b"b".to_vec(), BTreeMap::from([(Vec::new(), Vec::new())]));
    assert_eq!(write(&empty_key), Err(BoltError::KeySize(0)));
}

#[test]
fn writer_refuses_disorder() {
    let mut w = Writer::new(Vec::new());
    w.bucket(b"b").unwrap();
    for i in 0u32..2000 {
        w.put(&i.to_be_bytes(), b"v").unwrap(); // past inline, past one page
    }
    assert!(matches!(
        w.put(&5u32.to_be_bytes(), b"v"),
        Err(BoltError::Order(_))
    ));
    w.bucket(b"a").unwrap();
    assert!(matches!(w.bucket(b"b"), Err(BoltError::Order(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn written_is_read(b in buckets()) {
        let file = write(&b).unwrap();
        prop_assert_eq!(file.len() % PAGE_SIZE, 0);
        prop_assert_eq!(read(&file).unwrap(), b);
    }

    /// Flipped bytes anywhere past the meta pages, and truncation: never a panic.
    #[test]
    fn corrupt_bytes_do_not_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..20),
        cut in any::<prop::sample::Index>(),
        truncate: bool,
    ) {
        let mut file = sample();
        let data = file.len() - 2 * PAGE_SIZE;
        for (at, byte) in flips {
            file[2 * PAGE_SIZE + at.index(data)] = byte;
        }
        if truncate {
            file.truncate(cut.index(file.len()));
        }
        let _ = read(&file);
    }

    /// Random pages behind valid meta pages: the reader must bound everything itself.
    #[test]
    fn random_pages_do_not_panic(pages in prop::collection::vec(any::<u8>(), 0..5 * PAGE_SIZE)) {
        let mut file = sample()[..2 * PAGE_SIZE].to_vec();
        file.extend_from_slice(&pages);
        let _ = read(&file);
    }
}
