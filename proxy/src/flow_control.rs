//! HTTP/2 flow-control windows for both sides of the proxy: the listener clients
//! and peers send to, and the connections it opens to backends and peers.
//!
//! The proxy relays frames, so a window on either side caps how many bytes of one
//! stream can be in flight through it. hyper's adaptive (BDP-probing) windows start
//! at 64 KiB and grow only as ping round-trips measure the bandwidth-delay product;
//! on loopback and in-cluster links a 256 MiB ByteStream spends most of its life
//! waiting for WINDOW_UPDATEs while the estimate catches up. Fixed windows a little
//! larger than what tonic and Bazel's netty use keep a stream streaming. The memory
//! they commit is bounded by the peer, not by us: it is what one connection may
//! have buffered in the proxy before its reader catches up.

/// Bytes one stream may have in flight towards the proxy on the connections it
/// opens to backends and peers (responses: ByteStream reads, peer fill).
pub const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// Bytes one stream may send the proxy's gRPC listeners before the proxy has taken
/// them (`listen_stream_window`, this by default). Smaller than `STREAM_WINDOW` on
/// purpose: an upload through the proxy runs at the backend's pace, and a window
/// that lets the client run further ahead only parks more of it in the relay and
/// in the client. With 2 MiB, a tonic client sending 1 MiB chunks encoded each
/// chunk into a freshly allocated buffer (its last one was still queued in h2):
/// about 20,000 page faults and 30 ms more client CPU per 256 MiB. Side by side in
/// writes-only runs of `bench passthrough` (seven rounds each), 512 KiB wrote at
/// 1.05× the rate of 1 MiB, which wrote at 1.03× that of 1.5 MiB; 256 KiB at 0.98×
/// of 512 KiB, with 1.1× the relay CPU, and 64 KiB earlier at 0.93×. Bazel's
/// uploads (16 KiB messages) pay a little for it: 0.95–1.02× the rate of 2 MiB in
/// four runs of five (0.76× in a noisy one), as the proxy sends four WINDOW_UPDATEs
/// where it sent one.
/// Against 1 MiB in the same rounds: 1.03× on 1 MiB messages, 0.97× on Bazel's.
/// The price on a long thin link: one stream moves at most this much per round
/// trip (26 MB/s at 20 ms), which a proxy in front of distant clients should raise.
pub const LISTENER_STREAM_WINDOW: u32 = 512 * 1024;

/// Bytes all streams of one connection may have in flight towards the proxy, on
/// every connection.
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The largest HTTP/2 frame the proxy accepts (SETTINGS_MAX_FRAME_SIZE), from clients
/// and peers and from the servers behind it. Clients that send 1 MiB ByteStream
/// chunks (tonic, Buildbarn's tools) then send each in one frame instead of 64, and
/// the proxy reads, queues and writes one frame where it handled 64. Measured with
/// `bench passthrough` (256 MiB, CAS on tmpfs) against 16 KiB frames, over five runs:
/// 0.80–0.93× the relay CPU on writes and 0.77–0.86× on reads, 0.99–1.10× the write
/// and 0.97–1.15× the read rate.
/// The cost is bounded: h2 holds at most one frame of this size per connection
/// before it can pass it on. nginx accepts frames of up to 16 MiB.
pub const MAX_FRAME: u32 = 1024 * 1024;
