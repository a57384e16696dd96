//! The REAPI round trips the benchmarks measure, each checked for a correct answer so
//! that a fast failure is never counted as throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use prost::Message;
use remesh_proto::reapi::{Action, Command, Digest, Directory};

use super::load::drive;
use super::stats::Round;
use super::{CONNECTIONS, Limits};
use crate::reapi_client::{Clients, blob_digest};

/// A FindMissingBlobs request body: `count` digests, half of them stored (small
/// blobs) and half absent, as in a build that has some of its inputs cached.
#[derive(Clone)]
pub struct FindMissingList {
    pub digests: Arc<Vec<Digest>>,
    pub missing: usize,
}

impl FindMissingList {
    /// Stores the present half through `clients` and checks the server agrees.
    pub async fn prepare(clients: &Clients, count: usize) -> anyhow::Result<Self> {
        let present: Vec<Bytes> = (0..count / 2)
            .map(|i| Bytes::from(format!("bench blob {count} {i}")))
            .collect();
        let mut digests = clients.upload_messages(present).await?;
        let missing = count - digests.len();
        digests.extend((0..missing).map(|i| blob_digest(format!("absent blob {i}").as_bytes())));
        let list = Self {
            digests: Arc::new(digests),
            missing,
        };
        list.call(clients).await?;
        Ok(list)
    }

    /// One call, checked.
    pub async fn call(&self, clients: &Clients) -> anyhow::Result<()> {
        let answer = clients.find_missing(&self.digests).await?;
        if answer.len() != self.missing {
            bail!(
                "FindMissingBlobs answered {} missing of {}, not {}",
                answer.len(),
                self.digests.len(),
                self.missing
            );
        }
        Ok(())
    }

    /// A bounded round at `concurrency`.
    pub async fn round(
        &self,
        connections: &[Clients],
        concurrency: usize,
        limits: Limits,
    ) -> anyhow::Result<Round> {
        let list = self.clone();
        drive(connections, concurrency, limits, move |clients, _| {
            let list = list.clone();
            async move { list.call(&clients).await }
        })
        .await
    }
}

/// The ByteStream blob size: large enough that per-call costs vanish and only the
/// data path is measured.
pub const BLOB_BYTES: usize = 256 << 20;

/// A fresh pseudo-random 256 MiB blob and its digest. A different `seed` for every
/// write, so that no write is answered by "already stored". Hashing is the client's
/// cost, not the server's: it is done here, before any clock starts.
pub fn fresh_blob(seed: u64) -> (Bytes, Digest) {
    let mut data = vec![0u8; BLOB_BYTES];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let data = Bytes::from(data);
    let digest = blob_digest(&data);
    (data, digest)
}

/// How long one 256 MiB transfer may take before it counts as stalled: far beyond
/// any healthy transfer on loopback, even on a busy machine.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes `data` under `digest` then reads it back; returns (write, read) in MB/s
/// (10^6 bytes a second). Each transfer is bounded by `TRANSFER_TIMEOUT`.
pub async fn bytestream_round(
    clients: &Clients,
    data: Bytes,
    digest: &Digest,
) -> anyhow::Result<(f64, f64)> {
    let write = bytestream_write(clients, data.clone(), digest).await?;
    let read = bytestream_read(clients, &data, digest).await?;
    Ok((write, read))
}

/// Writes `data` under `digest` with ByteStream Write; returns MB/s.
pub async fn bytestream_write(
    clients: &Clients,
    data: Bytes,
    digest: &Digest,
) -> anyhow::Result<f64> {
    let size = data.len();
    timed_write("ByteStream Write", size, clients.upload_as(digest, data)).await
}

/// Writes `data` under `digest` to `addr` the way Bazel does (16 KiB messages, one
/// DATA frame each); returns MB/s.
pub async fn bytestream_write_bazel_chunks(
    addr: std::net::SocketAddr,
    instance: &str,
    data: Bytes,
    digest: &Digest,
) -> anyhow::Result<f64> {
    use super::bazel_upload::{BAZEL_CHUNK_BYTES, upload};
    let size = data.len();
    let write = upload(addr, instance, digest, data, BAZEL_CHUNK_BYTES);
    timed_write("ByteStream Write in 16 KiB chunks", size, write).await
}

/// Runs `write` of `size` bytes within `TRANSFER_TIMEOUT`; returns MB/s.
async fn timed_write(
    what: &'static str,
    size: usize,
    write: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    tokio::time::timeout(TRANSFER_TIMEOUT, write)
        .await
        .map_err(|_| Stalled(what))??;
    Ok(size as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// Reads the blob `digest` back with ByteStream Read and checks it is `data`;
/// returns MB/s.
pub async fn bytestream_read(
    clients: &Clients,
    data: &[u8],
    digest: &Digest,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let read_back = tokio::time::timeout(TRANSFER_TIMEOUT, clients.download(digest))
        .await
        .map_err(|_| Stalled("ByteStream Read"))??;
    let rate = data.len() as f64 / 1e6 / start.elapsed().as_secs_f64();
    // Compared by length and digest after the clock stopped.
    if read_back.len() != data.len() || blob_digest(&read_back) != *digest {
        bail!("the blob read back differs from the one written");
    }
    Ok(rate)
}

/// A transfer that made no progress within `TRANSFER_TIMEOUT`.
#[derive(Debug)]
pub struct Stalled(pub &'static str);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stalled: not finished after {TRANSFER_TIMEOUT:?}",
            self.0
        )
    }
}

impl std::error::Error for Stalled {}

/// Uploads `count` distinct no-op actions (`/bin/true`): the salt makes every action
/// digest unique, so the executor cannot merge concurrent ones into a single run.
pub async fn upload_noop_actions(
    clients: &Clients,
    salt: &str,
    count: usize,
) -> anyhow::Result<Arc<Vec<Digest>>> {
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
    Ok(Arc::new(digests))
}

/// Executes `actions` (their number bounds the count) with `concurrency` streams in
/// flight, `skip_cache_lookup` set, each checked to have run and exited 0.
pub async fn execute_round(
    connections: &[Clients],
    actions: Arc<Vec<Digest>>,
    concurrency: usize,
    limits: Limits,
) -> anyhow::Result<Round> {
    let limits = Limits {
        count: limits.count.min(actions.len()),
        ..limits
    };
    drive(connections, concurrency, limits, move |clients, index| {
        let actions = actions.clone();
        async move {
            let response = clients.execute(&actions[index], true).await?;
            let code = response.status.as_ref().map_or(0, |status| status.code);
            let exit = response.result.as_ref().map(|result| result.exit_code);
            if code != 0 || exit != Some(0) {
                bail!(
                    "no-op action failed: status {:?}, exit {exit:?}",
                    response.status
                );
            }
            Ok(())
        }
    })
    .await
}

/// `CONNECTIONS` independent HTTP/2 connections to `addr`.
pub async fn connect_all(
    addr: std::net::SocketAddr,
    instance_name: &str,
) -> anyhow::Result<Vec<Clients>> {
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        connections.push(Clients::connect(addr, instance_name).await?);
    }
    Ok(connections)
}
