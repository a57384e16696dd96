//! `remesh-proxy`: `serve` runs one proxy; `up` runs a whole loopback cluster;
//! `keygen` prints a fresh gossip keyring.
//! Parses flags and config, sets up logging, binds, prints the ready line, calls `run`.
#![forbid(unsafe_code)]

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remesh_proxy::{Listeners, ServeArgs};
use tokio_util::sync::CancellationToken;

mod up;
mod up_pki;

#[derive(Parser)]
#[command(name = "remesh-proxy", version, about = "The remesh cluster proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one proxy in front of one backend.
    Serve(Box<ServeArgs>),
    /// Run a whole cluster on loopback: an executor and a proxy per node.
    Up(up::UpArgs),
    /// Print a fresh gossip keyring (one random key, hex) for `gossip_keyring`:
    /// `remesh-proxy keygen > keyring && chmod 600 keyring`. To rotate, add its
    /// key line second in every node's file, then first, then drop the old line.
    Keygen,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Up(args) => up::up(args).await,
        Command::Keygen => {
            let keyring = remesh_proxy::gossip_seal::Keyring::generate();
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(keyring.export_secret_text().as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config().context("invalid configuration")?;
    let listeners = Listeners::bind(&config)
        .await
        .context("binding listeners")?;
    let ready = serde_json::to_string(&listeners.ready_line(&config)?)?;
    // Before the ready line: a node that would gossip unsealed by accident must
    // not look started.
    config
        .check_security_at_start()
        .context("insecure configuration")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    let server = tokio::spawn(remesh_proxy::run(config, listeners, shutdown));
    // The sockets are bound, so connections queue from here on.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);
    server
        .await
        .context("proxy task")?
        .context("proxy failed")?;
    Ok(())
}

async fn signal_shutdown(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    shutdown.cancel();
}
