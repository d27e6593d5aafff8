//! Byte fuzzing of every decoder of outside bytes, on stable Rust (cargo-fuzz needs
//! nightly). Each [`Target`] holds valid encodings as seeds and a function that feeds one
//! input to the decoder and asserts what must hold of any input: no panic, an error or a
//! value, and where it is cheap, that a decoded value encodes and decodes back to itself.
//!
//! The driver has no coverage feedback: it mutates the seeds (bit flips, interesting
//! integers, inserted, deleted, duplicated and spliced ranges, truncation), and targets
//! whose format carries checksums re-seal the mutated bytes so that the decoder behind the
//! checksum is reached. A run is a pure function of the seed: `DETCD_FUZZ_SEED` replays it.
//! `DETCD_FUZZ_SECONDS` is the budget of the whole run, split evenly over the targets
//! (`ci/fuzz SECONDS`); without it each target runs briefly, as part of the tests.
//!
//! An input that panics fails the test and is written to `target/fuzz-crashes/` as text
//! ([`to_text`]); it moves to `src/fuzz/crashes/` as a named test in `regressions.rs`, and
//! the decoder gets fixed.

mod regressions;
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::runtime::{entropy_seed, panic_message, seeded_rng, Clock, Disk, OpenMode, RealDisk};

/// A decoder under test.
pub struct Target {
    pub name: &'static str,
    /// Valid encodings the mutations start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Makes mutated bytes pass the format's checksums, so that what lies behind them is
    /// reached; half of the inputs are sealed, half are fed as they are.
    pub seal: Option<fn(&mut [u8])>,
    /// Feeds one input to the decoder; true if it decoded to a value (rather than an
    /// error). Panics only on a bug.
    pub run: fn(&[u8]) -> bool,
}

/// The budget of one target when `DETCD_FUZZ_SECONDS` is not set: a smoke run in the tests.
const SMOKE: Duration = Duration::from_millis(500);
/// Inputs grow up to this size past the longest seed.
const GROWTH: usize = 64 << 10;

fn budget() -> Duration {
    match std::env::var("DETCD_FUZZ_SECONDS") {
        Ok(s) => {
            let total: f64 = s
                .parse()
                .unwrap_or_else(|_| panic!("DETCD_FUZZ_SECONDS={s:?} is not a number"));
            Duration::from_secs_f64(total / targets::ALL.len() as f64)
        }
        Err(_) => SMOKE,
    }
}

fn seed() -> u64 {
    match std::env::var("DETCD_FUZZ_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("DETCD_FUZZ_SEED={s:?} is not a u64")),
        Err(_) => entropy_seed(),
    }
}

/// Integers at the edges of the ranges decoders check.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    i64::MAX as u64,
    u64::MAX,
];

/// One to eight random mutations of `input`, with `corpus` for splicing; the result is at
/// most `max` bytes.
fn mutate(rng: &mut ChaCha8Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], max: usize) {
    for _ in 0..rng.random_range(1..=8) {
        let len = input.len();
        let at = |rng: &mut ChaCha8Rng| rng.random_range(0..=len);
        match rng.random_range(0..9) {
            0 | 1 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] = rng.random();
            }
            3 if len > 0 => {
                let width = [1, 2, 4, 8][rng.random_range(0..4)];
                let i = rng.random_range(0..len);
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let bytes = match rng.random() {
                    true => v.to_le_bytes(),
                    false => v.to_be_bytes(),
                };
                let end = (i + width).min(len);
                input[i..end].copy_from_slice(&bytes[..end - i]);
            }
            4 => {
                let i = at(rng);
                let mut extra = vec![0; rng.random_range(1..=16)];
                if rng.random() {
                    rng.fill_bytes(&mut extra);
                }
                input.splice(i..i, extra);
            }
            5 if len > 0 => {
                let i = rng.random_range(0..len);
                let end = rng.random_range(i..=len.min(i + 64));
                input.drain(i..end);
            }
            6 if len > 0 => {
                let i = rng.random_range(0..len);
                let end = rng.random_range(i..=len.min(i + 256));
                let copy = input[i..end].to_vec();
                let to = at(rng);
                input.splice(to..to, copy);
            }
            7 => input.truncate(at(rng)),
            _ => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let i = rng.random_range(0..other.len());
                    let end = rng.random_range(i..=other.len());
                    let to = at(rng);
                    let cut = rng.random_range(to..=len);
                    input.splice(to..cut, other[i..end].iter().copied());
                }
            }
        }
    }
    input.truncate(max);
}

