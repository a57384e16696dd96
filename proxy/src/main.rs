//! `remesh-proxy`: `serve` runs one proxy; `up` runs a whole loopback cluster;
//! `keygen` prints a fresh gossip keyring; `status` prints a running node's view of
//! the cluster.
//! Parses flags and config, sets up logging, binds, prints the ready line, calls `run`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remesh_cli::{LogFormat, init_logging, report_fatal};
use remesh_proxy::{Config, Listeners, ServeArgs};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The proxy allocates and frees small buffers and futures on every call; glibc's
/// allocator spent about 7% of its CPU time on that (`perf`), mimalloc less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod status_cli;
mod up;
mod up_children;
mod up_pki;

#[derive(Parser)]
#[command(name = "remesh-proxy", version, about = "The remesh cluster proxy")]
struct Cli {
    /// Log lines on stderr as human-readable text or as one JSON object per line.
    /// `up` passes the environment variable, not the flag, on to its nodes.
    #[arg(
        long,
        global = true,
        env = "REMESH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
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
    /// Print the members of the cluster as a running node's admin port reports them.
    Status(status_cli::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Up(args) => runtime(0).and_then(|runtime| runtime.block_on(up::up(args))),
        Command::Keygen => keygen(),
        Command::Status(args) => {
            return match runtime(1) {
                Ok(runtime) => runtime.block_on(status_cli::run(args)),
                Err(error) => {
                    report_fatal(cli.log_format, &error);
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report_fatal(cli.log_format, &error);
            ExitCode::FAILURE
        }
    }
}

/// A runtime with `threads` workers: 1 is a single-threaded runtime (every task on
/// the calling thread), 0 one worker per CPU.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            builder.worker_threads(threads);
        }
        builder
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Reads the configuration first: it says how many threads the runtime gets.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config().context("invalid configuration")?;
    runtime(config.worker_threads)?.block_on(serve_config(config))
}

async fn serve_config(config: Config) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config)
        .await
        .context("binding listeners")?;
    let ready = serde_json::to_string(&listeners.ready_line(&config)?)?;
    // Before the ready line: a node that would gossip unsealed by accident must
    // not look started.
    config
        .check_security_at_start()
        .context("insecure configuration")?;
    // Certificates, keys, CAs and the keyring are read here, before the ready line:
    // a node with a bad file must not look started.
    let shutdown = CancellationToken::new();
    let prepared = remesh_proxy::prepare(config, listeners, shutdown.clone())
        .context("loading certificates and keys")?;
    // Handlers first, ready line after: a supervisor may send SIGTERM as soon as it has
    // read the line, and an uninstalled handler would kill the proxy without a leave.
    let term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::spawn(signal_shutdown(term, interrupt, shutdown.clone()));
    let server = tokio::spawn(prepared.serve());
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

async fn signal_shutdown(mut term: Signal, mut interrupt: Signal, shutdown: CancellationToken) {
    tokio::select! {
        _ = term.recv() => {},
        _ = interrupt.recv() => {},
    }
    shutdown.cancel();
}

/// Prints a fresh keyring: one random key, in the file format.
fn keygen() -> anyhow::Result<()> {
    let keyring = remesh_proxy::gossip_seal::Keyring::generate();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(keyring.export_secret_text().as_bytes())?;
    stdout.flush()?;
    Ok(())
}
