//! The runtime seam holds only if nothing else reaches the OS directly: code above
//! `src/runtime/` that touched std::fs, the wall clock, threads or OS randomness would run
//! unsimulated under madsim and break determinism. This test scans the source tree.

use std::path::{Path, PathBuf};

/// Patterns forbidden outside `src/runtime/`, each with the reason.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs", "disk access goes through runtime::Disk"),
    ("tokio::fs", "disk access goes through runtime::Disk"),
    ("File::open", "disk access goes through runtime::Disk"),
    ("Instant::now", "time comes from runtime::Clock"),
    ("SystemTime::now", "time comes from runtime::Clock"),
    ("std::thread", "work runs on tasks; madsim forbids threads"),
    (
        "thread_rng",
        "randomness comes from a seed (runtime::seeded_rng)",
    ),
    (
        "rand::rng(",
        "randomness comes from a seed (runtime::seeded_rng)",
    ),
    (
        "rand::random",
        "randomness comes from a seed (runtime::seeded_rng)",
    ),
    (
        "OsRng",
        "randomness comes from a seed (runtime::seeded_rng)",
    ),
    (
        "getrandom",
        "randomness comes from a seed (runtime::seeded_rng)",
    ),
];

/// Binaries, and the simulator's harness, are the process boundary: they read files named
/// on the command line, time themselves, give each simulation a fresh thread, and never
/// run inside the simulator.
const BOUNDARY: &[&str] = &["src/bin", "sim/src/bin", "sim/src/harness.rs"];
const BIN_ALLOWED: &[&str] = &[
    "std::fs",
    "File::open",
    "Instant::now",
    "SystemTime::now",
    "std::thread",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_above_the_runtime_touches_the_os() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "sim/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut violations = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(root).unwrap();
        if rel.starts_with("src/runtime") {
            continue;
        }
        let in_bin = BOUNDARY.iter().any(|b| rel.starts_with(b));
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (pattern, why) in FORBIDDEN {
                if line.contains(pattern) && !(in_bin && BIN_ALLOWED.contains(pattern)) {
                    violations.push(format!("{}:{}: `{pattern}`: {why}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(files.len() > 3, "scanned too few files: {files:?}");
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}
