//! Mesh security with real `remesh-proxy serve` processes: client TLS on the gRPC
//! listener, mutual TLS between peers, and sealed gossip. Certificates and
//! keyrings are generated at test time; backends are the in-process fake REAPI
//! server (generic mode, capacity 1), so an Execute that finds its entry node
//! busy is forwarded over the mesh.
//!
//! One three-node mesh serves every phase, in order: it forms and forwards; a TLS
//! client works while plaintext and certificate-less clients are refused; a node
//! with the wrong gossip key never becomes a member; a node whose mesh certificate
//! comes from another CA gossips (it has the key), yet the mesh never forwards to it
//! (though it looks the best candidate) and it cannot forward to the mesh.
//!
//! This is the shared-port layout (peers and clients on one TLS port); the peer-port
//! layout (`peer_listen`) has its own test, `mesh_peer_port`, and the TLS layouts
//! `remesh-proxy up` builds are tested in `up_tls`.

mod support;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use remesh_proto::reapi::ExecuteRequest;
use remesh_proto::reapi::execution_client::ExecutionClient;
use support::fake_backend::FakeBackend;
use support::processes::metric;
use support::secure::{
    Ca, LeafFiles, ServeProcess, alive_members, assert_mesh_never_forwards_to, ca_bundle,
    connect_plaintext, execute_request, execute_to_end, execute_with_forged_hop, keyring_file,
};
use support::{eventually, wait_member_state};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const CONVERGE: Duration = Duration::from_secs(30);
/// How long a stranger is watched not becoming a member: several gossip and
/// join rounds (join interval 500 ms, probe period 1-2 s).
const STAY_OUT: Duration = Duration::from_secs(8);

struct Pki {
    clients: Ca,
    mesh: Ca,
    server: LeafFiles,
    client: LeafFiles,
}

fn os(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|item| item.as_ref().to_owned()).collect()
}

/// The flags of a node: client TLS (client certificates required), the given mesh
/// identity, the given keyring, a fake backend, and a seed to join.
fn node_args(
    pki: &Pki,
    mesh_ca: &Path,
    mesh: &LeafFiles,
    keyring: &Path,
    backend: SocketAddr,
    join: Option<SocketAddr>,
) -> Vec<OsString> {
    let mut args = os(&[
        &"--tls-cert-file",
        &pki.server.cert,
        &"--tls-key-file",
        &pki.server.key,
        &"--tls-client-ca-file",
        &pki.clients.pem_file,
        &"--tls-client-auth",
        &"required",
        &"--mesh-tls-ca-file",
        &mesh_ca,
        &"--mesh-tls-cert-file",
        &mesh.cert,
        &"--mesh-tls-key-file",
        &mesh.key,
        &"--gossip-keyring",
        &keyring,
        &"--backend-mode",
        &"generic",
        &"--capacity",
        &"1",
        &"--backend",
        &format!("grpc://{backend}"),
    ]);
    if let Some(seed) = join {
        args.extend(os(&[&"--join", &seed.to_string()]));
    }
    args
}

