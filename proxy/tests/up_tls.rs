//! The TLS layouts `remesh-proxy up` builds on its own: `--tls` (client TLS on the
//! gRPC ports, mutual TLS between peers on peer ports of their own, sealed gossip)
//! and `--mesh-tls` (the same between peers, plaintext for clients). Each starts a
//! real three-node cluster, follows the Bazel flags `up` prints, and checks what
//! peers and strangers meet on the peer ports.

mod support;

use std::time::Duration;

use remesh_proto::reapi::GetCapabilitiesRequest;
use remesh_proto::reapi::capabilities_client::CapabilitiesClient;
use support::processes::{UpCluster, metric};
use support::secure::{alive_members, connect_plaintext};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// `up --tls` starts a three-node mesh with client TLS (client certificates
/// required), mutual TLS between peers on their peer ports and sealed gossip, and
/// prints the flags a client needs: with them, a TLS client reaches the real
/// executor behind node 0.
///
/// (Bazel itself is not driven here: Debian's Bazel 4.2.3 on its JDK 17 fails
/// before dialling any grpcs:// endpoint with "JDK provider does not support ALPN
/// protocol", whatever the server does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_tls_serves_tls_clients_on_a_sealed_mtls_mesh() {
    remesh_proxy::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = UpCluster::start_with(
        3,
        "1",
        &dir.path().join("cluster"),
        &["--tls", "--tls-client-auth", "required"],
    )
    .await;
    let flags = &cluster.ready.bazel_flags;
    let flag = |name: &str| {
        flags
            .iter()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing in {flags:?}"))
            .to_owned()
    };
    let executor = flag("--remote_executor=grpcs://");
    assert_eq!(executor, cluster.node(0).grpc.to_string());
    let read = |path: String| std::fs::read(path).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(flag("--tls_certificate="))))
        .domain_name("127.0.0.1");
    let endpoint = |tls: ClientTlsConfig| {
        Endpoint::from_shared(format!("https://{executor}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
    };
    let with_cert = tls.clone().identity(Identity::from_pem(
        read(flag("--tls_client_certificate=")),
        read(flag("--tls_client_key=")),
    ));
    let channel = endpoint(with_cert)
        .connect()
        .await
        .expect("TLS with a client certificate");
    let capabilities = CapabilitiesClient::new(channel)
        .get_capabilities(GetCapabilitiesRequest {
            instance_name: "main".into(),
        })
        .await
        .expect("Capabilities from the executor through TLS")
        .into_inner();
    assert!(capabilities.execution_capabilities.is_some());
    if let Ok(channel) = endpoint(tls).connect().await {
        CapabilitiesClient::new(channel)
            .get_capabilities(GetCapabilitiesRequest {
                instance_name: "main".into(),
            })
            .await
            .expect_err("a client without a certificate is refused");
    }
    assert_peer_ports_and_sealed_gossip(&cluster).await;
    assert!(cluster.stop().await.success());
}

/// What `up --mesh-tls` and `up --tls` share: every node has a peer port, which is
/// what the others gossip as its gRPC address and which refuses plaintext; gossip
/// is sealed.
async fn assert_peer_ports_and_sealed_gossip(cluster: &UpCluster) {
    let report = support::cluster(cluster.node(0).admin)
        .await
        .expect("node 0's /cluster");
    for node in &cluster.ready.nodes {
        assert_eq!(alive_members(node.admin).await, 3);
        let opened = metric(
            node.admin,
            "remesh_proxy_gossip_seal_packets_total{outcome=\"opened\"}",
        )
        .await;
        assert!(opened > 0.0, "{}: gossip is sealed", node.node_id);
        let peer = node.peer.expect("up names each node's peer port");
        let member = report
            .members
            .iter()
            .find(|m| m.node_id == node.node_id)
            .expect("a member");
        assert_eq!(
            member.grpc_addr,
            peer.to_string(),
            "peers dial the peer port"
        );
        if let Ok(channel) = connect_plaintext(peer).await {
            CapabilitiesClient::new(channel)
                .get_capabilities(GetCapabilitiesRequest {
                    instance_name: "main".into(),
                })
                .await
                .expect_err("the peer port refuses plaintext");
        }
    }
}

/// `up --mesh-tls`: mutual TLS between the nodes only; the flags printed for Bazel
/// are plaintext `grpc://` to node 0's client port, and they work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_mesh_tls_gives_clients_plaintext_and_peers_mutual_tls() {
    remesh_proxy::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = UpCluster::start_with(3, "1", &dir.path().join("cluster"), &["--mesh-tls"]).await;
    let flags = &cluster.ready.bazel_flags;
    let executor = flags
        .iter()
        .find_map(|f| f.strip_prefix("--remote_executor="))
        .unwrap_or_else(|| panic!("--remote_executor missing in {flags:?}"));
    assert_eq!(executor, format!("grpc://{}", cluster.node(0).grpc));
    assert!(
        !flags.iter().any(|f| f.starts_with("--tls")),
        "no client TLS flags: {flags:?}"
    );
    let channel = Endpoint::from_shared(executor.replace("grpc://", "http://"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("plaintext to node 0's client port");
    let capabilities = CapabilitiesClient::new(channel)
        .get_capabilities(GetCapabilitiesRequest {
            instance_name: "main".into(),
        })
        .await
        .expect("Capabilities from the executor in plaintext")
        .into_inner();
    assert!(capabilities.execution_capabilities.is_some());
    assert_peer_ports_and_sealed_gossip(&cluster).await;
    assert!(cluster.stop().await.success());
}
