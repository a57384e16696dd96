//! What a node pays to find blobs it does not hold, side by side: asked of the node
//! that holds them, of a node whose executor asks its peers through the proxy's fill
//! endpoint, and of a node whose executor has the holder's executor as its shared
//! backing cache (the layout `remesh-proxy up` uses by default).
//!
//! Three nodes, each a proxy in front of its own executor, CAS on tmpfs:
//! - `home` holds every blob (they are uploaded to its executor directly);
//! - `fill` joins `home`; its executor's backing cache is its proxy's fill endpoint
//!   (`backing_read_only`), which asks `home`'s proxy, which asks `home`'s executor;
//! - `shared` is alone; its executor's backing cache is `home`'s executor.
//!
//! FindMissingBlobs of 100 digests (50 held by `home`, 50 by nobody) never makes a
//! blob local, so every call through `fill` or `shared` is a miss asked onwards.
//! ByteStream Read of a fresh 256 MiB blob, written to `home` just before: through
//! `fill` and `shared` the executor first fetches it from `home`, then serves it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::stats::{Series, Table, ratio};
use super::workloads::{FindMissingList, bytestream_read, connect_all, fresh_blob};
use super::{Limits, PROXY_LOG_FILTER, in_memory_dir, rotation};
use crate::ExecutorOptions;
use crate::proxy_process::{ProxyOptions, ProxyProcess};
use crate::reapi_client::Clients;

const DIGESTS: usize = 100;
const CONCURRENCIES: [usize; 2] = [1, 16];
/// Each executor's CAS: room for a few 256 MiB blobs before the oldest is evicted.
const CAS_MAX_BYTES: u64 = 2 << 30;

fn limits(concurrency: usize) -> Limits {
    if concurrency == 1 {
        Limits::new(2_000, 3)
    } else {
        Limits::new(20_000, 4)
    }
}

