//! Connections to one upstream for streams that may stay open while an action waits
//! and runs: Execute and WaitExecution to the local backend, and everything sent to
//! a peer's proxy.
//!
//! A server caps the streams one HTTP/2 connection may carry (remesh-executor and
//! hyper announce 200, a remesh-proxy 1,000). Every queued action holds its Execute
//! stream for as long as it waits for a runner, which on a busy node is minutes, and
//! a queue may hold thousands. Sharing the short calls' connections, those streams
//! would take every slot and a FindMissingBlobs would wait behind actions that wait
//! for runners: a build stalls on its own backlog. So they get connections of their
//! own, which grow with demand: a stream goes to the first connection with fewer
//! than `streams_per_connection` open, and when every connection is that busy a new
//! one is dialled, up to `max_connections`. Past that the least busy connection takes
//! it (and HTTP/2 queues it if the server is full). `close` ends every connection at
//! once (a peer declared down).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::channel::UpstreamBody;

use crate::body::ProxyRequest;
use crate::channel::{ChannelError, ChannelSettings, Endpoint, Http2Channel};

/// Streams put on one connection before another is opened: below the 200 that
/// remesh-executor and hyper announce, and the 100 that many gRPC servers do.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// Connections at most: with 100 streams each, room for 12,800 waiting or running
/// actions, beyond remesh-executor's default queue of 10,000.
pub const MAX_CONNECTIONS: usize = 128;

struct Lane {
    channel: Arc<Http2Channel>,
    open: Arc<AtomicUsize>,
}

pub struct StreamPool {
    endpoint: Endpoint,
    settings: ChannelSettings,
    streams_per_connection: usize,
    max_connections: usize,
    lanes: Mutex<Vec<Lane>>,
    closed: AtomicBool,
}

/// One stream counted against its connection until dropped (when the response
/// stream ends, or at once when the request failed).
#[derive(Debug)]
pub struct OpenStream {
    open: Arc<AtomicUsize>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StreamPool {
    pub fn new(
        endpoint: Endpoint,
        settings: ChannelSettings,
        streams_per_connection: usize,
        max_connections: usize,
    ) -> Self {
        Self {
            endpoint,
            settings,
            streams_per_connection: streams_per_connection.max(1),
            max_connections: max_connections.max(1),
            lanes: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Ends every connection now, and the streams open on them (see
    /// `Http2Channel::close`); later requests fail without dialling.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for lane in self.lock().iter() {
            lane.channel.close();
        }
    }

    /// Sends `request` on a connection with room; the guard keeps the stream counted
    /// and must live as long as the response body.
    pub async fn send(
        &self,
        request: ProxyRequest,
    ) -> Result<(http::Response<UpstreamBody>, OpenStream), ChannelError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ChannelError::Closed {
                endpoint: self.endpoint.authority(),
            });
        }
        let (channel, stream) = self.reserve();
        let response = channel.send(request).await?;
        Ok((response, stream))
    }

    /// Connections dialled or about to be.
    pub fn connections(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Lane>> {
        // Counters only: a poisoned lock is still consistent.
        self.lanes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn reserve(&self) -> (Arc<Http2Channel>, OpenStream) {
        let mut lanes = self.lock();
        let with_room = lanes
            .iter()
            .position(|lane| lane.open.load(Ordering::Relaxed) < self.streams_per_connection);
        let index = match with_room {
            Some(index) => index,
            None if lanes.len() < self.max_connections => {
                lanes.push(Lane {
                    channel: Arc::new(Http2Channel::new(
                        self.endpoint.clone(),
                        self.settings.clone(),
                    )),
                    open: Arc::new(AtomicUsize::new(0)),
                });
                lanes.len() - 1
            }
            None => (0..lanes.len())
                .min_by_key(|&index| lanes[index].open.load(Ordering::Relaxed))
                .unwrap_or(0),
        };
        let lane = &lanes[index];
        lane.open.fetch_add(1, Ordering::Relaxed);
        (
            lane.channel.clone(),
            OpenStream {
                open: lane.open.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(per_connection: usize, max: usize) -> StreamPool {
        StreamPool::new(
            Endpoint::parse("grpc://127.0.0.1:1").unwrap(),
            ChannelSettings::default(),
            per_connection,
            max,
        )
    }

    #[test]
    fn connections_grow_with_open_streams_and_are_reused_when_they_end() {
        let pool = pool(2, 3);
        let first: Vec<_> = (0..2).map(|_| pool.reserve()).collect();
        assert_eq!(pool.connections(), 1);
        assert!(Arc::ptr_eq(&first[0].0, &first[1].0));
        let third = pool.reserve();
        assert_eq!(pool.connections(), 2);
        assert!(!Arc::ptr_eq(&first[0].0, &third.0));
        // A stream on the first connection ends: the next one goes there again.
        drop(first);
        let again = pool.reserve();
        assert_eq!(pool.connections(), 2);
        assert!(!Arc::ptr_eq(&again.0, &third.0));
    }

    #[tokio::test]
    async fn a_closed_pool_sends_nothing() {
        let pool = pool(1, 2);
        let _open = pool.reserve();
        pool.close();
        let request = http::Request::new(crate::body::empty());
        let error = pool.send(request).await.unwrap_err();
        assert!(matches!(error, ChannelError::Closed { .. }), "{error}");
        assert!(error.never_reached_upstream());
    }

    #[test]
    fn past_the_cap_the_least_busy_connection_takes_the_stream() {
        let pool = pool(1, 2);
        let a = pool.reserve();
        let b = pool.reserve();
        let c = pool.reserve();
        assert_eq!(pool.connections(), 2);
        assert!(Arc::ptr_eq(&c.0, &a.0) || Arc::ptr_eq(&c.0, &b.0));
        drop(b);
        let d = pool.reserve();
        assert_eq!(pool.lock()[1].open.load(Ordering::Relaxed), 1);
        drop((a, c, d));
        assert!(
            pool.lock()
                .iter()
                .all(|lane| lane.open.load(Ordering::Relaxed) == 0)
        );
    }
}
