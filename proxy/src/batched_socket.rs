//! A TCP socket under HTTP/2 that makes fewer, larger system calls.
//!
//! h2 writes and flushes one frame at a time, so each small message of a unary call
//! (headers, data, trailers, in both directions) costs its own `writev`; and it reads
//! into what is left of its buffer, often a few KiB. On loopback and in-cluster links
//! those system calls, not the bytes, are most of what a relay pays per call.
//!
//! `BatchedSocket` answers h2's small reads from a read-ahead buffer filled by one read
//! of whatever the kernel holds, and takes its small writes into a buffer that a
//! writer task of its own sends. On the proxy's single-threaded runtime that task
//! runs after the connection task has finished its turn, and lets the tasks queued
//! behind it run once more, so everything the connection produced meanwhile (frames
//! of many streams, a request's HEADERS and the DATA written a task later) leaves in
//! one `write`.
//!
//! Batching costs a copy in user space, which pays for itself on small frames only.
//! Large reads (h2 reading the rest of a full DATA frame) go straight into h2's
//! buffer, and a large write made while nothing is queued goes straight to the
//! kernel, so a ByteStream's 16 KiB frames are not copied.
//!
//! Writes are bounded: past `WRITE_BUFFER_LIMIT` unsent bytes, writes wait for the
//! writer, so a slow reader pushes back as it does on a plain socket. Bytes written
//! before the socket is dropped (a GOAWAY, say) are still sent, for at most `LINGER`.
//!
//! Memory: a busy connection holds up to 64 KiB of read-ahead and 256 KiB of unsent
//! bytes (plus the batch being sent); an idle one gives the read-ahead back and keeps
//! write buffers of at most 16 KiB, so thousands of idle client connections cost
//! little.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::io::poll_read_buf;

/// Bytes one read may take from the kernel: several 16 KiB frames at once.
const READ_AHEAD: usize = 64 * 1024;

/// A caller with room for this much reads from the kernel straight into its own
/// buffer: h2 asks for that much when it reads the rest of a full DATA frame.
const DIRECT_READ_MIN: usize = 16 * 1024;

/// A write at least this large, made while nothing else waits to be sent, goes to
/// the kernel at once (a ByteStream's 16 KiB DATA frames with their headers).
const DIRECT_WRITE_MIN: usize = 8 * 1024;

/// Unsent bytes past which writes wait for the writer task.
const WRITE_BUFFER_LIMIT: usize = 256 * 1024;

/// Capacity a write buffer keeps between bursts.
const SPARE_WRITE_BUFFER: usize = 16 * 1024;

/// How long bytes written before the socket was dropped (a GOAWAY, say) may take to
/// leave before the writer task gives up on a peer that stopped reading.
const LINGER: Duration = Duration::from_secs(10);

/// A connected TCP socket whose reads and writes are batched; see the module docs.
pub struct BatchedSocket {
    reader: OwnedReadHalf,
    /// Read but not yet handed to the caller. Allocated when a read needs it and
    /// released whenever the kernel has nothing more, so an idle connection holds
    /// no read-ahead memory.
    read_ahead: BytesMut,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<WriteState>,
    /// Signalled when the socket is dropped: from then on a send may take `LINGER`.
    dropped: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        // A panic while holding the lock leaves plain bytes and flags behind, nothing
        // half-updated that a later user could trip over.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct WriteState {
    /// Written by the connection, not yet taken by the writer task.
    pending: Vec<u8>,
    /// The writer task is sending a batch: nothing else may write to the socket.
    in_flight: bool,
    /// The connection asked for a shutdown of the sending side.
    shutdown_requested: bool,
    /// The socket is gone from the connection's side (dropped).
    dropped: bool,
    /// The writer task sent everything and shut the sending side down.
    shutdown_done: bool,
    /// Why the writer task stopped, if it failed: every later write reports it.
    failed: Option<(io::ErrorKind, String)>,
    /// The writer task, parked until there is something to send.
    writer: Option<Waker>,
    /// The connection, parked until the buffer has room or the shutdown is done.
    connection: Option<Waker>,
    /// Batches taken by the writer task so far: one `write` each, unless the kernel
    /// takes a batch in parts.
    batches: u64,
}

impl WriteState {
    fn error(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, text)| io::Error::new(*kind, text.clone()))
    }

    /// Whether the writer task has something to do.
    fn has_work(&self) -> bool {
        !self.pending.is_empty() || self.shutdown_requested || self.dropped
    }

    /// The writer task's next step, if any. A batch is swapped out, not copied: the
    /// connection writes into `spare` while it is sent.
    fn take_next(&mut self, spare: &mut Vec<u8>) -> Option<Next> {
        if !self.pending.is_empty() {
            let batch = std::mem::replace(&mut self.pending, std::mem::take(spare));
            self.in_flight = true;
            self.batches += 1;
            self.wake_connection();
            return Some(Next::Send(batch));
        }
        if self.shutdown_requested {
            return Some(Next::Shutdown);
        }
        self.dropped.then_some(Next::Stop)
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    fn wake_connection(&mut self) {
        if let Some(waker) = self.connection.take() {
            waker.wake();
        }
    }
}

