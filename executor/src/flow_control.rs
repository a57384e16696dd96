//! The HTTP/2 frame size and flow-control windows of the executor's gRPC port.
//!
//! hyper's defaults (16 KiB frames, 1 MiB windows) make a client that sends 1 MiB
//! ByteStream chunks cut each into 64 frames, and let one stream have only one such
//! chunk in flight. The same values as remesh-proxy's listener keep a relayed
//! upload flowing from the client through the proxy into the executor without
//! waiting on either hop's window.

/// The largest HTTP/2 frame the executor accepts (SETTINGS_MAX_FRAME_SIZE): one
/// 1 MiB ByteStream chunk. h2 holds at most one such frame per connection before
/// passing it on.
pub const MAX_FRAME: u32 = 1024 * 1024;

/// Bytes one stream may have in flight towards the executor: two full frames.
pub const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// Bytes all streams of one connection may have in flight towards the executor.
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
