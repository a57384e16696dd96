//! `bench`: throughput of one freshly spawned release `remesh-executor` on loopback.
//!
//! Run with `cargo run --release -p remesh-tests --bin bench [-- --runs N]`. Measures
//! Execute round trips of a no-op action (`/bin/true`, `skip_cache_lookup`) at
//! concurrency 1 and 64, FindMissingBlobs calls of 1,000 digests, and ByteStream write
//! and read of a 256 MiB blob; prints a Markdown table of medians over the runs. Every
//! loop is bounded both in count and in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use prost::Message;
use remesh_proto::reapi::{Action, Command, Digest, Directory};
use remesh_tests::reapi_client::Clients;
use remesh_tests::{ExecutorOptions, blob_digest};

/// Parallel HTTP/2 connections the concurrent phases spread their streams over, as a
/// client with several channels (Bazel opens many) would.
const CONNECTIONS: usize = 4;

struct Limits {
    count: usize,
    time: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = parse_runs()?;
    let executor = ExecutorOptions::new().spawn()?;
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(executor.clients("main").await?);
    }
    let runners = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "executor pid {} at {}, {runs} runs",
        executor.pid(),
        executor.grpc_addr()
    );

    let mut rows = Vec::new();
    for (concurrency, limits) in [
        (
            1,
            Limits {
                count: 2_000,
                time: Duration::from_secs(15),
            },
        ),
        (
            64,
            Limits {
                count: 20_000,
                time: Duration::from_secs(20),
            },
        ),
    ] {
        let mut rates = Vec::new();
        for run in 0..runs {
            let salt = format!("c{concurrency}-r{run}");
            let actions = upload_noop_actions(&connections[0], &salt, limits.count).await?;
            rates.push(execute_rate(&connections, actions, concurrency, limits.time).await?);
        }
        rows.push(row(
            &format!("Execute `/bin/true`, skip_cache_lookup, concurrency {concurrency}"),
            "actions/s",
            rates,
        ));
    }

    let digests = find_missing_digests(&connections[0]).await?;
    for concurrency in [1, 16] {
        let limits = Limits {
            count: 5_000,
            time: Duration::from_secs(10),
        };
        let mut rates = Vec::new();
        for _ in 0..runs {
            rates.push(find_missing_rate(&connections, &digests, concurrency, &limits).await?);
        }
        rows.push(row(
            &format!("FindMissingBlobs, 1,000 digests a call, concurrency {concurrency}"),
            "calls/s",
            rates,
        ));
    }

    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (write, read) = bytestream_rates(&connections[0], run as u64).await?;
        writes.push(write);
        reads.push(read);
    }
    rows.push(row("ByteStream Write, one 256 MiB blob", "MB/s", writes));
    rows.push(row("ByteStream Read, one 256 MiB blob", "MB/s", reads));

    println!("| benchmark | median | min – max | unit |");
    println!("|---|---:|---:|---|");
    for line in rows {
        println!("{line}");
    }
    println!();
    println!(
        "{runs} runs each; one release `remesh-executor` on loopback, {runners} CPUs, \
         default runners (one per CPU)."
    );
    executor.terminate(Duration::from_secs(30))?;
    Ok(())
}

fn parse_runs() -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(5),
        [flag, value] if flag == "--runs" => {
            let runs: usize = value.parse().context("--runs takes a number")?;
            if runs == 0 {
                bail!("--runs must be at least 1");
            }
            Ok(runs)
        }
        _ => bail!("usage: bench [--runs N]"),
    }
}

/// One table row: the median and the spread of `values`.
fn row(name: &str, unit: &str, mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let (min, max) = (values[0], values[values.len() - 1]);
    format!("| {name} | {median:.0} | {min:.0} – {max:.0} | {unit} |")
}

