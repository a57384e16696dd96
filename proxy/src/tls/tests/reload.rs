//! Certificates reloaded from disk: new handshakes see the new certificate,
//! established connections keep working, broken files keep the old config, and
//! the watcher notices both rewritten files and Kubernetes-style symlink swaps.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    Ca, DEADLINE, Leaf, dial, echo, init, next_accepted, spawn_echo_server, wait_until,
    write_atomically,
};
use crate::tls::{
    BuildError, ClientAuth, ClientTlsConfig, DEFAULT_RELOAD_INTERVAL, MeshTlsConfig, PemError,
    ReloadStats, ReloadingClientConfig, ReloadingMeshConfig, ReloadingServerConfig,
    ServerTlsConfig, TlsConnector, server_certificate,
};

const FAST_POLL: Duration = Duration::from_millis(50);

fn server_config(cert_file: PathBuf, key_file: PathBuf) -> ServerTlsConfig {
    ServerTlsConfig {
        cert_file,
        key_file,
        client_ca_file: None,
        client_auth: ClientAuth::Off,
        reload_interval: FAST_POLL,
    }
}

/// A client that trusts `ca`, with no certificate of its own.
fn trusting_client(dir: &Path, ca: &Ca) -> TlsConnector {
    let ca_file = dir.join("client-ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    ReloadingClientConfig::new(ClientTlsConfig {
        ca_file,
        cert_file: None,
        key_file: None,
        server_name: None,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    })
    .unwrap()
    .connector()
}

/// The certificate a brand-new connection to `addr` is served.
async fn served_certificate(
    client: &TlsConnector,
    addr: std::net::SocketAddr,
) -> rustls_pki_types::CertificateDer<'static> {
    let mut tls = dial(client, addr, "localhost").await.unwrap();
    echo(&mut tls, b"hello").await.unwrap();
    server_certificate(&tls).unwrap()
}

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_connections_only() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("servers");
    let (old, new) = (ca.leaf(&["localhost"], 100), ca.leaf(&["localhost"], 200));
    let (cert, key) = old.write_to(dir.path());
    let server = ReloadingServerConfig::new(server_config(cert, key)).unwrap();
    let (addr, _accepted) = spawn_echo_server(server.acceptor()).await;
    let client = trusting_client(dir.path(), &ca);

    let mut established = dial(&client, addr, "localhost").await.unwrap();
    echo(&mut established, b"before").await.unwrap();
    assert_eq!(server_certificate(&established), Some(old.der.clone()));

    new.write_to(dir.path());
    server.reload().unwrap();
    assert_eq!(
        server.stats(),
        ReloadStats {
            reloads: 1,
            failures: 0
        }
    );

    assert_eq!(served_certificate(&client, addr).await, new.der);
    // The connection made before the swap keeps its session and its certificate.
    echo(&mut established, b"after the swap").await.unwrap();
    assert_eq!(server_certificate(&established), Some(old.der));
}

#[tokio::test]
async fn broken_or_mismatched_files_keep_the_old_certificate() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("servers");
    let (old, new) = (ca.leaf(&["localhost"], 100), ca.leaf(&["localhost"], 200));
    let (cert, key) = old.write_to(dir.path());
    let server = ReloadingServerConfig::new(server_config(cert.clone(), key.clone())).unwrap();
    let (addr, _accepted) = spawn_echo_server(server.acceptor()).await;
    let client = trusting_client(dir.path(), &ca);

    // A certificate file caught half-written.
    write_atomically(&cert, &new.cert_pem[..new.cert_pem.len() / 2]);
    match server.reload() {
        Err(BuildError::Pem(PemError::Malformed { path, .. })) => assert_eq!(path, cert),
        other => panic!("expected a malformed-PEM error naming {cert:?}, got {other:?}"),
    }
    // Unchanged files are not retried by the watcher: one warning, not one per poll.
    assert!(server.reload_if_changed().is_none());

    // The new certificate is in place but the key is still the old one.
    write_atomically(&cert, &new.cert_pem);
    match server.reload_if_changed() {
        Some(Err(BuildError::Pem(PemError::KeyMismatch { cert: c, key: k }))) => {
            assert_eq!((c, k), (cert.clone(), key.clone()));
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }

    // A key file that holds no key.
    write_atomically(&key, "not a key\n");
    assert!(matches!(
        server.reload(),
        Err(BuildError::Pem(PemError::NoKey { .. }))
    ));

    assert_eq!(
        server.stats(),
        ReloadStats {
            reloads: 0,
            failures: 3
        }
    );
    assert_eq!(served_certificate(&client, addr).await, old.der);

    // Once both files are whole again, the next change is picked up.
    write_atomically(&key, &new.key_pem);
    assert!(matches!(server.reload_if_changed(), Some(Ok(()))));
    assert_eq!(served_certificate(&client, addr).await, new.der);
}

