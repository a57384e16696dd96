//! `remesh-executor`: parses flags and config, sets up logging, binds, prints the ready
//! line and calls `run`. SIGTERM or Ctrl-C drains and exits 0.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use remesh_cli::{LogFormat, init_logging, report_fatal};
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report_fatal(cli.log_format, &error);
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
