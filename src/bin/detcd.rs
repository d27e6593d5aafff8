//! detcd: one member of an etcd-compatible cluster. Flags and ETCD_* variables as etcd's.

use std::process::ExitCode;
use std::sync::Arc;

use detcd::runtime::{self, RealDisk};
use detcd::server::config::{Flags, ServerConfig};
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut flags = match Flags::parse_from(std::env::args_os()) {
        Ok(flags) => flags,
        Err(e) => e.exit(),
    };
    if let Some(path) = flags.config_file.clone() {
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|yaml| Flags::from_config_file(&yaml));
        flags = match loaded {
            Ok(flags) => flags,
            Err(message) => {
                eprintln!("detcd: config file {}: {message}", path.display());
                return ExitCode::FAILURE;
            }
        };
    }
    let cfg = match ServerConfig::from_flags(&flags) {
        Ok(cfg) => cfg,
        Err(message) => {
            eprintln!("detcd: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = runtime::threaded_runtime().expect("tokio runtime");
    match runtime.block_on(start::run(cfg, Arc::new(RealDisk), shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