/// Runs `input` through `target`: whether it decoded, or the panic's message.
pub fn run_one(target: &Target, input: &[u8]) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|e| panic_message(&*e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Zeros shorter than this stay inside a stretch of [`to_text`].
const ZERO_RUN: usize = 16;

/// `bytes` as text: the length, then every stretch that is not a run of zeros as `offset
/// hex`, one a line, so that a database file of mostly zeros stays small.
pub fn to_text(bytes: &[u8]) -> String {
    let mut out = format!("{}\n", bytes.len());
    let mut at = 0;
    while let Some(start) = bytes[at..].iter().position(|&b| b != 0).map(|i| at + i) {
        let mut end = start;
        while end < bytes.len()
            && bytes[end..(end + ZERO_RUN).min(bytes.len())]
                .iter()
                .any(|&b| b != 0)
        {
            end += 1;
        }
        out.push_str(&format!("{start} {}\n", hex(&bytes[start..end])));
        at = end;
    }
    out
}

/// The bytes [`to_text`] wrote.
pub fn from_text(text: &str) -> Vec<u8> {
    let mut lines = text.lines();
    let len = lines
        .next()
        .and_then(|l| l.parse().ok())
        .expect("a length first");
    let mut bytes = vec![0; len];
    for line in lines {
        let (at, hex) = line.split_once(' ').expect("offset and bytes");
        let at: usize = at.parse().expect("an offset");
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).expect("hex digits");
            bytes[at + i] = u8::from_str_radix(pair, 16).expect("hex digits");
        }
    }
    bytes
}

/// Keeps a panicking input under `target/fuzz-crashes/`; returns the file's path.
fn keep(name: &str, seed: u64, run: u64, input: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    let path = dir.join(format!("{name}-{seed}-{run}.txt"));
    let disk = RealDisk;
    disk.create_dir_all(&dir)
        .expect("create target/fuzz-crashes");
    let file = disk
        .open(&path, OpenMode::Create)
        .expect("create a crash file");
    file.write_at(0, to_text(input).as_bytes())
        .expect("write a crash file");
    path.display().to_string()
}

/// Fuzzes `target` for its share of the budget; fails with the first input that panics.
fn fuzz(name: &str) {
    let target = targets::ALL
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let (seed, budget) = (seed(), budget());
    let mut rng = seeded_rng(seed);
    let corpus = (target.seeds)();
    assert!(!corpus.is_empty(), "{name} has no seeds");
    let max = corpus.iter().map(Vec::len).max().unwrap_or(0) + GROWTH;
    let clock = Clock;
    let deadline = clock.now() + budget;
    let (mut runs, mut decoded) = (0u64, 0u64);
    for (i, input) in corpus.iter().enumerate() {
        if let Err(e) = run_one(target, input) {
            panic!("fuzz {name}: seed input {i} panics ({e})");
        }
    }
    while clock.now() < deadline {
        let mut input = corpus[rng.random_range(0..corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus, max);
        if let Some(seal) = target.seal.filter(|_| rng.random()) {
            seal(&mut input);
        }
        runs += 1;
        match run_one(target, &input) {
            Ok(ok) => decoded += ok as u64,
            Err(e) => panic!(
                "fuzz {name}: input {runs} of seed {seed} panics ({e}); the input is in {}: \
                 move it to src/fuzz/crashes/ as a test in src/fuzz/regressions.rs",
                keep(name, seed, runs, &input)
            ),
        }
    }
    println!(
        "fuzz {name}: {runs} inputs in {:.1} s (seed {seed}), {decoded} decoded, no panic",
        budget.as_secs_f64()
    );
}

/// One test per target, so that each runs (and fails) on its own.
macro_rules! fuzz_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            fuzz(stringify!($name));
        })*

        #[test]
        fn every_target_has_a_test() {
            let mut tested = [$(stringify!($name)),*];
            tested.sort_unstable();
            let mut names: Vec<_> = targets::ALL.iter().map(|t| t.name).collect();
            names.sort_unstable();
            assert_eq!(names, tested);
        }
    };
}

fuzz_tests!(
    wal_records,
    wal_segment,
    snap_file,
    peer_message,
    backend_snapshot,
    backend_file,
    gateway_body,
    http2_headers,
    bolt_file,
    etcd_snapshot,
);

#[test]
fn crash_files_keep_the_bytes() {
    let mut bytes = vec![0u8; 5000];
    bytes[3] = 1;
    bytes[20..40].fill(7);
    bytes[4999] = 9;
    for input in [bytes, Vec::new(), vec![0; 3], vec![1, 0, 2]] {
        assert_eq!(from_text(&to_text(&input)), input);
    }
}
