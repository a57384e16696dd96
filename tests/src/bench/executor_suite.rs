//! One freshly spawned release `remesh-executor` on its own, measured with real gRPC
//! clients: Execute of a no-op action at concurrency 1 and 64, FindMissingBlobs of
//! 1,000 digests at concurrency 1 and 16, ByteStream write and read of 256 MiB.

use super::Limits;
use super::stats::{Series, Table};
use super::workloads::{
    FindMissingList, bytestream_round, connect_all, execute_round, fresh_blob, upload_noop_actions,
};
use crate::ExecutorOptions;

pub async fn run(runs: usize) -> anyhow::Result<String> {
    let executor = ExecutorOptions::new().spawn()?;
    let connections = connect_all(executor.grpc_addr(), "main").await?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "executor suite: executor pid {} at {}, {runs} runs",
        executor.pid(),
        executor.grpc_addr()
    );
    let mut table = Table::new(&["benchmark", "median (min – max)", "unit"]);

    for (concurrency, limits) in [(1, Limits::new(2_000, 15)), (64, Limits::new(20_000, 20))] {
        let mut rates = Series::default();
        for run in 0..runs {
            let salt = format!("executor-c{concurrency}-r{run}");
            let actions = upload_noop_actions(&connections[0], &salt, limits.count).await?;
            rates.push(
                execute_round(&connections, actions, concurrency, limits)
                    .await?
                    .rate(),
            );
        }
        table.row(vec![
            format!("Execute `/bin/true`, skip_cache_lookup, concurrency {concurrency}"),
            rates.summary(0),
            "actions/s".into(),
        ]);
    }

    let list = FindMissingList::prepare(&connections[0], 1_000).await?;
    for concurrency in [1, 16] {
        let mut rates = Series::default();
        for _ in 0..runs {
            let round = list
                .round(&connections, concurrency, Limits::new(5_000, 10))
                .await?;
            rates.push(round.rate());
        }
        table.row(vec![
            format!("FindMissingBlobs, 1,000 digests a call, concurrency {concurrency}"),
            rates.summary(0),
            "calls/s".into(),
        ]);
    }

    let (mut writes, mut reads) = (Series::default(), Series::default());
    for run in 0..runs {
        let (data, digest) = fresh_blob(run as u64);
        let (write, read) = bytestream_round(&connections[0], data, &digest).await?;
        writes.push(write);
        reads.push(read);
    }
    table.row(vec![
        "ByteStream Write, one 256 MiB blob".into(),
        writes.summary(0),
        "MB/s".into(),
    ]);
    table.row(vec![
        "ByteStream Read, one 256 MiB blob".into(),
        reads.summary(0),
        "MB/s".into(),
    ]);

    // Dropping the handle stops the executor by pid.
    drop(executor);
    Ok(format!(
        "{}\n{runs} runs each; one release `remesh-executor` on loopback, {cpus} CPUs, \
         default runners (one per CPU).\n",
        table.render()
    ))
}
