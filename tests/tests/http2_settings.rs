//! The HTTP/2 settings a client meets at the executor and at the proxy in front of it,
//! and a large upload that uses them. Both accept 1 MiB frames, so a client sending
//! 1 MiB ByteStream chunks sends each in one frame. The executor grants each stream
//! a 2 MiB window; the proxy's listener 512 KiB unless `listen_stream_window` says
//! otherwise, so an upload that outruns the backend waits in the client rather than
//! piling up in the proxy (`proxy/src/flow_control.rs`, `executor/src/flow_control.rs`).

use bytes::Bytes;
use remesh_tests::ExecutorOptions;
use remesh_tests::proxy_process::ProxyProcess;
use remesh_tests::raw_h2::{
    SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE, server_settings,
};
use remesh_tests::reapi_client::{Clients, blob_digest};

const MIB: u32 = 1024 * 1024;

fn value(settings: &[(u16, u32)], id: u16) -> Option<u32> {
    settings
        .iter()
        .rev()
        .find(|(key, _)| *key == id)
        .map(|(_, v)| *v)
}

#[tokio::test]
async fn executor_and_proxy_accept_whole_mebibyte_frames_and_relay_them() {
    let executor = ExecutorOptions::new().spawn().unwrap();
    let proxy = ProxyProcess::spawn_for(&executor, "settings-node", &[]).unwrap();
    let wide = ProxyProcess::spawn_for(
        &executor,
        "wide-window-node",
        &["--listen-stream-window", "4194304"],
    )
    .unwrap();

    for (who, addr, window) in [
        ("executor", executor.grpc_addr(), 2 * MIB),
        ("proxy", proxy.grpc_addr(), MIB / 2),
        ("proxy --listen-stream-window", wide.grpc_addr(), 4 * MIB),
    ] {
        let settings = server_settings(addr).await.unwrap();
        assert_eq!(
            value(&settings, SETTINGS_MAX_FRAME_SIZE),
            Some(MIB),
            "{who} SETTINGS: {settings:?}"
        );
        assert_eq!(
            value(&settings, SETTINGS_INITIAL_WINDOW_SIZE),
            Some(window),
            "{who} SETTINGS: {settings:?}"
        );
    }

    // 2 MiB and a byte, in 1 MiB messages: whole-chunk frames on both hops, the last
    // one short. Read back through the proxy and directly, byte for byte.
    let data: Bytes = (0..2 * MIB as usize + 1).map(|i| (i % 251) as u8).collect();
    let through_proxy = Clients::connect(proxy.grpc_addr(), "").await.unwrap();
    let digest = through_proxy.upload(data.clone()).await.unwrap();
    assert_eq!(digest, blob_digest(&data));
    let direct = Clients::connect(executor.grpc_addr(), "").await.unwrap();
    for (who, clients) in [("proxy", &through_proxy), ("executor", &direct)] {
        let read_back = clients.download(&digest).await.unwrap();
        assert!(read_back == data, "{who}: the blob read back differs");
    }
}

/// The benchmark's Bazel-shaped uploader (16 KiB messages, one DATA frame each) stores
/// what it sends, through the proxy and directly, and a wrong digest is refused: the
/// benchmark counts only uploads the server accepted.
#[tokio::test]
async fn sixteen_kib_message_uploads_land_through_the_proxy_and_directly() {
    use remesh_tests::bench::bazel_upload::{BAZEL_CHUNK_BYTES, upload};

    let executor = ExecutorOptions::new().spawn().unwrap();
    let proxy = ProxyProcess::spawn_for(&executor, "bazel-chunks-node", &[]).unwrap();
    let direct = Clients::connect(executor.grpc_addr(), "").await.unwrap();
    for (who, addr, seed) in [
        ("proxy", proxy.grpc_addr(), 3u8),
        ("executor", executor.grpc_addr(), 7u8),
    ] {
        // Five whole chunks and a short one.
        let data: Bytes = (0..5 * BAZEL_CHUNK_BYTES + 100)
            .map(|i| (i % 241) as u8 ^ seed)
            .collect();
        let digest = blob_digest(&data);
        upload(addr, "", &digest, data.clone(), BAZEL_CHUNK_BYTES)
            .await
            .unwrap_or_else(|error| panic!("{who}: {error:#}"));
        let read_back = direct.download(&digest).await.unwrap();
        assert!(read_back == data, "{who}: the blob read back differs");

        let mut wrong = digest.clone();
        wrong.hash = blob_digest(b"something else").hash;
        let refused = upload(addr, "", &wrong, data, BAZEL_CHUNK_BYTES).await;
        assert!(
            refused.is_err(),
            "{who}: an upload under a wrong digest was accepted"
        );
    }
}