impl BatchedSocket {
    /// Wraps a connected socket and spawns its writer task on the current runtime.
    pub fn new(socket: TcpStream) -> Self {
        let (reader, writer) = socket.into_split();
        let shared = Arc::new(Shared::default());
        tokio::spawn(write_loop(shared.clone(), writer));
        Self {
            reader,
            read_ahead: BytesMut::new(),
            shared,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.shared.lock()
    }

    /// Appends what the connection wrote, or parks it while the buffer is full.
    fn buffer<'a>(
        &self,
        cx: &mut Context<'_>,
        chunks: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        if let Some(error) = state.error() {
            return Poll::Ready(Err(error));
        }
        if state.pending.len() >= WRITE_BUFFER_LIMIT {
            state.connection = Some(cx.waker().clone());
            state.wake_writer();
            return Poll::Pending;
        }
        if state.pending.is_empty()
            && !state.in_flight
            && !state.shutdown_requested
            && chunks.clone().map(<[u8]>::len).sum::<usize>() >= DIRECT_WRITE_MIN
        {
            // The lock is held and nothing is queued or in flight, so the writer task
            // cannot write between these bytes and the ones before them.
            let slices: Vec<io::IoSlice<'_>> = chunks.clone().map(io::IoSlice::new).collect();
            match self.reader.as_ref().try_write_vectored(&slices) {
                Ok(written) => return Poll::Ready(Ok(written)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        let mut written = 0;
        for chunk in chunks {
            state.pending.extend_from_slice(chunk);
            written += chunk.len();
        }
        state.wake_writer();
        Poll::Ready(Ok(written))
    }
}

impl AsyncRead for BatchedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_ahead.is_empty() {
            if buf.remaining() >= DIRECT_READ_MIN {
                return Pin::new(&mut this.reader).poll_read(cx, buf);
            }
            this.read_ahead.reserve(READ_AHEAD);
            match poll_read_buf(Pin::new(&mut this.reader), cx, &mut this.read_ahead) {
                Poll::Pending => {
                    this.read_ahead = BytesMut::new();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())), // end of stream
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            }
        }
        let taken = this.read_ahead.len().min(buf.remaining());
        buf.put_slice(&this.read_ahead[..taken]);
        this.read_ahead.advance(taken);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BatchedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.buffer(cx, std::iter::once(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.buffer(cx, bufs.iter().map(|slice| &**slice))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Done once the bytes are in the writer's hands: it sends them as soon as the
    /// connection task yields, which is when a flush matters to the peer.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lock().error() {
            Some(error) => Poll::Ready(Err(error)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if let Some(error) = state.error() {
            return Poll::Ready(Err(error));
        }
        if state.shutdown_done {
            return Poll::Ready(Ok(()));
        }
        state.shutdown_requested = true;
        state.connection = Some(cx.waker().clone());
        state.wake_writer();
        Poll::Pending
    }
}

impl Drop for BatchedSocket {
    fn drop(&mut self) {
        let mut state = self.lock();
        state.dropped = true;
        state.wake_writer();
        self.shared.dropped.notify_one();
    }
}

/// What the writer task does next.
enum Next {
    Send(Vec<u8>),
    Shutdown,
    /// The socket was dropped and everything written before is sent.
    Stop,
}

/// Sends what the connection buffered, a batch per wake-up, until the socket is shut
/// down, dropped or fails.
async fn write_loop(shared: Arc<Shared>, mut socket: OwnedWriteHalf) {
    let mut spare = Vec::new();
    loop {
        let next = loop {
            std::future::poll_fn(|cx| {
                let mut state = shared.lock();
                if state.has_work() {
                    return Poll::Ready(());
                }
                state.writer = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            // h2 writes a request's HEADERS, wakes the body's pump, and writes the
            // DATA only when the pump has woken it in turn: the DATA arrives a task
            // or two after this wake-up. Letting the queued tasks run first sends
            // both in one write, which the backend then reads in one (`bench
            // passthrough`: 2.25 sends a unary call at concurrency 1 instead of 3.1).
            requeue_once().await;
            if let Some(next) = shared.lock().take_next(&mut spare) {
                break next;
            }
        };
        let result = match next {
            Next::Send(mut batch) => {
                let lingered = async {
                    if !shared.lock().dropped {
                        shared.dropped.notified().await;
                    }
                    tokio::time::sleep(LINGER).await;
                };
                let sent = tokio::select! {
                    sent = socket.write_all(&batch) => sent,
                    () = lingered => Err(io::ErrorKind::TimedOut.into()),
                };
                shared.lock().in_flight = false;
                batch.clear();
                // A burst leaves a large buffer; an idle connection keeps a modest one.
                batch.shrink_to(SPARE_WRITE_BUFFER);
                spare = batch;
                sent
            }
            Next::Shutdown => {
                let result = socket.shutdown().await;
                let mut state = shared.lock();
                state.shutdown_done = result.is_ok();
                state.wake_connection();
                if result.is_ok() {
                    return;
                }
                result
            }
            Next::Stop => return,
        };
        if let Err(error) = result {
            let mut state = shared.lock();
            state.failed = Some((error.kind(), error.to_string()));
            state.wake_connection();
            return;
        }
    }
}

/// Returns once every task already queued on this worker has had its turn: the task
/// wakes itself and goes to the back of the run queue. Unlike
/// `tokio::task::yield_now`, which waits for the runtime's next I/O poll, this adds
/// no system call.
async fn requeue_once() {
    let mut requeued = false;
    std::future::poll_fn(|cx| {
        if requeued {
            return Poll::Ready(());
        }
        requeued = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

impl crate::tls::RemoteAddr for BatchedSocket {
    fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.reader.peer_addr().ok()
    }
}

#[cfg(test)]
#[path = "batched_socket_tests.rs"]
mod tests;
