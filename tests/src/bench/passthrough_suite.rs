//! Pass-through calls side by side: the same executor reached directly, through
//! `remesh-proxy serve` (executor mode, one node) and through nginx `grpc_pass`.
//!
//! Unary: FindMissingBlobs of 100 digests (50 stored, 50 absent) at concurrency 1 and
//! 64, calls/s, p50/p99 latency, the CPU time the relay (proxy or nginx, all its
//! processes) spent per call, and what the client and the executor spent per call
//! together: on shared cores the ratio to direct is set by the sum of the three.
//! Streams: ByteStream Write then Read of a fresh 256 MiB blob in 1 MiB messages
//! (tonic's client, 1 MiB frames where the server takes them), then a Write of
//! another in 16 KiB messages, one DATA frame each, as Bazel uploads.
//! Every round visits every contender, in a rotating order.
//!
//! `--only unary` or `--only streams` runs one half. nginx is required: the suite
//! stops when it cannot start.
//!
//! With `REMESH_BENCH_BASELINE_PROXY=<path to another remesh-proxy build>`, that build
//! runs as one more contender in front of the same executor, so a change to the
//! proxy is measured against the code before it in the same run.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::cpu_time;
use super::stats::{Series, Table, ratio};
use super::workloads::{
    FindMissingList, Stalled, bytestream_read, bytestream_write, bytestream_write_bazel_chunks,
    connect_all, fresh_blob,
};
use super::{Limits, PROXY_LOG_FILTER, in_memory_dir, rotation};
use crate::ExecutorOptions;
use crate::nginx::{NginxGrpcProxy, NginxOptions};
use crate::proxy_process::{ProxyOptions, ProxyProcess};
use crate::reapi_client::Clients;

/// Digests in one FindMissingBlobs request: a typical Bazel batch is tens to hundreds.
const DIGESTS: usize = 100;
const CONCURRENCIES: [usize; 2] = [1, 64];

const PROXY: &str = "remesh-proxy";
const BASELINE: &str = "baseline proxy";
const NGINX: &str = "nginx";
/// Names another `remesh-proxy` binary to measure beside this one.
const BASELINE_PROXY_ENV: &str = "REMESH_BENCH_BASELINE_PROXY";

/// Which halves of the suite run: both by default; one alone when a change touches
/// only unary calls or only streams and more rounds of it are worth more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parts {
    Both,
    Unary,
    Streams,
}

impl Parts {
    fn unary(self) -> bool {
        self != Parts::Streams
    }

    fn streams(self) -> bool {
        self != Parts::Unary
    }
}

/// Each unary round: at most this many calls or this long.
fn unary_limits(concurrency: usize) -> Limits {
    if concurrency == 1 {
        Limits::new(3_000, 3)
    } else {
        Limits::new(60_000, 5)
    }
}

struct Contender {
    name: &'static str,
    addr: std::net::SocketAddr,
    connections: Vec<Clients>,
    /// The relay's process (nginx: its master, whose workers are counted with it);
    /// none for direct.
    relay_pid: Option<u32>,
    /// Per concurrency: calls/s, p50 ms, p99 ms, relay CPU µs per call, client and
    /// executor CPU µs per call.
    unary: Vec<[Series; 5]>,
    writes: Series,
    reads: Series,
    /// Relay CPU ms over one ByteStream write, and over one read.
    write_cpu: Series,
    read_cpu: Series,
    /// MB/s and relay CPU ms of one write in Bazel's 16 KiB messages.
    bazel_writes: Series,
    bazel_write_cpu: Series,
    /// ByteStream rounds that did not finish within `TRANSFER_TIMEOUT`.
    stalls: usize,
}

impl Contender {
    async fn new(
        name: &'static str,
        addr: std::net::SocketAddr,
        relay_pid: Option<u32>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            addr,
            connections: connect_all(addr, "main").await?,
            relay_pid,
            unary: CONCURRENCIES.iter().map(|_| Default::default()).collect(),
            writes: Series::default(),
            reads: Series::default(),
            write_cpu: Series::default(),
            read_cpu: Series::default(),
            bazel_writes: Series::default(),
            bazel_write_cpu: Series::default(),
            stalls: 0,
        })
    }
}

