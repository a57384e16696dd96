//! The peer-port layout with real `remesh-proxy serve` processes: each node serves
//! clients in h2c on `listen` and peers with mutual TLS on `peer_listen`, gossip
//! sealed. Certificates and keyrings are generated at test time; backends are the
//! in-process fake REAPI server (generic mode, capacity 1), so an Execute that finds
//! its entry node busy is forwarded over the mesh.
//!
//! One three-node mesh serves every phase, in order: it forms, gossips its peer
//! ports and forwards over them (never touching a peer's client port); a client's
//! hop header is ignored on the client port; the peer port refuses plaintext, a
//! client without a certificate and a certificate from another CA at the
//! handshake; a member with the gossip key but a rogue mesh certificate is never
//! forwarded to, though it is the idlest node with the most room and would accept
//! the mesh's certificates.

mod support;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proxy::channel::{ChannelSettings, Endpoint, Http2Channel};
use remesh_proxy::tls::{ClientTlsConfig, DEFAULT_RELOAD_INTERVAL, Reloading};
use support::fake_backend::FakeBackend;
use support::processes::metric;
use support::secure::{
    Ca, LeafFiles, ServeProcess, alive_members, assert_mesh_never_forwards_to, ca_bundle,
    execute_request, execute_to_end, execute_with_forged_hop, hold, keyring_file,
};
use support::{cluster, eventually, wait_member_state};
use tonic::transport::Channel;

const CONVERGE: Duration = Duration::from_secs(30);
const REFUSED: &str = "remesh_proxy_tls_handshakes_total{outcome=\"refused\"}";
const MESH_HANDSHAKES: &str = "remesh_proxy_tls_handshakes_total{outcome=\"mesh\"}";
const CLIENT_PORT: &str = "remesh_proxy_grpc_connections_total{listener=\"client\"}";
const PEER_PORT: &str = "remesh_proxy_grpc_connections_total{listener=\"peer\"}";
const HOPS_IGNORED: &str = "remesh_proxy_hop_headers_ignored_total";

fn os(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|item| item.as_ref().to_owned()).collect()
}

/// A node with a peer port under `mesh_ca`/`leaf`, h2c for clients, the given
/// keyring, a fake backend of `capacity`, and a seed to join.
fn node_args(
    mesh_ca: &Path,
    leaf: &LeafFiles,
    keyring: &Path,
    backend: SocketAddr,
    capacity: u32,
    join: Option<SocketAddr>,
) -> Vec<OsString> {
    let mut args = os(&[
        &"--peer-listen",
        &"127.0.0.1:0",
        &"--mesh-tls-ca-file",
        &mesh_ca,
        &"--mesh-tls-cert-file",
        &leaf.cert,
        &"--mesh-tls-key-file",
        &leaf.key,
        &"--gossip-keyring",
        &keyring,
        &"--backend-mode",
        &"generic",
        &"--capacity",
        &capacity.to_string(),
        &"--backend",
        &format!("grpc://{backend}"),
    ]);
    if let Some(seed) = join {
        args.extend(os(&[&"--join", &seed.to_string()]));
    }
    args
}

async fn h2c_client(addr: SocketAddr) -> ExecutionClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("an h2c client reaches the client port");
    ExecutionClient::new(channel)
}

