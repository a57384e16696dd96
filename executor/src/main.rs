//! `remesh-executor`: parses flags and config, sets up logging, binds, prints the ready
//! line and calls `run`. SIGTERM or Ctrl-C drains and exits 0.
#![forbid(unsafe_code)]

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use remesh_executor::{Args, Executor, Listeners};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Args::parse()
        .into_config()
        .context("invalid configuration")?;
    let listeners = Listeners::bind(&config)
        .await
        .context("binding listeners")?;
    let ready = serde_json::to_string(&listeners.ready_line()?)?;
    let executor = Executor::open(config)
        .await
        .context("opening the executor")?;

    // The handlers are installed before the ready line goes out: a supervisor may send
    // SIGTERM the moment it reads that line, and an uninstalled handler means death by
    // the signal's default action instead of a drain.
    let shutdown = CancellationToken::new();
    let term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::spawn(signal_shutdown(term, interrupt, shutdown.clone()));
    let server = tokio::spawn(executor.serve(listeners, shutdown));
    // Storage is open and the sockets are bound, so connections queue from here on even
    // if the spawned server has not polled its listener yet.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);
    server
        .await
        .context("server task")?
        .context("executor failed")?;
    Ok(())
}

async fn signal_shutdown(mut term: Signal, mut interrupt: Signal, shutdown: CancellationToken) {
    tokio::select! {
        _ = term.recv() => {},
        _ = interrupt.recv() => {},
    }
    shutdown.cancel();
}
