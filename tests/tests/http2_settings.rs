//! The HTTP/2 settings a client meets at the executor and at the proxy in front of it,
//! and a large upload that uses them. Both accept 1 MiB frames, so a client sending
//! 1 MiB ByteStream chunks sends each in one frame, and windows of 2 MiB per stream,
//! so two such chunks can be in flight on each hop (`proxy/src/flow_control.rs`,
//! `executor/src/flow_control.rs`).

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

    for (who, addr) in [
        ("executor", executor.grpc_addr()),
        ("proxy", proxy.grpc_addr()),
    ] {
        let settings = server_settings(addr).await.unwrap();
        assert_eq!(
            value(&settings, SETTINGS_MAX_FRAME_SIZE),
            Some(MIB),
            "{who} SETTINGS: {settings:?}"
        );
        assert_eq!(
            value(&settings, SETTINGS_INITIAL_WINDOW_SIZE),
            Some(2 * MIB),
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
