//! detcd: one member of an etcd-compatible cluster. Flags and ETCD_* variables as etcd's.

use std::process::ExitCode;
use std::sync::Arc;

use detcd::runtime::{self, RealDisk};
use detcd::server::config::{Flags, ServerConfig};
use detcd::server::log;
use detcd::start;

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    // madsim's tokio has no Unix signals; the binary never runs simulated anyway.
    #[cfg(all(unix, not(madsim)))]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(all(unix, not(madsim))))]
    let _ = interrupt.await;
    tracing::info!("received a shutdown signal");
}

fn main() -> ExitCode {
    // Until the flags say otherwise, etcd's JSON lines at info.
    let early = subscriber(tracing_subscriber::EnvFilter::new("info"));
    let (flags, cfg) = match tracing::subscriber::with_default(early, load) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let filter = match &flags.log_level {
        Some(level) => {
            let level = log::level(level).expect("checked with the flags");
            tracing_subscriber::EnvFilter::default().add_directive(level.into())
        }
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing::subscriber::set_global_default(subscriber(filter)).expect("the only logger");
    let runtime = runtime::threaded_runtime().expect("tokio runtime");
    match runtime.block_on(start::run(cfg, Arc::new(RealDisk), shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// etcd's JSON log lines on stderr, filtered by `filter`.
fn subscriber(filter: tracing_subscriber::EnvFilter) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(log::EtcdJson)
        .finish()
}

/// The flags, from the command line or the configuration file it names, and the checked
/// configuration; a failure is reported on stderr and ends the process with its code.
fn load() -> Result<(Flags, ServerConfig), ExitCode> {
    let mut flags = match Flags::parse_from(std::env::args_os()) {
        Ok(flags) => flags,
        // --help and --version print and end with 0; a refused flag ends with 1, as the
        // issue asks of every startup error (etcd 3.5's flag parser would say 2).
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::FAILURE);
        }
    };
    if let Some(path) = flags.config_file.clone() {
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|yaml| Flags::from_config_file(&yaml));
        flags = match loaded {
            Ok(flags) => flags,
            Err(message) => {
                eprintln!("detcd: config file {}: {message}", path.display());
                return Err(ExitCode::FAILURE);
            }
        };
    }
    match ServerConfig::from_flags(&flags) {
        Ok(cfg) => Ok((flags, cfg)),
        Err(message) => {
            eprintln!("detcd: {message}");
            Err(ExitCode::FAILURE)
        }
    }
}