/// Uploads `count` distinct no-op actions: the salt makes every action digest unique,
/// so the executor cannot merge concurrent ones into a single run.
async fn upload_noop_actions(
    clients: &Clients,
    salt: &str,
    count: usize,
) -> anyhow::Result<Vec<Digest>> {
    let command = Bytes::from(
        Command {
            arguments: vec!["/bin/true".into()],
            ..Command::default()
        }
        .encode_to_vec(),
    );
    let input_root = Bytes::from(Directory::default().encode_to_vec());
    let template = Action {
        command_digest: Some(blob_digest(&command)),
        input_root_digest: Some(blob_digest(&input_root)),
        ..Action::default()
    };
    clients.upload_messages(vec![command, input_root]).await?;
    let mut digests = Vec::with_capacity(count);
    let indices: Vec<usize> = (0..count).collect();
    for batch in indices.chunks(1_000) {
        let actions = batch
            .iter()
            .map(|index| {
                let action = Action {
                    salt: format!("{salt}-{index}").into_bytes(),
                    ..template.clone()
                };
                Bytes::from(action.encode_to_vec())
            })
            .collect();
        digests.extend(clients.upload_messages(actions).await?);
    }
    Ok(digests)
}

/// Executes the actions (their number bounds the count) with `concurrency` streams in
/// flight until all are done or the time limit passes; returns completed actions per second.
async fn execute_rate(
    connections: &[Clients],
    actions: Vec<Digest>,
    concurrency: usize,
    time_limit: Duration,
) -> anyhow::Result<f64> {
    let actions = Arc::new(actions);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + time_limit;
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let clients = connections[worker % connections.len()].clone();
        let (actions, next) = (actions.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= actions.len() || Instant::now() >= deadline {
                    return anyhow::Ok(done);
                }
                let response = clients.execute(&actions[index], true).await?;
                let code = response.status.as_ref().map_or(0, |status| status.code);
                let exit = response.result.as_ref().map(|result| result.exit_code);
                if code != 0 || exit != Some(0) {
                    bail!(
                        "no-op action failed: status {:?}, exit {exit:?}",
                        response.status
                    );
                }
                done += 1;
            }
        }));
    }
    let mut completed = 0;
    for worker in workers {
        completed += worker.await??;
    }
    Ok(completed as f64 / start.elapsed().as_secs_f64())
}

/// 1,000 digests, half of them stored (small blobs) and half absent.
async fn find_missing_digests(clients: &Clients) -> anyhow::Result<Vec<Digest>> {
    let present: Vec<Bytes> = (0..500)
        .map(|i| Bytes::from(format!("bench blob {i}")))
        .collect();
    let mut digests = clients.upload_messages(present).await?;
    digests.extend((0..500).map(|i| blob_digest(format!("absent blob {i}").as_bytes())));
    let missing = clients.find_missing(&digests).await?;
    if missing.len() != 500 {
        bail!(
            "expected 500 of 1,000 digests missing, got {}",
            missing.len()
        );
    }
    Ok(digests)
}

async fn find_missing_rate(
    connections: &[Clients],
    digests: &[Digest],
    concurrency: usize,
    limits: &Limits,
) -> anyhow::Result<f64> {
    let digests = Arc::new(digests.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limits.time;
    let count = limits.count;
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let clients = connections[worker % connections.len()].clone();
        let (digests, next) = (digests.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < count && Instant::now() < deadline {
                let missing = clients.find_missing(&digests).await?;
                if missing.len() != 500 {
                    bail!(
                        "FindMissingBlobs answered {} missing, not 500",
                        missing.len()
                    );
                }
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut completed = 0;
    for worker in workers {
        completed += worker.await??;
    }
    Ok(completed as f64 / start.elapsed().as_secs_f64())
}

/// Writes then reads one fresh 256 MiB blob; returns (write, read) in MB/s (10^6 bytes).
async fn bytestream_rates(clients: &Clients, seed: u64) -> anyhow::Result<(f64, f64)> {
    const SIZE: usize = 256 << 20;
    // A different blob every run, so that no run is answered by "already stored".
    let mut data = vec![0u8; SIZE];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let data = Bytes::from(data);
    let expected = blob_digest(&data);

    // Hashing is the client's cost, not the server's: done before the clock starts.
    let start = Instant::now();
    clients.upload_as(&expected, data).await?;
    let write = SIZE as f64 / 1e6 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let read_back = clients.download(&expected).await?;
    let read = SIZE as f64 / 1e6 / start.elapsed().as_secs_f64();
    if blob_digest(&read_back) != expected {
        bail!("the 256 MiB blob read back differs from the one written");
    }
    Ok((write, read))
}
