//! What runs outside any simulation, at the process boundary (the binary and the test
//! suite call it): reading scenario files, and giving each run a fresh thread.

use std::path::Path;

use crate::run::{run, Outcome};
use crate::scenario::Scenario;

/// Runs `scenario` with `seed` on a fresh thread: thread-local state a simulation leaves
/// behind (std's per-thread hash keys, say) would otherwise change what the next one does.
pub fn run_fresh(scenario: &Scenario, seed: u64) -> Outcome {
    let s = scenario.clone();
    std::thread::spawn(move || run(&s, seed))
        .join()
        .expect("the run catches its own panics")
}

/// Reads and checks one scenario file; its name is the file stem.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Scenario::parse(&name, &text)
}

/// Every scenario file under `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // wal_crash.toml pins seeds of the WAL sweep, not a cluster scenario.
        .filter(|p| p.file_stem().is_some_and(|s| s != "wal_crash"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}