#[tokio::test]
async fn watcher_picks_up_rewritten_files_and_stops_on_cancel() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("servers");
    let (old, new) = (ca.leaf(&["localhost"], 100), ca.leaf(&["localhost"], 200));
    let (cert, key) = old.write_to(dir.path());
    let server = ReloadingServerConfig::new(server_config(cert, key)).unwrap();
    let cancel = CancellationToken::new();
    let watcher = server.spawn_watcher(cancel.clone());
    let (addr, _accepted) = spawn_echo_server(server.acceptor()).await;
    let client = trusting_client(dir.path(), &ca);
    let mut established = dial(&client, addr, "localhost").await.unwrap();
    echo(&mut established, b"before").await.unwrap();

    new.write_to(dir.path());
    wait_until("the watcher to reload", || server.stats().reloads >= 1).await;
    assert_eq!(served_certificate(&client, addr).await, new.der);
    echo(&mut established, b"after").await.unwrap();

    cancel.cancel();
    tokio::time::timeout(DEADLINE, watcher)
        .await
        .expect("watcher did not stop")
        .unwrap();
}

/// Lays out files the way a Kubernetes Secret volume does: `tls.crt` ->
/// `..data/tls.crt`, `..data` -> `..<version>`, and an update repoints `..data`.
fn publish_secret_version(dir: &Path, version: &str, leaf: &Leaf) {
    let version_dir = dir.join(version);
    std::fs::create_dir(&version_dir).unwrap();
    leaf.write_to(&version_dir);
    let staged = dir.join("..data_tmp");
    symlink(version, &staged).unwrap();
    // rename(2) replaces the old `..data` symlink atomically.
    std::fs::rename(&staged, dir.join("..data")).unwrap();
}

/// Appends newlines (ignored by PEM parsing) to the shorter of two PEM texts.
fn pad_to_same_length(a: &mut String, b: &mut String) {
    let len = a.len().max(b.len());
    for pem in [a, b] {
        while pem.len() < len {
            pem.push('\n');
        }
    }
}

#[tokio::test]
async fn watcher_detects_a_secret_volume_symlink_swap() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let ca = Ca::new("servers");
    let (mut old, mut new) = (ca.leaf(&["localhost"], 100), ca.leaf(&["localhost"], 200));
    // Make the two versions alike in size and (below) mtime, so that only the
    // resolved file's inode tells them apart, as can happen with a fast rotation.
    pad_to_same_length(&mut old.cert_pem, &mut new.cert_pem);
    pad_to_same_length(&mut old.key_pem, &mut new.key_pem);
    publish_secret_version(&volume, "..2026_11_27_09_00_00.1", &old);
    symlink("..data/tls.crt", volume.join("tls.crt")).unwrap();
    symlink("..data/tls.key", volume.join("tls.key")).unwrap();

    let server = ReloadingServerConfig::new(server_config(
        volume.join("tls.crt"),
        volume.join("tls.key"),
    ))
    .unwrap();
    let cancel = CancellationToken::new();
    let _watcher = server.spawn_watcher(cancel.clone());
    let (addr, _accepted) = spawn_echo_server(server.acceptor()).await;
    let client = trusting_client(dir.path(), &ca);
    assert_eq!(served_certificate(&client, addr).await, old.der);

    publish_secret_version(&volume, "..2026_11_27_10_00_00.2", &new);
    for file in ["tls.crt", "tls.key"] {
        let old_file = volume.join("..2026_11_27_09_00_00.1").join(file);
        let mtime = std::fs::metadata(&old_file).unwrap().modified().unwrap();
        let new_file = std::fs::File::options()
            .write(true)
            .open(volume.join(file))
            .unwrap();
        new_file.set_modified(mtime).unwrap();
        assert_eq!(
            std::fs::metadata(volume.join(file)).unwrap().len(),
            std::fs::metadata(&old_file).unwrap().len()
        );
    }
    wait_until("the watcher to follow the symlink swap", || {
        server.stats().reloads >= 1
    })
    .await;
    assert_eq!(served_certificate(&client, addr).await, new.der);
    assert_eq!(server.stats().failures, 0);
    cancel.cancel();
}

