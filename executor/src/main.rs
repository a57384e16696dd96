//! `remesh-executor`: parses flags and config, sets up logging, binds, prints the ready
//! line and calls `run`. SIGTERM or Ctrl-C drains and exits 0.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use remesh_executor::{Args, Executor, Listeners};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "remesh-executor", version, about = "One node's REAPI backend")]
struct Cli {
    #[command(flatten)]
    args: Args,
    /// Log lines on stderr as human-readable text or as one JSON object per line.
    #[arg(long, env = "REMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr (stdout carries the ready line); `RUST_LOG` filters, default info.
/// In JSON each event is one object with its fields and span fields; panics are
/// logged the same way so that stderr stays parseable.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .init();
            std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match cli.log_format {
                LogFormat::Text => eprintln!("Error: {error:?}"),
                LogFormat::Json => tracing::error!(error = format!("{error:#}"), "exiting"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.into_config().context("invalid configuration")?;
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
