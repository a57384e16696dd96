//! `bench`: throughput and latency of release remesh binaries on loopback.
//!
//! ```text
//! cargo run --release -p remesh-tests --bin bench [-- [executor|proxy|all] [--runs N]]
//! ```
//! (`--only unary` or `--only streams` runs one half of the pass-through suite.)
//! - `executor` (the default): one `remesh-executor` on its own.
//! - `proxy`: the same executor direct, through `remesh-proxy` and through nginx
//!   (FindMissingBlobs, ByteStream), then Execute local vs forwarded to a peer.
//! - `passthrough`, `forward`: the two halves of `proxy` on their own.
//! - `fill`: blobs held by another node, found through the fill endpoint or through a
//!   shared backing cache.
//! - `all`: everything, in one session.
//!
//! Prints Markdown tables of medians over `--runs` rounds (default 5). The suites live
//! in `remesh_tests::bench`. SIGINT or SIGTERM to the benchmark alone stops it and
//! every process it started: the running suite is dropped, and with it their handles,
//! which stop them by pid.
#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use remesh_tests::bench::passthrough_suite::{self, Parts};
use remesh_tests::bench::{executor_suite, fill_suite, forward_suite};

#[derive(Clone, Copy, PartialEq)]
enum Suite {
    Executor,
    Proxy,
    /// The two halves of `proxy`, on their own.
    Passthrough,
    Forward,
    /// Finding blobs another node holds.
    Fill,
    All,
}

const USAGE: &str = "usage: bench [executor|proxy|passthrough|forward|fill|all] [--runs N] \
                     [--only unary|streams]";

struct Options {
    suite: Suite,
    runs: usize,
    /// Which halves of the pass-through suite run.
    passthrough: Parts,
}

fn parse() -> anyhow::Result<Options> {
    let mut suite = Suite::Executor;
    let mut runs = 5;
    let mut passthrough = Parts::Both;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "executor" => suite = Suite::Executor,
            "proxy" => suite = Suite::Proxy,
            "passthrough" => suite = Suite::Passthrough,
            "forward" => suite = Suite::Forward,
            "fill" => suite = Suite::Fill,
            "all" => suite = Suite::All,
            "--runs" => {
                let value = args.next().context(USAGE)?;
                runs = value.parse().context("--runs takes a number")?;
                if runs == 0 {
                    bail!("--runs must be at least 1");
                }
            }
            "--only" => {
                passthrough = match args.next().context(USAGE)?.as_str() {
                    "unary" => Parts::Unary,
                    "streams" => Parts::Streams,
                    _ => bail!("--only takes unary or streams"),
                };
            }
            _ => bail!(USAGE),
        }
    }
    Ok(Options {
        suite,
        runs,
        passthrough,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse()?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::select! {
        result = run(options) => result,
        _ = terminate.recv() => bail!("stopped by SIGTERM; every process it started is stopped"),
        _ = interrupt.recv() => bail!("stopped by SIGINT; every process it started is stopped"),
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    let Options {
        suite,
        runs,
        passthrough,
    } = options;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!("{runs} rounds; {cpus} CPUs.\n");
    if matches!(suite, Suite::Executor | Suite::All) {
        println!("### One executor\n\n{}", executor_suite::run(runs).await?);
    }
    if matches!(suite, Suite::Proxy | Suite::Passthrough | Suite::All) {
        println!(
            "### Pass-through: direct, remesh-proxy, nginx\n\n{}",
            passthrough_suite::run(runs, passthrough).await?
        );
    }
    if matches!(suite, Suite::Proxy | Suite::Forward | Suite::All) {
        println!(
            "### Execute: local vs forwarded to a peer\n\n{}",
            forward_suite::run(runs).await?
        );
    }
    if matches!(suite, Suite::Fill | Suite::All) {
        println!(
            "### Blobs another node holds: fill endpoint vs shared backing cache\n\n{}",
            fill_suite::run(runs).await?
        );
    }
    Ok(())
}
