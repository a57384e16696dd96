//! ByteStream Write: streaming, verified, resumable uploads.
//!
//! Data is hashed and written to a temporary file as it arrives (zstd uploads are
//! decompressed on the fly into bounded buffers, so a compression bomb cannot allocate
//! more than one buffer). `finish_write` commits: the digest is verified and only then
//! does the blob become visible. A stream that ends early parks its upload in
//! `PartialUploads` so the client can resume from QueryWriteStatus's `committed_size`.

use futures::StreamExt;
use remesh_proto::bytestream::{WriteRequest, WriteResponse};
use tonic::Status;

use super::partial_uploads::PartialUploads;
use crate::resource_name::{Compression, WriteResource};
use crate::storage::{Cas, Upload};

/// Decompressed bytes produced per decoder call.
const DECODE_BUFFER_BYTES: usize = 256 << 10;

/// An upload in progress, possibly interrupted and waiting to be resumed.
pub struct InProgress {
    upload: Upload,
    decoder: Option<Box<zstd::stream::raw::Decoder<'static>>>,
    /// Bytes of the wire stream accepted (compressed bytes for zstd uploads): the
    /// `committed_size` a client resumes from.
    received: u64,
    /// Whether the zstd stream ended on a frame boundary (always true for identity).
    frame_complete: bool,
}

impl InProgress {
    pub fn received(&self) -> u64 {
        self.received
    }

    async fn start(cas: &Cas, resource: &WriteResource) -> Result<Self, Status> {
        let decoder = match resource.compression {
            Compression::Identity => None,
            Compression::Zstd => Some(Box::new(
                zstd::stream::raw::Decoder::new()
                    .map_err(|error| Status::internal(format!("zstd decoder: {error}")))?,
            )),
        };
        Ok(Self {
            upload: cas.start_upload(&resource.digest).await?,
            decoder,
            received: 0,
            frame_complete: true,
        })
    }

    /// Accepts one message's data. An error here means the upload is unusable.
    async fn accept(&mut self, data: &[u8]) -> Result<(), Status> {
        let expected = self.upload.expected().size();
        match &mut self.decoder {
            None => {
                if self.upload.written() + data.len() as u64 > expected {
                    return Err(too_much(expected));
                }
                self.upload.write(data).await?;
            }
            Some(decoder) => {
                use zstd::stream::raw::Operation;
                let mut buffer = vec![0u8; DECODE_BUFFER_BYTES];
                let mut consumed = 0;
                loop {
                    let status = decoder
                        .run_on_buffers(&data[consumed..], &mut buffer)
                        .map_err(|error| {
                            Status::invalid_argument(format!("invalid zstd data: {error}"))
                        })?;
                    consumed += status.bytes_read;
                    self.frame_complete = status.remaining == 0;
                    let produced = &buffer[..status.bytes_written];
                    if self.upload.written() + produced.len() as u64 > expected {
                        return Err(too_much(expected));
                    }
                    self.upload.write(produced).await?;
                    // Done when all input is in and the decoder had no more to give.
                    let drained = status.bytes_written < buffer.len();
                    if consumed == data.len() && drained {
                        break;
                    }
                    if status.bytes_read == 0 && status.bytes_written == 0 {
                        break;
                    }
                }
            }
        }
        self.received += data.len() as u64;
        Ok(())
    }

    async fn commit(self) -> Result<(), Status> {
        if !self.frame_complete {
            return Err(Status::invalid_argument(
                "zstd stream ends in the middle of a frame",
            ));
        }
        self.upload.commit().await?;
        Ok(())
    }
}

fn too_much(expected: u64) -> Status {
    Status::invalid_argument(format!(
        "upload is larger than the {expected} bytes its digest names"
    ))
}

/// The response for a blob that is already stored: REAPI asks for the full size, or -1
/// for a compressed upload (whose compressed size the server does not know).
fn already_stored(resource: &WriteResource) -> WriteResponse {
    let committed_size = match resource.compression {
        Compression::Identity => resource.digest.size() as i64,
        Compression::Zstd => -1,
    };
    WriteResponse { committed_size }
}

/// Runs one Write call over `stream` (a `tonic::Streaming` in production).
pub async fn write<S>(
    cas: &Cas,
    partials: &PartialUploads<InProgress>,
    mut stream: S,
) -> Result<WriteResponse, Status>
where
    S: futures::Stream<Item = Result<WriteRequest, Status>> + Unpin,
{
    let Some(mut message) = stream.next().await.transpose()? else {
        return Err(Status::invalid_argument("write stream carried no message"));
    };
    let name = std::mem::take(&mut message.resource_name);
    let resource = WriteResource::parse(&name)?;
    if cas.contains_local(&resource.digest) {
        // Nothing to resume any more.
        drop(partials.take(&name));
        return Ok(already_stored(&resource));
    }
    let offset = message.write_offset;
    let mut progress = match partials.take(&name) {
        Some(parked) if offset >= 0 && offset as u64 == parked.received => parked,
        Some(parked) if offset != 0 => {
            let received = parked.received;
            partials.park(name, parked);
            return Err(Status::invalid_argument(format!(
                "write_offset {offset} does not continue the upload: {received} bytes are committed"
            )));
        }
        None if offset != 0 => {
            return Err(Status::invalid_argument(format!(
                "write_offset {offset} but no upload of this resource is in progress; start at 0"
            )));
        }
        // A fresh upload, or a restart from 0 that drops what was parked.
        _ => InProgress::start(cas, &resource).await?,
    };
    loop {
        if message.write_offset < 0 || message.write_offset as u64 != progress.received {
            let error = Status::invalid_argument(format!(
                "write_offset {} but {} bytes were received",
                message.write_offset, progress.received
            ));
            partials.park(name, progress);
            return Err(error);
        }
        if !message.resource_name.is_empty() && message.resource_name != name {
            partials.park(name, progress);
            return Err(Status::invalid_argument(
                "resource_name changed in the middle of a write",
            ));
        }
        // On a failed accept the upload is dropped: its data cannot be trusted.
        progress.accept(&message.data).await?;
        if message.finish_write {
            let committed_size = progress.received as i64;
            progress.commit().await?;
            return Ok(WriteResponse { committed_size });
        }
        match stream.next().await.transpose() {
            Ok(Some(next)) => message = next,
            Ok(None) => {
                let received = progress.received;
                partials.park(name, progress);
                return Err(Status::invalid_argument(format!(
                    "write stream ended without finish_write after {received} bytes; \
                     resume from there"
                )));
            }
            Err(status) => {
                // The client went away: keep what arrived for its retry.
                partials.park(name, progress);
                return Err(status);
            }
        }
    }
}