struct Contender {
    name: &'static str,
    connections: Vec<Clients>,
    /// Per concurrency: calls/s, p50 ms, p99 ms.
    unary: Vec<[Series; 3]>,
    reads: Series,
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub async fn run(runs: usize) -> anyhow::Result<String> {
    let dirs = [in_memory_dir()?, in_memory_dir()?, in_memory_dir()?];
    let executor = |dir: &tempfile::TempDir| {
        ExecutorOptions::new()
            .data_dir(dir.path())
            .arg("--cas-max-bytes")
            .arg(CAS_MAX_BYTES.to_string())
    };
    let proxy = |node_id: &str, executor: &crate::ExecutorProcess, extra_args: Vec<String>| {
        ProxyProcess::spawn(&ProxyOptions {
            extra_args,
            log_filter: Some(PROXY_LOG_FILTER.into()),
            ..ProxyOptions::for_executor(executor, node_id)
        })
    };

    let home_executor = executor(&dirs[0]).spawn()?;
    let home = proxy("home", &home_executor, Vec::new())?;
    let fill_endpoint = free_loopback_port()?;
    let fill_executor = executor(&dirs[1])
        .arg("--backing-cache")
        .arg(format!("grpc://{fill_endpoint}"))
        .arg("--backing-read-only")
        .spawn()?;
    let fill = ProxyProcess::spawn(&ProxyOptions {
        join: Some(home.ready_line().gossip),
        extra_args: vec!["--fill-listen".into(), fill_endpoint.to_string()],
        log_filter: Some(PROXY_LOG_FILTER.into()),
        ..ProxyOptions::for_executor(&fill_executor, "fill")
    })?;
    let shared_executor = executor(&dirs[2])
        .backing_cache(home_executor.grpc_addr(), "main")
        .spawn()?;
    let shared = proxy("shared", &shared_executor, Vec::new())?;
    let fill_check = &fill;
    tokio::task::block_in_place(|| fill_check.wait_for_peers(1, Duration::from_secs(60)))?;
    eprintln!(
        "fill suite: proxies home pid {}, fill pid {}, shared pid {}; executors pid {}, {}, {}",
        home.pid(),
        fill.pid(),
        shared.pid(),
        home_executor.pid(),
        fill_executor.pid(),
        shared_executor.pid()
    );

    let holder = Clients::connect(home_executor.grpc_addr(), "main").await?;
    let list = FindMissingList::prepare(&holder, DIGESTS).await?;
    let mut contenders = Vec::new();
    for (name, proxy) in [
        ("held by the node asked", &home),
        ("fill endpoint (peers asked)", &fill),
        ("shared backing cache", &shared),
    ] {
        contenders.push(Contender {
            name,
            connections: connect_all(proxy.grpc_addr(), "main").await?,
            unary: CONCURRENCIES.iter().map(|_| Default::default()).collect(),
            reads: Series::default(),
        });
    }
    // Warm-up, and a check that every contender answers the same: 50 missing.
    for contender in &contenders {
        list.round(&contender.connections, 16, Limits::new(500, 3))
            .await
            .map_err(|error| error.context(contender.name))?;
    }

    for round in 0..runs {
        for (slot, &concurrency) in CONCURRENCIES.iter().enumerate() {
            for index in rotation(contenders.len(), round) {
                let contender = &mut contenders[index];
                let result = list
                    .round(&contender.connections, concurrency, limits(concurrency))
                    .await
                    .map_err(|error| error.context(contender.name))?;
                let [rate, p50, p99] = &mut contender.unary[slot];
                rate.push(result.rate());
                p50.push(result.percentile_ms(50.0));
                p99.push(result.percentile_ms(99.0));
                eprintln!(
                    "    {} c={concurrency}: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms",
                    contender.name,
                    result.rate(),
                    result.percentile_ms(50.0),
                    result.percentile_ms(99.0)
                );
            }
        }
        for index in rotation(contenders.len(), round) {
            let contender = &mut contenders[index];
            let (data, digest) = fresh_blob(((round * 8 + index) as u64) << 8 | 0xf1);
            holder.upload_as(&digest, data.clone()).await?;
            let read = bytestream_read(&contender.connections[0], &data, &digest)
                .await
                .map_err(|error| error.context(contender.name))?;
            eprintln!("    {}: read {read:.0} MB/s", contender.name);
            contender.reads.push(read);
        }
        eprintln!("  fill round {} of {runs} done", round + 1);
    }
    Ok(render(&contenders, runs))
}

fn render(contenders: &[Contender], runs: usize) -> String {
    let mut header = vec!["100 digests (50 held) / a 256 MiB blob"];
    header.extend(contenders.iter().map(|c| c.name));
    header.extend(["fill ÷ held", "fill ÷ shared"]);
    let mut table = Table::new(&header);
    let ratios = |row: &mut Vec<String>, pick: &dyn Fn(&Contender) -> f64| {
        row.push(ratio(pick(&contenders[1]), pick(&contenders[0])));
        row.push(ratio(pick(&contenders[1]), pick(&contenders[2])));
    };
    for (slot, concurrency) in CONCURRENCIES.iter().enumerate() {
        for (quantity, unit, decimals) in [(0, "calls/s", 0), (1, "p50 ms", 2), (2, "p99 ms", 2)] {
            let mut row = vec![format!(
                "FindMissingBlobs, concurrency {concurrency}: {unit}"
            )];
            row.extend(
                contenders
                    .iter()
                    .map(|c| c.unary[slot][quantity].summary(decimals)),
            );
            ratios(&mut row, &|c: &Contender| c.unary[slot][quantity].median());
            table.row(row);
        }
    }
    let mut row = vec!["ByteStream Read of a blob only `home` held, MB/s".to_owned()];
    row.extend(contenders.iter().map(|c| c.reads.summary(0)));
    ratios(&mut row, &|c: &Contender| c.reads.median());
    table.row(row);
    let mut text = table.render();
    let _ = write!(
        text,
        "\nMedian (min – max) of {runs} interleaved rounds. Every answer is checked: 50 of \
         100 digests missing through each node, and every blob read back whole.\n"
    );
    text
}
