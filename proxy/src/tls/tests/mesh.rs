//! Proxy-to-proxy mutual TLS: a peer is identified by a certificate chained to
//! the mesh CA, whatever address it was dialled at; anything else is refused.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Ca, Leaf, dial, echo, init, next_accepted, spawn_echo_server};
use crate::tls::{
    AcceptError, ClientTlsConfig, DEFAULT_RELOAD_INTERVAL, MeshTlsConfig, ReloadingClientConfig,
    ReloadingMeshConfig, server_certificate,
};

/// A mesh identity in `dir/name`, trusting `trusted` and presenting `leaf`.
fn mesh_config(dir: &Path, name: &str, trusted: &Ca, leaf: &Leaf) -> MeshTlsConfig {
    let node_dir = dir.join(name);
    std::fs::create_dir_all(&node_dir).unwrap();
    let (cert_file, key_file) = leaf.write_to(&node_dir);
    let ca_file = node_dir.join("ca.crt");
    std::fs::write(&ca_file, &trusted.pem).unwrap();
    MeshTlsConfig {
        ca_file,
        cert_file,
        key_file,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    }
}

async fn refused(
    outcome: Result<tokio_rustls::client::TlsStream<TcpStream>, crate::tls::ConnectError>,
) -> bool {
    match outcome {
        Ok(mut tls) => echo(&mut tls, b"ping").await.is_err(),
        Err(_) => true,
    }
}

#[tokio::test]
async fn peers_of_one_mesh_ca_connect_by_ip_address_without_ip_sans() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    // The certificates name pods, not addresses: the address is not checked.
    let a_leaf = ca.leaf(&["node-a.mesh.invalid"], 1);
    let b_leaf = ca.leaf(&["node-b.mesh.invalid"], 2);
    let a = ReloadingMeshConfig::new(mesh_config(dir.path(), "a", &ca, &a_leaf)).unwrap();
    let b = ReloadingMeshConfig::new(mesh_config(dir.path(), "b", &ca, &b_leaf)).unwrap();
    let (addr, mut accepted) = spawn_echo_server(a.acceptor()).await;

    let mut tls = dial(&b.connector(), addr, "127.0.0.1").await.unwrap();
    echo(&mut tls, b"gossip says hi").await.unwrap();
    assert_eq!(server_certificate(&tls), Some(a_leaf.der.clone()));
    assert_eq!(
        next_accepted(&mut accepted).await.unwrap(),
        Some(b_leaf.der)
    );
}

#[tokio::test]
async fn peer_presenting_a_certificate_of_another_ca_is_refused_by_the_acceptor() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let other = Ca::new("another mesh");
    let a =
        ReloadingMeshConfig::new(mesh_config(dir.path(), "a", &ca, &ca.leaf(&["a"], 1))).unwrap();
    // The intruder trusts our CA, so only the acceptor's check stands in its way.
    let intruder =
        ReloadingMeshConfig::new(mesh_config(dir.path(), "x", &ca, &other.leaf(&["x"], 2)))
            .unwrap();
    let (addr, mut accepted) = spawn_echo_server(a.acceptor()).await;

    assert!(refused(dial(&intruder.connector(), addr, "127.0.0.1").await).await);
    assert!(matches!(
        next_accepted(&mut accepted).await,
        Err(AcceptError::Handshake { .. })
    ));
}

#[tokio::test]
async fn peer_serving_a_certificate_of_another_ca_is_refused_by_the_connector() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let other = Ca::new("another mesh");
    let a =
        ReloadingMeshConfig::new(mesh_config(dir.path(), "a", &ca, &ca.leaf(&["a"], 1))).unwrap();
    // An impostor that would accept us but whose own certificate is not ours.
    let impostor =
        ReloadingMeshConfig::new(mesh_config(dir.path(), "x", &ca, &other.leaf(&["x"], 2)))
            .unwrap();
    let (addr, _accepted) = spawn_echo_server(impostor.acceptor()).await;
    assert!(dial(&a.connector(), addr, "127.0.0.1").await.is_err());
}

#[tokio::test]
async fn peer_without_a_client_certificate_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let a = ReloadingMeshConfig::new(mesh_config(
        dir.path(),
        "a",
        &ca,
        &ca.leaf(&["node-a.mesh.invalid"], 1),
    ))
    .unwrap();
    let (addr, mut accepted) = spawn_echo_server(a.acceptor()).await;

    let ca_file = dir.path().join("anonymous-ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let anonymous = ReloadingClientConfig::new(ClientTlsConfig {
        ca_file,
        cert_file: None,
        key_file: None,
        server_name: Some("node-a.mesh.invalid".to_owned()),
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    })
    .unwrap();
    assert!(refused(dial(&anonymous.connector(), addr, "127.0.0.1").await).await);
    assert!(next_accepted(&mut accepted).await.is_err());
}

#[tokio::test]
async fn plaintext_peer_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let a =
        ReloadingMeshConfig::new(mesh_config(dir.path(), "a", &ca, &ca.leaf(&["a"], 1))).unwrap();
    let (addr, mut accepted) = spawn_echo_server(a.acceptor()).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(matches!(
        next_accepted(&mut accepted).await,
        Err(AcceptError::Handshake { .. })
    ));
}
