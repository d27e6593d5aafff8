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

/// The library's layers, top first: a module may use its own layer and the ones below,
/// never one above (ARCHITECTURE.md). Modules of one rank are siblings. `proto` is the
/// shared vocabulary of every layer.
const LAYERS: &[(&str, u32)] = &[
    ("start", 9),
    ("api", 8),
    ("server", 7),
    ("migrate", 6),
    ("mvcc", 6),
    ("lease", 6),
    ("auth", 6),
    ("backend", 5),
    ("raft", 4),
    ("wal", 3),
    ("snap", 3),
    ("net", 2),
    ("runtime", 1),
    ("proto", 0),
];

fn rank(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Every `crate::<module>` a line names.
fn crate_paths(line: &str) -> impl Iterator<Item = &str> {
    line.match_indices("crate::").filter_map(|(i, _)| {
        let rest = &line[i + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let before = line[..i].chars().next_back();
        // `detcd_crate::` or `$crate::` are not ours.
        (!before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .then_some(&rest[..end])
    })
}

#[test]
fn layers_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(root.join("src")).unwrap();
        let module = match rel.components().next() {
            Some(c) => c
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string(),
            None => continue,
        };
        let Some(own) = rank(&module) else {
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in crate_paths(line) {
                if rank(used).is_some_and(|r| r > own) {
                    violations.push(format!(
                        "src/{}:{}: `{module}` uses `crate::{used}`, a layer above it",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "checked too few files: {checked}");
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

/// The scan itself: a path into a higher layer is found, others are not.
#[test]
fn crate_paths_are_found() {
    let line = "use crate::api::kv; let x = crate::server::Server::new(); $crate::proto::X";
    assert_eq!(crate_paths(line).collect::<Vec<_>>(), ["api", "server"]);
}
