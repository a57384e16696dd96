//! `BatchedSocket` over real loopback sockets: bytes arrive whole and in order through
//! both the batched and the direct paths, a peer that stops reading pushes back, and
//! shutdown or drop still delivers what was written before.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{BatchedSocket, DIRECT_WRITE_MIN, WRITE_BUFFER_LIMIT};

/// A connected pair on loopback: the batched side and the plain peer.
async fn pair() -> (BatchedSocket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dialled = TcpStream::connect(listener.local_addr().unwrap());
    let (dialled, accepted) = tokio::join!(dialled, listener.accept());
    (BatchedSocket::new(dialled.unwrap()), accepted.unwrap().0)
}

/// Reads everything the peer receives, in a task of its own, so that writers never
/// wait on socket buffers the test itself would empty only later.
fn read_to_end(mut peer: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut received = Vec::new();
        peer.read_to_end(&mut received).await.unwrap();
        received
    })
}

/// Sizes that cross every threshold: tiny frames, h2 headers, a unary message, a
/// full DATA frame that may take the direct path, and a larger-than-read-ahead run.
fn chunks() -> Vec<Vec<u8>> {
    let sizes = [1, 9, 100, 3_000, DIRECT_WRITE_MIN, 16_393, 70_000, 5];
    (0..400)
        .map(|i| {
            let size = sizes[i % sizes.len()];
            (0..size).map(|b| (b * 31 + i) as u8).collect()
        })
        .collect()
}

// Two workers: the writer task runs beside the writes, as it may in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_every_size_arrive_whole_and_in_order() {
    let (mut batched, peer) = pair().await;
    let chunks = chunks();
    let expected: Vec<u8> = chunks.concat();
    let reader = read_to_end(peer);
    for chunk in &chunks {
        batched.write_all(chunk).await.unwrap();
    }
    batched.shutdown().await.unwrap();
    let received = reader.await.unwrap();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "bytes differ");
}

/// Writes `parts` with vectored writes until all of it is taken, as h2 does.
async fn write_all_vectored(socket: &mut BatchedSocket, parts: &[&[u8]]) {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let mut done = 0;
    while done < total {
        let mut skip = done;
        let mut slices = Vec::new();
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(std::io::IoSlice::new(&part[skip..]));
            skip = 0;
        }
        done += socket.write_vectored(&slices).await.unwrap();
    }
}

// Two workers: the writer task runs beside the writes, as it may in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectored_writes_keep_their_order() {
    let (mut batched, peer) = pair().await;
    // Read while writing: more than the socket buffers hold is written.
    let reader = read_to_end(peer);
    let head = [7u8; 9];
    let body: Vec<u8> = (0..20_000).map(|b| b as u8).collect();
    let mut expected = Vec::new();
    for _ in 0..300 {
        // A frame header and payload (large: may go straight to the kernel), then a
        // small frame (buffered behind it).
        write_all_vectored(&mut batched, &[&head, &body]).await;
        write_all_vectored(&mut batched, &[&head, b"trailer"]).await;
        expected.extend_from_slice(&head);
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&head);
        expected.extend_from_slice(b"trailer");
    }
    batched.shutdown().await.unwrap();
    let received = reader.await.unwrap();
    assert!(received == expected, "bytes differ");
}

