//! `detcd-sim`: runs scenarios under the simulator and prints one line per run,
//! `seed=N trace=<16 hex digits> verdict=PASS|FAIL`, with the details of a failure below.
//!
//! ```text
//! detcd-sim --scenario scenarios/split-2-2.toml --seed 7
//! detcd-sim --scenario scenarios/split-2-2.toml --seeds 0..100
//! detcd-sim --all [--seeds 0..1000] [--chunk 20] [--stats]
//! ```
//! Without `--seed`/`--seeds`, each scenario runs its pinned seeds. `--all` skips pending
//! scenarios and says so. `--chunk N` runs every scenario over N seeds before the next N,
//! so that a sweep stopped early has covered every scenario alike. `--stats` adds the
//! totals so far after each chunk and each scenario's at the end. Exit status 1 when any
//! run failed, 2 on bad arguments.
//!
//! Each run of a sweep gets its own process: state that outlives a simulation inside the
//! process (madsim's task-ID counter, for one) changes the trace of runs that kill members,
//! and `--seed N` must print what the sweep printed for N.

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::main(std::env::args().skip(1).collect()));
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("detcd-sim: build with RUSTFLAGS='--cfg madsim' (ci/sim does)");
    std::process::exit(2);
}

#[cfg(madsim)]
mod cli {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use detcd_sim::harness::{load, load_dir, run_fresh};
    use detcd_sim::scenario::Scenario;

    /// Marks the line a child process reports its simulated time on.
    const SIMULATED: &str = "child-simulated-ns=";
    /// How a run's failure starts when the checker could not decide its history.
    const UNKNOWN: &str = "linearizability unknown";

    struct Args {
        scenario: Option<PathBuf>,
        all: Option<PathBuf>,
        seeds: Option<std::ops::Range<u64>>,
        /// Seeds per scenario before moving on to the next scenario.
        chunk: Option<u64>,
        stats: bool,
        history: bool,
        /// Run here and report the simulated time: the parent of a sweep asked.
        child: bool,
    }

    const USAGE: &str = "usage: detcd-sim (--scenario FILE | --all [--dir DIR]) \
        [--seed N | --seeds A..B [--chunk N]] [--stats] [--history]";

    fn parse(args: Vec<String>) -> Result<Args, String> {
        let mut a = Args {
            scenario: None,
            all: None,
            seeds: None,
            chunk: None,
            stats: false,
            history: false,
            child: false,
        };
        let mut dir = PathBuf::from("scenarios");
        let mut all = false;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--scenario" => a.scenario = Some(value()?.into()),
                "--all" => all = true,
                "--dir" => dir = value()?.into(),
                "--seed" => {
                    let n: u64 = value()?.parse().map_err(|e| format!("--seed: {e}"))?;
                    a.seeds = Some(n..n + 1);
                }
                "--seeds" => {
                    let v = value()?;
                    let (from, to) = v.split_once("..").ok_or("--seeds takes A..B")?;
                    let from: u64 = from.parse().map_err(|e| format!("--seeds: {e}"))?;
                    let to: u64 = to.parse().map_err(|e| format!("--seeds: {e}"))?;
                    a.seeds = Some(from..to);
                }
                "--chunk" => {
                    let n: u64 = value()?.parse().map_err(|e| format!("--chunk: {e}"))?;
                    a.chunk = Some(n.max(1));
                }
                "--stats" => a.stats = true,
                "--history" => a.history = true,
                "--child" => a.child = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if all {
            a.all = Some(dir);
        }
        if a.scenario.is_some() == a.all.is_some() {
            return Err("give exactly one of --scenario and --all".into());
        }
        if a.chunk.is_some() && a.seeds.is_none() {
            return Err("--chunk needs --seeds".into());
        }
        Ok(a)
    }