/// An Execute marked as forwarded, sent the way a peer would send it, over `tls`
/// (`None`: h2c). Whether anything came back.
async fn forward_like_a_peer(
    peer_port: SocketAddr,
    tls: Option<remesh_proxy::tls::TlsConnector>,
) -> Result<http::StatusCode, String> {
    let channel = Http2Channel::new(
        Endpoint::from_addr(peer_port),
        ChannelSettings {
            tls,
            connect_timeout: Duration::from_secs(5),
            ..ChannelSettings::default()
        },
    );
    let message = execute_request("main", "from-outside").encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::builder()
        .method("POST")
        .uri("/build.bazel.remote.execution.v2.Execution/Execute")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-remesh-hop", "1")
        .body(remesh_proxy::body::full(Bytes::from(frame)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(15), channel.send(request))
        .await
        .map_err(|_| "no answer within 15 s".to_owned())?
        .map_err(|error| error.to_string())?;
    Ok(response.status())
}

/// A TLS connector that trusts the mesh CA (as any dialler could: a CA
/// certificate is not secret) and presents `identity`, or no certificate.
fn connector(mesh_ca: &Path, identity: Option<&LeafFiles>) -> remesh_proxy::tls::TlsConnector {
    Reloading::new(ClientTlsConfig {
        ca_file: mesh_ca.to_owned(),
        cert_file: identity.map(|leaf| leaf.cert.clone()),
        key_file: identity.map(|leaf| leaf.key.clone()),
        server_name: Some("127.0.0.1".into()),
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    })
    .expect("a client TLS config")
    .connector()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_port_mesh_forwards_over_mtls_and_keeps_a_rogue_out_both_ways() {
    remesh_proxy::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let mesh = Ca::new(path, "mesh");
    let keyring = keyring_file(&path.join("keyring"));

    // Phase 1: three nodes form a sealed mesh whose peers meet on peer ports. The
    // mesh certificates carry an IP SAN only so the test's own dialler below can
    // check them by name; the mesh itself ignores names.
    let ids = ["p-a", "p-b", "p-c"];
    let mut backends = Vec::new();
    let mut nodes: Vec<ServeProcess> = Vec::new();
    for id in ids {
        let backend = FakeBackend::default();
        let addr = backend.clone().start().await;
        backends.push(backend);
        let leaf = mesh.leaf(id, &["127.0.0.1"]);
        let join = nodes.first().map(|n| n.ready.gossip);
        let args = node_args(&mesh.pem_file, &leaf, &keyring, addr, 1, join);
        nodes.push(ServeProcess::start(id, &args, &path.join(format!("{id}.log"))).await);
    }
    for node in &nodes {
        for id in ids {
            wait_member_state(node.admin(), id, "alive", CONVERGE).await;
        }
        assert_eq!(alive_members(node.admin()).await, 3);
    }
    // Gossip carries the peer ports; /cluster names both addresses of a node.
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let report = cluster(a.admin()).await.expect("A's /cluster");
    let peer_of =
        |node: &ServeProcess| node.ready.peer.expect("the ready line names the peer port");
    assert_eq!(report.client_addr, Some(a.ready.grpc.to_string()));
    assert_eq!(report.peer_addr, Some(peer_of(a).to_string()));
    for node in &nodes {
        let member = report
            .members
            .iter()
            .find(|m| m.node_id == node.ready.node_id)
            .unwrap();
        assert_eq!(
            member.grpc_addr,
            peer_of(node).to_string(),
            "peers dial the peer port"
        );
    }

    // Phase 2: a busy entry node forwards over the peer ports only.
    let mut at_a = h2c_client(a.ready.grpc).await;
    let (held_at_a, name) = hold(&mut at_a, "first").await;
    assert!(name.starts_with("remesh/p-a/"), "{name}");
    let forwarded = execute_to_end(&mut at_a, "second").await;
    assert!(
        forwarded.starts_with("remesh/p-b/") || forwarded.starts_with("remesh/p-c/"),
        "a full entry node forwards to a peer: {forwarded}"
    );
    let (mut mesh_handshakes, mut peer_connections) = (0.0, 0.0);
    for node in [b, c] {
        mesh_handshakes += metric(node.admin(), MESH_HANDSHAKES).await;
        peer_connections += metric(node.admin(), PEER_PORT).await;
        assert_eq!(
            metric(node.admin(), CLIENT_PORT).await,
            0.0,
            "{}: no peer used the client port",
            node.ready.node_id
        );
    }
    assert!(
        mesh_handshakes >= 1.0,
        "the forward arrived over mutual TLS"
    );
    assert!(peer_connections >= 1.0, "on the peer port");

    // Phase 3: a client's hop header is removed on the client port, so this
    // Execute is forwarded like any other instead of being pinned to A.
    let pinned_name = execute_with_forged_hop(&mut at_a).await;
    assert!(
        !pinned_name.starts_with("remesh/p-a/"),
        "a client's hop header must be ignored: {pinned_name}"
    );
    assert_eq!(metric(a.admin(), HOPS_IGNORED).await, 1.0);

    // Phase 4: the peer port refuses, at the handshake, plaintext, a client
    // without a certificate, and a certificate from another CA even from a
    // dialler that trusts the mesh CA. B's backend sees none of them.
    let rogue_ca = Ca::new(path, "rogue");
    let rogue_leaf = rogue_ca.leaf("p-r", &["127.0.0.1"]);
    let b_peer = peer_of(b);
    let executes_before = backends[1].recorded.lock().unwrap().executes;
    let refused_before = metric(b.admin(), REFUSED).await;
    for (attempt, tls) in [
        ("plaintext", None),
        ("no certificate", Some(connector(&mesh.pem_file, None))),
        (
            "another CA's certificate",
            Some(connector(&mesh.pem_file, Some(&rogue_leaf))),
        ),
    ] {
        let outcome = forward_like_a_peer(b_peer, tls).await;
        assert!(
            outcome.is_err(),
            "{attempt}: the peer port answered {outcome:?}"
        );
    }
    eventually("B to count three refused handshakes", CONVERGE, || async {
        (metric(b.admin(), REFUSED).await >= refused_before + 3.0).then_some(())
    })
    .await;
    assert_eq!(
        backends[1].recorded.lock().unwrap().executes,
        executes_before
    );
    // The same dialler with a mesh certificate gets through: the refusals above
    // were about the certificate, not the dialler.
    let mesh_leaf = mesh.leaf("test-dialler", &[]);
    let status = forward_like_a_peer(b_peer, Some(connector(&mesh.pem_file, Some(&mesh_leaf))))
        .await
        .expect("a mesh certificate is let through");
    assert_eq!(status, http::StatusCode::OK);

    // Phase 5: a rogue member (the gossip key, a mesh certificate from another
    // CA), idle and with a hundred runners: the most attractive node there is.
    // It trusts the mesh CA as well as its own, so it would accept the mesh's
    // dial: only the mesh's check of its certificate keeps work away from it.
    let rogue_backend = FakeBackend::default();
    let addr = rogue_backend.clone().start().await;
    let rogue_trusts = ca_bundle(&path.join("rogue-trusts.pem"), &[&rogue_ca, &mesh]);
    let args = node_args(
        &rogue_trusts,
        &rogue_leaf,
        &keyring,
        addr,
        100,
        Some(a.ready.gossip),
    );
    let rogue = ServeProcess::start("p-r", &args, &path.join("p-r.log")).await;
    for node in &nodes {
        wait_member_state(node.admin(), "p-r", "alive", CONVERGE).await;
    }
    let fill = vec![
        (b, h2c_client(b.ready.grpc).await),
        (c, h2c_client(c.ready.grpc).await),
    ];
    let held = assert_mesh_never_forwards_to(&rogue, &rogue_backend, a, &mut at_a, fill).await;
    drop(held);
    drop(held_at_a);

    // Peers never sent a forwarded request to a client port.
    for node in [b, c] {
        assert_eq!(metric(node.admin(), HOPS_IGNORED).await, 0.0);
        assert_eq!(
            metric(node.admin(), CLIENT_PORT).await,
            1.0,
            "only the fill client"
        );
    }
}