async fn tls_channel(
    pki: &Pki,
    addr: SocketAddr,
    with_client_cert: bool,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(&pki.clients.pem_file).unwrap(),
        ))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&pki.client.cert).unwrap(),
            std::fs::read(&pki.client.key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_mtls_mesh_forms_forwards_and_keeps_strangers_out() {
    remesh_proxy::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let clients = Ca::new(path, "clients");
    let mesh = Ca::new(path, "mesh");
    let pki = Pki {
        server: clients.leaf("server", &["127.0.0.1", "localhost"]),
        client: clients.leaf("bazel", &[]),
        clients,
        mesh,
    };
    let keyring = keyring_file(&path.join("keyring"));

    // Phase 1: three nodes form a sealed, mTLS mesh.
    let ids = ["s-a", "s-b", "s-c"];
    let mut backends = Vec::new();
    let mut nodes: Vec<ServeProcess> = Vec::new();
    for id in ids {
        let backend = FakeBackend::default();
        let addr = backend.clone().start().await;
        backends.push(backend);
        let leaf = pki.mesh.leaf(id, &[]);
        let join = nodes.first().map(|n| n.ready.gossip);
        let args = node_args(&pki, &pki.mesh.pem_file, &leaf, &keyring, addr, join);
        nodes.push(ServeProcess::start(id, &args, &path.join(format!("{id}.log"))).await);
    }
    for node in &nodes {
        for id in ids {
            wait_member_state(node.admin(), id, "alive", CONVERGE).await;
        }
        assert_eq!(alive_members(node.admin()).await, 3);
    }

    // Phase 2: a TLS client works, and a busy entry node forwards over mTLS.
    let a = &nodes[0];
    let channel = tls_channel(&pki, a.ready.grpc, true)
        .await
        .expect("a TLS client with a client certificate connects");
    let mut at_a = ExecutionClient::new(channel);
    let mut held = at_a
        .execute(ExecuteRequest {
            instance_name: "hold".into(),
            ..execute_request("hold", "first")
        })
        .await
        .unwrap()
        .into_inner();
    let first = held.message().await.unwrap().unwrap();
    assert!(first.name.starts_with("remesh/s-a/"), "{}", first.name);
    let forwarded = execute_to_end(&mut at_a, "second").await;
    assert!(
        forwarded.starts_with("remesh/s-b/") || forwarded.starts_with("remesh/s-c/"),
        "a full entry node forwards to a peer: {forwarded}"
    );
    // A client cannot pin work with the hop header: it is honoured only from a
    // connection with a mesh certificate, so this Execute is forwarded too.
    let pinned_name = execute_with_forged_hop(&mut at_a).await;
    assert!(
        !pinned_name.starts_with("remesh/s-a/"),
        "a client's hop header must be ignored: {pinned_name}"
    );
    let accepted = metric(a.admin(), "remesh_proxy_forwards_total").await;
    assert!(accepted >= 1.0, "forwards counted at the entry node");
    let peer_handshakes: f64 = {
        let mut sum = 0.0;
        for node in &nodes[1..] {
            sum += metric(
                node.admin(),
                "remesh_proxy_tls_handshakes_total{outcome=\"mesh\"}",
            )
            .await;
        }
        sum
    };
    assert!(
        peer_handshakes >= 1.0,
        "the forward arrived over a mesh handshake"
    );

    // Phase 3: a plaintext client and a client without a certificate are refused.
    if let Ok(channel) = connect_plaintext(a.ready.grpc).await {
        let status = ExecutionClient::new(channel)
            .execute(execute_request("main", "plain"))
            .await
            .expect_err("a plaintext client must not be served");
        assert_ne!(status.code(), tonic::Code::Ok);
    }
    let refused_before = metric(
        a.admin(),
        "remesh_proxy_tls_handshakes_total{outcome=\"refused\"}",
    )
    .await;
    assert!(
        refused_before >= 1.0,
        "the plaintext attempt is a refused handshake"
    );
    if let Ok(channel) = tls_channel(&pki, a.ready.grpc, false).await {
        ExecutionClient::new(channel)
            .execute(execute_request("main", "nocert"))
            .await
            .expect_err("client_auth = required refuses a client without a certificate");
    }

    // Phase 4: the right certificates but the wrong gossip key: never a member.
    let stranger_keyring = keyring_file(&path.join("wrong-keyring"));
    let backend = FakeBackend::default();
    let addr = backend.clone().start().await;
    let leaf = pki.mesh.leaf("s-x", &[]);
    let forged_before = metric(
        a.admin(),
        "remesh_proxy_gossip_seal_packets_total{outcome=\"forged\"}",
    )
    .await;
    let args = node_args(
        &pki,
        &pki.mesh.pem_file,
        &leaf,
        &stranger_keyring,
        addr,
        Some(a.ready.gossip),
    );
    let stranger = ServeProcess::start("s-x", &args, &path.join("s-x.log")).await;
    eventually("forged gossip counted at the seed", CONVERGE, || async {
        let forged = metric(
            a.admin(),
            "remesh_proxy_gossip_seal_packets_total{outcome=\"forged\"}",
        )
        .await;
        (forged > forged_before).then_some(())
    })
    .await;
    let start = Instant::now();
    while start.elapsed() < STAY_OUT {
        for node in &nodes {
            assert_eq!(alive_members(node.admin()).await, 3, "the mesh stays at 3");
        }
        let own = support::cluster(stranger.admin())
            .await
            .expect("stranger's /cluster");
        assert_eq!(
            own.members.len(),
            1,
            "the stranger stays alone: {:?}",
            own.members
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(stranger);

    // Phase 5: the right gossip key but a mesh certificate from another CA: it
    // becomes a member, but no forward crosses between it and the mesh.
    // It trusts the mesh CA besides its own (a CA certificate is no secret), so
    // only the mesh's own checks keep it out, in either direction.
    let rogue_ca = Ca::new(path, "rogue");
    let leaf = rogue_ca.leaf("s-r", &[]);
    let rogue_backend = FakeBackend::default();
    let addr = rogue_backend.clone().start().await;
    let rogue_trusts = ca_bundle(&path.join("rogue-trusts.pem"), &[&rogue_ca, &pki.mesh]);
    let args = node_args(
        &pki,
        &rogue_trusts,
        &leaf,
        &keyring,
        addr,
        Some(a.ready.gossip),
    );
    let rogue = ServeProcess::start("s-r", &args, &path.join("s-r.log")).await;
    for id in ids {
        wait_member_state(rogue.admin(), id, "alive", CONVERGE).await;
    }
    for node in &nodes {
        wait_member_state(node.admin(), "s-r", "alive", CONVERGE).await;
    }

    // 5a: the mesh towards the rogue. A still holds one Execute; with B and C
    // busy too, the idle rogue is A's best candidate, and the dial must fail.
    let mut fill = Vec::new();
    for node in &nodes[1..] {
        let channel = tls_channel(&pki, node.ready.grpc, true)
            .await
            .expect("a TLS client at a mesh node");
        fill.push((node, ExecutionClient::new(channel)));
    }
    let filled = assert_mesh_never_forwards_to(&rogue, &rogue_backend, a, &mut at_a, fill).await;
    drop(filled);

    // 5b: the rogue towards the mesh, once it sees B or C with room again.
    eventually(
        "the rogue to see a mesh node with room",
        CONVERGE,
        || async {
            let report = support::cluster(rogue.admin()).await?;
            report
                .members
                .iter()
                .any(|m| {
                    !m.local
                        && m.state == "alive"
                        && m.load
                            .is_some_and(|l| l.queued + l.executing < l.max_concurrency)
                })
                .then_some(())
        },
    )
    .await;
    let mut refused_on_mesh = 0.0;
    for node in &nodes {
        refused_on_mesh += metric(
            node.admin(),
            "remesh_proxy_tls_handshakes_total{outcome=\"refused\"}",
        )
        .await;
    }
    let channel = tls_channel(&pki, rogue.ready.grpc, true)
        .await
        .expect("client TLS at the rogue node");
    let mut at_rogue = ExecutionClient::new(channel);
    let mut rogue_held = at_rogue
        .execute(execute_request("hold", "rogue-first"))
        .await
        .unwrap()
        .into_inner();
    rogue_held.message().await.unwrap().unwrap();
    // Busy locally, the rogue node tries the mesh, fails, and runs it itself.
    let name = execute_to_end(&mut at_rogue, "rogue-second").await;
    assert!(
        name.starts_with("remesh/s-r/"),
        "no peer accepted the rogue's forward: {name}"
    );
    let failed = metric(rogue.admin(), "remesh_proxy_forwards_total").await;
    let accepted_by_mesh = metric(
        rogue.admin(),
        "remesh_proxy_forwards_total{outcome=\"accepted\"}",
    )
    .await;
    assert!(failed >= 1.0, "the rogue node tried to forward");
    assert_eq!(
        accepted_by_mesh, 0.0,
        "no forward from the rogue was accepted"
    );
    eventually(
        "mesh nodes count the rogue's refused handshakes",
        CONVERGE,
        || async {
            let mut now = 0.0;
            for node in &nodes {
                now += metric(
                    node.admin(),
                    "remesh_proxy_tls_handshakes_total{outcome=\"refused\"}",
                )
                .await;
            }
            (now > refused_on_mesh).then_some(())
        },
    )
    .await;
    for (index, backend) in backends.iter().enumerate() {
        let executes = backend.recorded.lock().unwrap().executes;
        assert!(executes <= 3, "node {index} ran {executes}");
    }
    assert_eq!(
        rogue_backend.recorded.lock().unwrap().executes,
        2,
        "the rogue ran only what its own client sent it"
    );
    drop(held);
    drop(rogue_held);
}
