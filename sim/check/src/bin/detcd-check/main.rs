//! `detcd-check`: checks a client history for linearizability; `detcd-check jepsen` makes
//! one by running a cluster of real detcd processes under faults, then checks it.
//!
//! Exit status: 0 linearizable, 1 not linearizable (or a watch stream broke a guarantee),
//! 2 unreadable input (the message names the line) or a runner error, 3 unknown (the time
//! limit ran out).

#[cfg(not(madsim))]
mod cluster;
#[cfg(not(madsim))]
mod jepsen;
#[cfg(not(madsim))]
mod nemesis;
#[cfg(not(madsim))]
mod proxy;
#[cfg(not(madsim))]
mod workload;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use detcd_check::budget::DEFAULT_MEMORY_BYTES;
use detcd_check::history::{is_jepsen, parse_str};
use detcd_check::{
    html, linearizable, watch, Budget, History, Model, Options, ParseError, Verdict,
};

#[derive(Parser)]
#[command(
    version,
    about = "Checks a client history (JSON Lines or a Jepsen register log) for linearizability",
    after_help = "Exit status: 0 linearizable, 1 not linearizable (or a watch stream broke a \
                  guarantee), 2 unreadable input or a runner error, 3 unknown (time limit \
                  reached).",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    check: Args,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a cluster of real detcd processes under faults and checks the history.
    Jepsen(Box<JepsenArgs>),
}

#[cfg(not(madsim))]
use jepsen::JepsenArgs;

/// The simulation build has no real processes to run.
#[cfg(madsim)]
#[derive(clap::Args)]
struct JepsenArgs;

#[derive(clap::Args)]
struct Args {
    /// The history file; `-` reads standard input.
    #[arg(required = true)]
    history: Option<PathBuf>,
    /// register, kv or etcd; default register for Jepsen logs, kv otherwise.
    #[arg(long)]
    model: Option<Model>,
    /// Seconds from start (reading and parsing included) before answering "unknown".
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Megabytes the search's memo and open choices may hold before answering "unknown".
    #[arg(long, default_value_t = DEFAULT_MEMORY_BYTES >> 20)]
    memory_limit: usize,
    /// Write a page drawing the operations and the failing window here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Watch stream files (JSON Lines) to check against the history.
    #[arg(long)]
    watch: Vec<PathBuf>,
}

fn read(path: &PathBuf) -> Result<String, String> {
    let mut text = String::new();
    let res = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map(|_| ())
    };
    res.map(|()| text)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// When a check must end and what its memo may hold.
#[derive(Clone, Copy, Debug)]
struct Limits {
    until: Instant,
    memory_bytes: usize,
}

impl Limits {
    /// `seconds` from `start` and `megabytes` (a negative time limit is none at all).
    fn new(start: Instant, seconds: f64, megabytes: usize) -> Limits {
        Limits {
            until: start + Duration::from_secs_f64(seconds.max(0.0)),
            memory_bytes: megabytes.saturating_mul(1 << 20),
        }
    }
}

/// Checks `h` within `limits` and prints the verdict, after the failing window or why the
/// answer is unknown; returns it with the time the search took.
fn check(h: &History, model: Model, limits: Limits) -> Result<(Verdict, Duration), ParseError> {
    let started = Instant::now();
    let until = limits.until;
    let options = Options {
        budget: Budget::Deadline(Box::new(move || Instant::now() >= until)),
        memory: limits.memory_bytes,
    };
    let verdict = linearizable(h, model, options)?;
    let elapsed = started.elapsed();
    if let Verdict::NotLinearizable(report) = &verdict {
        print!("{report}");
    }
    if let Some(why) = verdict.why_unknown(h) {
        println!("{why}");
    }
    println!(
        "{} ({} operations, model {}, {:.3}s)",
        verdict.word(),
        h.ops.len(),
        model.name(),
        elapsed.as_secs_f64()
    );
    Ok((verdict, elapsed))
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let limits = Limits::new(Instant::now(), args.time_limit, args.memory_limit);
    let history = args.history.as_ref().expect("clap requires a history file");
    let text = read(history)?;
    let model = args.model.unwrap_or(if is_jepsen(&text) {
        Model::Register
    } else {
        Model::Kv
    });
    let unreadable = |e: detcd_check::ParseError| format!("{}: {e}", history.display());
    let h = parse_str(&text).map_err(unreadable)?;
    let (verdict, _) = check(&h, model, limits).map_err(unreadable)?;
    if let Some(path) = &args.html {
        let page = html::render(&h, &verdict, &history.display().to_string());
        std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut broken = false;
    for path in &args.watch {
        let stream = watch::parse(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        for v in watch::check(&h, &stream) {
            broken = true;
            println!("{}: {v}", path.display());
        }
    }
    Ok(ExitCode::from(match verdict {
        Verdict::Linearizable if !broken => 0,
        Verdict::Unknown { .. } if !broken => 3,
        _ => 1,
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(not(madsim))]
        Some(Command::Jepsen(args)) => jepsen::main(&args),
        #[cfg(madsim)]
        Some(Command::Jepsen(_)) => Err("the simulation build runs no real processes".into()),
        None => run(&cli.check),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("detcd-check: {msg}");
            ExitCode::from(2)
        }
    }
}