#[tokio::test]
async fn reloaded_client_certificate_is_presented_on_new_connections() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backends");
    let server_leaf = ca.leaf(&["localhost"], 1);
    let server_dir = dir.path().join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let (cert_file, key_file) = server_leaf.write_to(&server_dir);
    let client_ca_file = server_dir.join("ca.crt");
    std::fs::write(&client_ca_file, &ca.pem).unwrap();
    let server = ReloadingServerConfig::new(ServerTlsConfig {
        cert_file,
        key_file,
        client_ca_file: Some(client_ca_file.clone()),
        client_auth: ClientAuth::Required,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    })
    .unwrap();
    let (addr, mut accepted) = spawn_echo_server(server.acceptor()).await;

    let client_dir = dir.path().join("client");
    std::fs::create_dir(&client_dir).unwrap();
    let (old, new) = (ca.leaf(&["proxy"], 10), ca.leaf(&["proxy"], 20));
    let (cert_file, key_file) = old.write_to(&client_dir);
    let client = ReloadingClientConfig::new(ClientTlsConfig {
        ca_file: client_ca_file,
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        server_name: None,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    })
    .unwrap();
    let connector = client.connector();

    let mut established = dial(&connector, addr, "localhost").await.unwrap();
    echo(&mut established, b"one").await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await.unwrap(), Some(old.der));

    new.write_to(&client_dir);
    assert!(matches!(client.reload_if_changed(), Some(Ok(()))));
    let mut fresh = dial(&connector, addr, "localhost").await.unwrap();
    echo(&mut fresh, b"two").await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await.unwrap(), Some(new.der));
    echo(&mut established, b"still one").await.unwrap();
}

#[tokio::test]
async fn mesh_reload_swaps_the_identity_on_both_sides() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let node = |name: &str, leaf: &Leaf| {
        let node_dir = dir.path().join(name);
        std::fs::create_dir_all(&node_dir).unwrap();
        let (cert_file, key_file) = leaf.write_to(&node_dir);
        MeshTlsConfig {
            ca_file: ca_file.clone(),
            cert_file,
            key_file,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    };
    let (a_old, a_new) = (ca.leaf(&["a"], 1), ca.leaf(&["a"], 2));
    let a = ReloadingMeshConfig::new(node("a", &a_old)).unwrap();
    let b = ReloadingMeshConfig::new(node("b", &ca.leaf(&["b"], 3))).unwrap();
    let (a_addr, _a_accepted) = spawn_echo_server(a.acceptor()).await;
    let (b_addr, mut b_accepted) = spawn_echo_server(b.acceptor()).await;

    node("a", &a_new);
    a.reload().unwrap();

    // As a server, a now serves the new certificate ...
    let mut tls = dial(&b.connector(), a_addr, "127.0.0.1").await.unwrap();
    echo(&mut tls, b"to a").await.unwrap();
    assert_eq!(server_certificate(&tls), Some(a_new.der.clone()));
    // ... and as a client it presents the same new certificate.
    let mut tls = dial(&a.connector(), b_addr, "127.0.0.1").await.unwrap();
    echo(&mut tls, b"to b").await.unwrap();
    assert_eq!(
        next_accepted(&mut b_accepted).await.unwrap(),
        Some(a_new.der)
    );
}