    pub fn main(args: Vec<String>) -> i32 {
        let args = match parse(args) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("detcd-sim: {e}\n{USAGE}");
                return 2;
            }
        };
        let scenarios: Vec<(PathBuf, Scenario)> = match (&args.scenario, &args.all) {
            (Some(path), _) => load(path).map(|s| vec![(path.clone(), s)]),
            (_, Some(dir)) => load_dir(dir).map(|all| {
                all.into_iter()
                    .map(|s| (dir.join(format!("{}.toml", s.name)), s))
                    .collect()
            }),
            _ => unreachable!("parse checks"),
        }
        .unwrap_or_else(|e| {
            eprintln!("detcd-sim: {e}");
            std::process::exit(2)
        });
        for (_, s) in &scenarios {
            if s.pending && args.all.is_some() {
                println!("scenario={} skipped: pending", s.name);
            }
        }
        let scenarios: Vec<&(PathBuf, Scenario)> = scenarios
            .iter()
            .filter(|(_, s)| !(s.pending && args.all.is_some()))
            .collect();
        let prefix = |s: &Scenario| match args.all {
            Some(_) => format!("scenario={} ", s.name),
            None => String::new(),
        };
        let wall = Instant::now();
        let mut total = Tally::default();
        let mut each: BTreeMap<&str, Tally> = BTreeMap::new();
        for chunk in chunks(&args) {
            for (path, s) in &scenarios {
                let pinned = s.pinned_seeds();
                // One process per run whenever this process starts more than one.
                let sweep = args.all.is_some()
                    || args
                        .seeds
                        .as_ref()
                        .map_or(pinned.len(), |r| r.clone().count())
                        > 1;
                let seeds = chunk.clone().map_or(pinned, |r| r.collect());
                for seed in seeds {
                    let began = Instant::now();
                    let (passed, unknown, took) = if sweep && !args.child {
                        in_child(path, seed, &args, &prefix(s))
                    } else {
                        here(s, seed, &args, &prefix(s))
                    };
                    let run = Run {
                        passed,
                        unknown,
                        simulated: took,
                        wall: began.elapsed(),
                    };
                    total.add(&run);
                    each.entry(&s.name).or_default().add(&run);
                }
            }
            if let (true, Some(seeds)) = (args.stats && args.chunk.is_some(), &chunk) {
                println!(
                    "chunk={}..{} {}",
                    seeds.start,
                    seeds.end,
                    total.line(wall.elapsed())
                );
            }
        }
        if args.stats {
            if args.all.is_some() {
                for (name, t) in &each {
                    println!("scenario={name} {}", t.line(t.wall));
                }
            }
            println!("{}", total.line(wall.elapsed()));
        }
        i32::from(total.failed > 0)
    }

    /// The seeds of each round over the scenarios: `--seeds` cut into `--chunk`s, the
    /// whole range, or (None) each scenario's pinned seeds.
    fn chunks(args: &Args) -> Vec<Option<std::ops::Range<u64>>> {
        let Some(r) = args.seeds.clone() else {
            return vec![None];
        };
        let size = args.chunk.unwrap_or(r.end.saturating_sub(r.start)).max(1);
        r.clone()
            .step_by(size as usize)
            .map(|from| Some(from..from.saturating_add(size).min(r.end)))
            .collect()
    }

    /// What one run took.
    struct Run {
        passed: bool,
        /// The checker could not decide the history (which fails the run too).
        unknown: bool,
        simulated: Duration,
        wall: Duration,
    }

    /// Runs, failures, simulated and wall time of a set of runs.
    #[derive(Default)]
    struct Tally {
        runs: u64,
        failed: u64,
        unknown: u64,
        simulated: Duration,
        wall: Duration,
    }

    impl Tally {
        fn add(&mut self, run: &Run) {
            self.runs += 1;
            self.failed += u64::from(!run.passed);
            self.unknown += u64::from(run.unknown);
            self.simulated += run.simulated;
            self.wall += run.wall;
        }

        fn line(&self, wall: Duration) -> String {
            let secs = wall.as_secs_f64();
            format!(
                "runs={} failed={} unknown={} simulated={:.1}s wall={secs:.1}s \
                 simulated_per_wall={:.2} seeds_per_minute={:.1}",
                self.runs,
                self.failed,
                self.unknown,
                self.simulated.as_secs_f64(),
                self.simulated.as_secs_f64() / secs,
                self.runs as f64 * 60.0 / secs
            )
        }
    }

    /// Runs `seed` in this process and prints its report; returns whether it passed,
    /// whether the checker answered unknown, and the simulated time.
    fn here(s: &Scenario, seed: u64, args: &Args, prefix: &str) -> (bool, bool, Duration) {
        let o = run_fresh(s, seed);
        let unknown = o.failures.iter().any(|f| f.starts_with(UNKNOWN));
        println!("{prefix}{}", o.line());
        if !o.passed() {
            for f in &o.failures {
                println!("  failure: {f}");
            }
            for l in &o.log {
                println!("  nemesis: {l}");
            }
            println!(
                "  replay: ci/sim --scenario scenarios/{}.toml --seed {seed}",
                s.name
            );
        }
        if args.history {
            for e in &o.history {
                println!("{}", serde_json::to_string(e).expect("events serialize"));
            }
        }
        if args.child {
            println!("{SIMULATED}{}", o.simulated.as_nanos());
        }
        (o.passed(), unknown, o.simulated)
    }

    /// Runs `seed` of the scenario at `path` in a child process, passing its report
    /// through; returns whether it passed and the simulated time.
    fn in_child(
        path: &std::path::Path,
        seed: u64,
        args: &Args,
        prefix: &str,
    ) -> (bool, bool, Duration) {
        let exe = std::env::current_exe().expect("the running binary has a path");
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--scenario")
            .arg(path)
            .arg("--seed")
            .arg(seed.to_string());
        cmd.arg("--child");
        if args.history {
            cmd.arg("--history");
        }
        let out = cmd.output().expect("a child run starts");
        let mut took = Duration::ZERO;
        let mut unknown = false;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            unknown |= line
                .strip_prefix("  failure: ")
                .is_some_and(|f| f.starts_with(UNKNOWN));
            match line.strip_prefix(SIMULATED) {
                Some(ns) => took = Duration::from_nanos(ns.parse().unwrap_or(0)),
                None if line.starts_with("seed=") => println!("{prefix}{line}"),
                None => println!("{line}"),
            }
        }
        (out.status.success(), unknown, took)
    }
}
