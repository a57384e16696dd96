//! ByteStream Read: a blob streamed from its file in chunks of at most 1 MiB, never
//! whole in memory, from `read_offset` for at most `read_limit` bytes; for
//! `compressed-blobs/zstd/` the file is compressed on the fly and the offset and limit
//! count compressed bytes.

use std::io::{SeekFrom, Write};

use remesh_proto::bytestream::{ReadRequest, ReadResponse};
use tokio::io::AsyncSeekExt;
use tonic::Status;

use crate::resource_name::{Compression, ReadResource};
use crate::storage::{CHUNK_BYTES, Cas};

/// zstd level for on-the-fly compression: fast enough to keep up with a disk.
const ZSTD_LEVEL: i32 = 1;

pub type ReadStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ReadResponse, Status>> + Send>>;

pub async fn read(cas: &Cas, request: ReadRequest) -> Result<ReadStream, Status> {
    let resource = ReadResource::parse(&request.resource_name)?;
    let offset = u64::try_from(request.read_offset).map_err(|_| {
        Status::invalid_argument(format!("read_offset {} is negative", request.read_offset))
    })?;
    // 0 means "no limit".
    let limit = match u64::try_from(request.read_limit) {
        Ok(0) => u64::MAX,
        Ok(limit) => limit,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "read_limit {} is negative",
                request.read_limit
            )));
        }
    };
    let digest = resource.digest.clone();
    if resource.compression == Compression::Identity && offset > digest.size() {
        return Err(Status::out_of_range(format!(
            "read_offset {offset} is past the end of {digest}"
        )));
    }
    let Some(mut file) = cas.open_file(&digest).await? else {
        return Err(Status::not_found(format!("blob {digest} not found")));
    };
    match resource.compression {
        Compression::Identity => {
            file.seek(SeekFrom::Start(offset)).await.map_err(internal)?;
            let length = limit.min(digest.size() - offset);
            Ok(Box::pin(plain(file, length)))
        }
        Compression::Zstd => Ok(Box::pin(compressed(file, offset, limit))),
    }
}

/// `length` bytes from the file's current position.
fn plain(
    mut file: tokio::fs::File,
    length: u64,
) -> impl futures::Stream<Item = Result<ReadResponse, Status>> + Send {
    async_stream::try_stream! {
        let mut remaining = length;
        while remaining > 0 {
            let mut data = vec![0u8; remaining.min(CHUNK_BYTES as u64) as usize];
            let n = read_full(&mut file, &mut data).await?;
            if n < data.len() {
                Err(Status::data_loss("blob file is shorter than its digest"))?;
            }
            remaining -= n as u64;
            yield ReadResponse { data };
        }
    }
}

/// The whole file compressed, skipping `offset` compressed bytes and stopping after
/// `limit`. The zstd encoder's output for one input chunk is about that chunk's size,
/// so memory stays bounded by a few chunks.
fn compressed(
    mut file: tokio::fs::File,
    offset: u64,
    limit: u64,
) -> impl futures::Stream<Item = Result<ReadResponse, Status>> + Send {
    async_stream::try_stream! {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
            .map_err(internal)?;
        let mut position = 0u64; // compressed bytes produced so far
        let mut sent = 0u64;
        let mut input = vec![0u8; CHUNK_BYTES];
        loop {
            let n = read_full(&mut file, &mut input).await?;
            let output = if n == 0 {
                std::mem::replace(&mut encoder, zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(internal)?)
                    .finish()
                    .map_err(internal)?
            } else {
                encoder.write_all(&input[..n]).map_err(internal)?;
                std::mem::take(encoder.get_mut())
            };
            // The part of `output` inside [offset, offset + limit).
            let start = offset.saturating_sub(position).min(output.len() as u64) as usize;
            position += output.len() as u64;
            let wanted = (limit - sent).min((output.len() - start) as u64) as usize;
            for piece in output[start..start + wanted].chunks(CHUNK_BYTES) {
                sent += piece.len() as u64;
                yield ReadResponse { data: piece.to_vec() };
            }
            if n == 0 || sent == limit {
                break;
            }
        }
        if offset > position {
            Err(Status::out_of_range(format!(
                "read_offset {offset} is past the end of the {position} compressed bytes"
            )))?;
        }
    }
}

async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> Result<usize, Status> {
    crate::storage::read_full(file, buffer)
        .await
        .map_err(internal)
}

fn internal(error: std::io::Error) -> Status {
    Status::internal(format!("reading a blob: {error}"))
}