#[tokio::test]
async fn reads_of_every_size_see_the_stream_in_order() {
    let (mut batched, mut peer) = pair().await;
    let chunks = chunks();
    let expected: Vec<u8> = chunks.concat();
    let writer = tokio::spawn(async move {
        for chunk in chunks {
            peer.write_all(&chunk).await.unwrap();
        }
        peer.shutdown().await.unwrap();
    });
    // Read with buffers small and large, as h2 does.
    let sizes = [5usize, 4_096, 17_000, 100_000, 64];
    let mut received = Vec::new();
    for i in 0.. {
        let mut buf = vec![0u8; sizes[i % sizes.len()]];
        let read = batched.read(&mut buf).await.unwrap();
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buf[..read]);
    }
    writer.await.unwrap();
    assert!(received == expected, "bytes differ");
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_buffer_makes_writes_wait() {
    let (mut batched, _peer) = pair().await;
    // Small writes are buffered; the writer task cannot run while this task does not
    // yield, so the buffer fills and the next write must wait.
    let chunk = [1u8; 1024];
    let accepted = poll_fn(|cx| {
        let mut accepted = 0;
        loop {
            match Pin::new(&mut batched).poll_write(cx, &chunk) {
                Poll::Ready(Ok(n)) => accepted += n,
                Poll::Ready(Err(error)) => panic!("{error}"),
                Poll::Pending => return Poll::Ready(accepted),
            }
            assert!(accepted <= 2 * WRITE_BUFFER_LIMIT, "never pushed back");
        }
    })
    .await;
    assert!(accepted >= WRITE_BUFFER_LIMIT, "{accepted}");
    assert!(
        accepted < WRITE_BUFFER_LIMIT + chunk.len() + 1,
        "{accepted}"
    );
}

#[tokio::test]
async fn bytes_written_before_a_drop_still_arrive() {
    let (mut batched, peer) = pair().await;
    let reader = read_to_end(peer);
    let message = vec![9u8; 300_000];
    batched.write_all(&message[..1000]).await.unwrap();
    batched.write_all(&message[1000..]).await.unwrap();
    drop(batched);
    assert_eq!(reader.await.unwrap().len(), message.len());
}

#[tokio::test]
async fn the_peer_sees_the_end_of_stream_after_shutdown() {
    let (mut batched, mut peer) = pair().await;
    batched.write_all(b"goaway").await.unwrap();
    batched.shutdown().await.unwrap();
    let mut received = Vec::new();
    peer.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, b"goaway");
    // The receiving side still works after ours is shut.
    peer.write_all(b"late").await.unwrap();
    let mut late = [0u8; 4];
    batched.read_exact(&mut late).await.unwrap();
    assert_eq!(&late, b"late");
}

#[tokio::test]
async fn writes_fail_once_the_peer_is_gone() {
    let (mut batched, peer) = pair().await;
    // Reset rather than close: unread data and a zero linger make the peer send RST.
    peer.set_zero_linger().unwrap();
    drop(peer);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failed = None;
    while failed.is_none() && Instant::now() < deadline {
        match batched.write_all(&[0u8; 512]).await {
            Ok(()) => tokio::task::yield_now().await,
            Err(error) => failed = Some(error),
        }
    }
    let error = failed.expect("writes to a reset peer never failed");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_read_returns_end_of_stream_when_the_peer_closes() {
    let (mut batched, peer) = pair().await;
    drop(peer);
    assert_eq!(batched.read(&mut [0u8; 100]).await.unwrap(), 0);
}

/// Has the current task go to the back of the run queue once, as a task that wakes
/// another one and then waits for it. Written apart from the writer's own
/// `requeue_once` on purpose: were that to return at once, the test below would
/// still write twice with the writer between, and fail.
async fn let_queued_tasks_run() {
    let mut requeued = false;
    poll_fn(|cx| {
        if requeued {
            return Poll::Ready(());
        }
        requeued = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

// One thread, as the proxy runs: what runs when is the run queue's order.
#[tokio::test(flavor = "current_thread")]
async fn a_write_made_a_task_later_joins_the_same_batch() {
    // Spawned: the test's own future is not polled from the run queue.
    tokio::spawn(async {
        let (mut batched, peer) = pair().await;
        let reader = read_to_end(peer);
        // HEADERS, then DATA once the tasks queued meanwhile (the writer among them)
        // have had a turn: how h2 writes a request whose body waited for capacity.
        batched.write_all(b"headers").await.unwrap();
        let_queued_tasks_run().await;
        batched.write_all(b"data").await.unwrap();
        batched.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), b"headersdata");
        assert_eq!(batched.shared.lock().batches, 1, "sent in separate writes");
    })
    .await
    .unwrap();
}
