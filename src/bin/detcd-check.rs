//! `detcd-check`: checks a client history for linearizability.
//!
//! Exit status: 0 linearizable, 1 not linearizable (or a watch stream broke a guarantee),
//! 2 unreadable input (the message names the line), 3 unknown (the time limit ran out).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use detcd::check::history::{is_jepsen, parse_str};
use detcd::check::{html, linearizable, watch, Budget, Model, Options, Verdict};

#[derive(Parser)]
#[command(
    version,
    about = "Checks a client history (JSON Lines or a Jepsen register log) for linearizability",
    after_help = "Exit status: 0 linearizable, 1 not linearizable (or a watch stream broke a \
                  guarantee), 2 unreadable input, 3 unknown (time limit reached)."
)]
struct Args {
    /// The history file; `-` reads standard input.
    history: PathBuf,
    /// register, kv or etcd; default register for Jepsen logs, kv otherwise.
    #[arg(long)]
    model: Option<Model>,
    /// Seconds to search before answering "unknown".
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
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

fn run(args: &Args) -> Result<ExitCode, String> {
    let text = read(&args.history)?;
    let model = args.model.unwrap_or(if is_jepsen(&text) {
        Model::Register
    } else {
        Model::Kv
    });
    let unreadable = |e: detcd::check::ParseError| format!("{}: {e}", args.history.display());
    let h = parse_str(&text).map_err(unreadable)?;
    let started = Instant::now();
    let limit = Duration::from_secs_f64(args.time_limit.max(0.0));
    let budget = Budget::Deadline(Box::new(move || started.elapsed() >= limit));
    let verdict = linearizable(&h, model, Options { budget }).map_err(unreadable)?;
    let elapsed = started.elapsed();
    match &verdict {
        Verdict::NotLinearizable(report) => print!("{report}"),
        Verdict::Unknown { key, steps } => {
            let key = key
                .as_ref()
                .map_or(String::new(), |k| format!(" in key {k}"));
            println!(
                "time limit of {}s reached after {steps} steps{key}",
                args.time_limit
            );
        }
        Verdict::Linearizable => {}
    }
    println!(
        "{} ({} operations, model {}, {:.3}s)",
        verdict.word(),
        h.ops.len(),
        model.name(),
        elapsed.as_secs_f64()
    );
    if let Some(path) = &args.html {
        let page = html::render(&h, &verdict, &args.history.display().to_string());
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
    match run(&Args::parse()) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("detcd-check: {msg}");
            ExitCode::from(2)
        }
    }
}