pub async fn run(runs: usize, parts: Parts) -> anyhow::Result<String> {
    // Room for a few 256 MiB blobs: older ones are evicted instead of filling memory.
    let cas_dir = in_memory_dir()?;
    let executor = ExecutorOptions::new()
        .data_dir(cas_dir.path())
        .arg("--cas-max-bytes")
        .arg((2u64 << 30).to_string())
        .spawn()?;
    let proxy = ProxyProcess::spawn(&ProxyOptions {
        node_id: "bench".into(),
        backend: executor.grpc_addr(),
        backend_load: executor.ready_line().load,
        join: None,
        extra_args: Vec::new(),
        binary: None,
        log_filter: Some(PROXY_LOG_FILTER.into()),
    })?;
    let baseline = match std::env::var_os(BASELINE_PROXY_ENV) {
        Some(path) => Some(ProxyProcess::spawn(&ProxyOptions {
            node_id: "bench-baseline".into(),
            backend: executor.grpc_addr(),
            backend_load: executor.ready_line().load,
            join: None,
            extra_args: Vec::new(),
            binary: Some(path.into()),
            log_filter: Some(PROXY_LOG_FILTER.into()),
        })?),
        None => None,
    };
    let nginx_options = NginxOptions::new(executor.grpc_addr());
    // The comparison the suite exists for: without nginx it stops rather than print
    // a table a reader could take for the whole one.
    let nginx: NginxGrpcProxy = nginx_options
        .spawn()
        .context("starting nginx for the comparison (Debian: apt-get install nginx)")?;
    eprintln!(
        "pass-through suite: executor pid {} at {}, remesh-proxy pid {} at {}, nginx pid {} at {}",
        executor.pid(),
        executor.grpc_addr(),
        proxy.pid(),
        proxy.grpc_addr(),
        nginx.pid(),
        nginx.addr,
    );

    let mut contenders = vec![
        Contender::new("direct", executor.grpc_addr(), None).await?,
        Contender::new(PROXY, proxy.grpc_addr(), Some(proxy.pid())).await?,
    ];
    if let Some(baseline) = &baseline {
        contenders
            .push(Contender::new(BASELINE, baseline.grpc_addr(), Some(baseline.pid())).await?);
    }
    contenders.push(Contender::new(NGINX, nginx.addr, Some(nginx.pid())).await?);
    let list = FindMissingList::prepare(&contenders[0].connections[0], DIGESTS).await?;
    // Warm-up: connections, flow-control windows, the backend's allocator.
    for contender in &contenders {
        list.round(&contender.connections, 64, Limits::new(3_000, 3))
            .await?;
    }

    for round in (0..runs).filter(|_| parts.unary()) {
        for (slot, &concurrency) in CONCURRENCIES.iter().enumerate() {
            for index in rotation(contenders.len(), round) {
                let contender = &mut contenders[index];
                let round = list.round(
                    &contender.connections,
                    concurrency,
                    unary_limits(concurrency),
                );
                let others_before = client_and_executor_cpu(executor.pid());
                let (result, cpu_ms) = with_cpu(contender.relay_pid, round)
                    .await
                    .map_err(|error| error.context(format!("{} unary", contender.name)))?;
                let others_after = client_and_executor_cpu(executor.pid());
                let [rate, p50, p99, cpu, others] = &mut contender.unary[slot];
                let others_per_call = others_before.zip(others_after).map(|(before, after)| {
                    after.saturating_sub(before).as_secs_f64() * 1e6
                        / result.completed.max(1) as f64
                });
                if let Some(per_call) = others_per_call {
                    others.push(per_call);
                }
                rate.push(result.rate());
                p50.push(result.percentile_ms(50.0));
                p99.push(result.percentile_ms(99.0));
                let per_call = cpu_ms.map(|ms| ms * 1e3 / result.completed.max(1) as f64);
                if let Some(per_call) = per_call {
                    cpu.push(per_call);
                }
                eprintln!(
                    "    {} c={concurrency}: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms{}{}",
                    contender.name,
                    result.rate(),
                    result.percentile_ms(50.0),
                    result.percentile_ms(99.0),
                    per_call.map_or(String::new(), |us| format!(", relay CPU {us:.1} µs/call")),
                    others_per_call.map_or(String::new(), |us| format!(
                        ", client + executor CPU {us:.1} µs/call"
                    )),
                );
            }
        }
        eprintln!("  unary round {} of {runs} done", round + 1);
    }
    for round in (0..runs).filter(|_| parts.streams()) {
        for index in rotation(contenders.len(), round) {
            let contender = &mut contenders[index];
            let seed = ((round * 16 + index) as u64) << 8;
            let (data, digest) = fresh_blob(seed | 0x5a);
            let (bazel_data, bazel_digest) = fresh_blob(seed | 0xba);
            let pid = contender.relay_pid;
            let clients = &contender.connections[0];
            let addr = contender.addr;
            let transfer = async {
                let (write, write_cpu) =
                    with_cpu(pid, bytestream_write(clients, data.clone(), &digest)).await?;
                let (read, read_cpu) =
                    with_cpu(pid, bytestream_read(clients, &data, &digest)).await?;
                drop(data);
                let bazel_write =
                    bytestream_write_bazel_chunks(addr, "main", bazel_data, &bazel_digest);
                let (bazel, bazel_cpu) = with_cpu(pid, bazel_write).await?;
                anyhow::Ok((write, write_cpu, read, read_cpu, bazel, bazel_cpu))
            };
            match transfer.await {
                Ok((write, write_cpu, read, read_cpu, bazel, bazel_cpu)) => {
                    let cpu = |ms: Option<f64>| {
                        ms.map_or(String::new(), |ms| format!(", relay CPU {ms:.0} ms"))
                    };
                    eprintln!(
                        "    {}: write {write:.0} MB/s{}, read {read:.0} MB/s{}, \
                         16 KiB-message write {bazel:.0} MB/s{}",
                        contender.name,
                        cpu(write_cpu),
                        cpu(read_cpu),
                        cpu(bazel_cpu),
                    );
                    contender.bazel_writes.push(bazel);
                    if let Some(ms) = bazel_cpu {
                        contender.bazel_write_cpu.push(ms);
                    }
                    contender.writes.push(write);
                    contender.reads.push(read);
                    if let Some(ms) = write_cpu {
                        contender.write_cpu.push(ms);
                    }
                    if let Some(ms) = read_cpu {
                        contender.read_cpu.push(ms);
                    }
                }
                // A stall is a result, not a reason to lose the others: counted and
                // reported beside the medians of the transfers that finished.
                Err(error) if error.is::<Stalled>() => {
                    eprintln!("    {}: {error}", contender.name);
                    contender.stalls += 1;
                }
                Err(error) => {
                    return Err(error.context(format!("{} ByteStream", contender.name)));
                }
            }
        }
        eprintln!("  ByteStream round {} of {runs} done", round + 1);
    }
    let log = nginx.error_log();
    if !log.trim().is_empty() {
        eprintln!("nginx error log:\n{log}");
    }
    // Dropping the handles stops every process by pid.
    Ok(render(&contenders, runs, parts, &nginx_options))
}

