//! `detcd-sim`: runs scenarios under the simulator and prints one line per run,
//! `seed=N trace=<16 hex digits> verdict=PASS|FAIL`, with the details of a failure below.
//!
//! ```text
//! detcd-sim --scenario scenarios/split-2-2.toml --seed 7
//! detcd-sim --scenario scenarios/split-2-2.toml --seeds 0..100
//! detcd-sim --all [--seeds 0..1000] [--stats]
//! ```
//! Without `--seed`/`--seeds`, each scenario runs its pinned seeds. `--all` skips pending
//! scenarios and says so. Exit status 1 when any run failed, 2 on bad arguments.
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
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use detcd_sim::harness::{load, load_dir, run_fresh};
    use detcd_sim::scenario::Scenario;

    /// Marks the line a child process reports its simulated time on.
    const SIMULATED: &str = "child-simulated-ns=";

    struct Args {
        scenario: Option<PathBuf>,
        all: Option<PathBuf>,
        seeds: Option<std::ops::Range<u64>>,
        stats: bool,
        history: bool,
        /// Run here and report the simulated time: the parent of a sweep asked.
        child: bool,
    }

    const USAGE: &str = "usage: detcd-sim (--scenario FILE | --all [--dir DIR]) \
        [--seed N | --seeds A..B] [--stats] [--history]";

    fn parse(args: Vec<String>) -> Result<Args, String> {
        let mut a = Args {
            scenario: None,
            all: None,
            seeds: None,
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
        let wall = Instant::now();
        let (mut simulated, mut runs, mut failed) = (Duration::ZERO, 0u64, 0u64);
        for (path, s) in &scenarios {
            if s.pending && args.all.is_some() {
                println!("scenario={} skipped: pending", s.name);
                continue;
            }
            let seeds: Vec<u64> = match &args.seeds {
                Some(r) => r.clone().collect(),
                None => s.pinned_seeds(),
            };
            let sweep = args.all.is_some() || seeds.len() > 1;
            for seed in seeds {
                let prefix = if args.all.is_some() {
                    format!("scenario={} ", s.name)
                } else {
                    String::new()
                };
                if sweep && !args.child {
                    let (passed, took) = in_child(path, seed, &args, &prefix);
                    failed += u64::from(!passed);
                    simulated += took;
                    runs += 1;
                    continue;
                }
                let o = run_fresh(s, seed);
                println!("{prefix}{}", o.line());
                if !o.passed() {
                    failed += 1;
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
                simulated += o.simulated;
                runs += 1;
            }
        }
        if args.stats {
            let secs = wall.elapsed().as_secs_f64();
            println!(
                "runs={runs} failed={failed} simulated={:.1}s wall={secs:.1}s \
                 simulated_per_wall={:.2} seeds_per_minute={:.1}",
                simulated.as_secs_f64(),
                simulated.as_secs_f64() / secs,
                runs as f64 * 60.0 / secs
            );
        }
        i32::from(failed > 0)
    }

    /// Runs `seed` of the scenario at `path` in a child process, passing its report
    /// through; returns whether it passed and the simulated time.
    fn in_child(path: &std::path::Path, seed: u64, args: &Args, prefix: &str) -> (bool, Duration) {
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
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match line.strip_prefix(SIMULATED) {
                Some(ns) => took = Duration::from_nanos(ns.parse().unwrap_or(0)),
                None if line.starts_with("seed=") => println!("{prefix}{line}"),
                None => println!("{line}"),
            }
        }
        (out.status.success(), took)
    }
}