/// CPU time of this process (the benchmark's clients) and of the executor. Not
/// `of_process_tree` for this process: the relays are its children.
fn client_and_executor_cpu(executor_pid: u32) -> Option<std::time::Duration> {
    Some(cpu_time::of_process(std::process::id())? + cpu_time::of_process(executor_pid)?)
}

/// Runs `work` and returns its result with the CPU milliseconds the process tree of
/// `pid` spent meanwhile (none without a pid, or when `/proc` cannot be read).
async fn with_cpu<T>(
    pid: Option<u32>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Option<f64>)> {
    let before = pid.and_then(cpu_time::of_process_tree);
    let value = work.await?;
    let after = pid.and_then(cpu_time::of_process_tree);
    let ms = before
        .zip(after)
        .map(|(before, after)| after.saturating_sub(before).as_secs_f64() * 1e3);
    Ok((value, ms))
}

fn render(contenders: &[Contender], runs: usize, parts: Parts, nginx: &NginxOptions) -> String {
    // Ratio columns: every contender against direct (always first), then the proxy
    // against the baseline build (when it ran) and against nginx.
    let index_of = |name: &str| contenders.iter().position(|c| c.name == name);
    let mut pairs: Vec<(String, usize, usize)> = (1..contenders.len())
        .map(|i| (format!("{} ÷ direct", contenders[i].name), i, 0))
        .collect();
    if let Some(proxy) = index_of(PROXY) {
        for other in [BASELINE, NGINX] {
            if let Some(i) = index_of(other) {
                pairs.push((format!("proxy ÷ {other}"), proxy, i));
            }
        }
    }
    let mut header: Vec<&str> = vec!["benchmark"];
    header.extend(contenders.iter().map(|c| c.name));
    header.extend(pairs.iter().map(|(name, _, _)| name.as_str()));
    let mut table = Table::new(&header);
    let mut add = |name: String, pick: &dyn Fn(&Contender) -> &Series, decimals: usize| {
        let mut cells = vec![name];
        cells.extend(contenders.iter().map(|c| pick(c).summary(decimals)));
        cells.extend(pairs.iter().map(|&(_, over, under)| {
            ratio(
                pick(&contenders[over]).median(),
                pick(&contenders[under]).median(),
            )
        }));
        table.row(cells);
    };
    for (slot, concurrency) in CONCURRENCIES.iter().enumerate().filter(|_| parts.unary()) {
        let what = format!("FindMissingBlobs ({DIGESTS} digests), concurrency {concurrency}");
        add(format!("{what}: calls/s"), &|c| &c.unary[slot][0], 0);
        add(format!("{what}: p50 ms"), &|c| &c.unary[slot][1], 2);
        add(format!("{what}: p99 ms"), &|c| &c.unary[slot][2], 2);
        add(
            format!("{what}: relay CPU µs per call"),
            &|c| &c.unary[slot][3],
            1,
        );
        add(
            format!("{what}: client + executor CPU µs per call"),
            &|c| &c.unary[slot][4],
            1,
        );
    }
    if parts.streams() {
        add("ByteStream Write 256 MiB: MB/s".into(), &|c| &c.writes, 0);
        add("ByteStream Read 256 MiB: MB/s".into(), &|c| &c.reads, 0);
        add(
            "ByteStream Write 256 MiB in 16 KiB messages (Bazel's): MB/s".into(),
            &|c| &c.bazel_writes,
            0,
        );
        add(
            "ByteStream Write 256 MiB: relay CPU ms".into(),
            &|c| &c.write_cpu,
            0,
        );
        add(
            "ByteStream Read 256 MiB: relay CPU ms".into(),
            &|c| &c.read_cpu,
            0,
        );
        add(
            "ByteStream Write 256 MiB in 16 KiB messages: relay CPU ms".into(),
            &|c| &c.bazel_write_cpu,
            0,
        );
    }
    let mut text = table.render();
    for contender in contenders.iter().filter(|c| c.stalls > 0) {
        let _ = writeln!(
            text,
            "\n{}: {} of {runs} ByteStream rounds stalled (no progress for {:?}); the \
             medians above are of the rounds that finished.",
            contender.name,
            contender.stalls,
            super::workloads::TRANSFER_TIMEOUT
        );
    }
    let _ = write!(
        text,
        "\nMedian (min – max) of {runs} interleaved rounds; ratios are of medians. One \
         release `remesh-executor` behind every contender; {} client HTTP/2 connections; \
         nginx: {} worker processes, upstream keepalive {}.\n",
        super::CONNECTIONS,
        nginx.workers,
        nginx.upstream_keepalive
    );
    text
}
