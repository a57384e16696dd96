//! The client listener and the backend connector: server TLS with optional or
//! required client certificates, and client TLS checked by name.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Ca, DEADLINE, Leaf, dial, echo, init, next_accepted, spawn_echo_server};
use crate::tls::{
    ALPN_H2, AcceptError, ClientAuth, ClientTlsConfig, DEFAULT_RELOAD_INTERVAL,
    ReloadingClientConfig, ReloadingServerConfig, ServerTlsConfig, server_certificate,
};

fn server_config(dir: &Path, ca: &Ca, leaf: &Leaf, client_auth: ClientAuth) -> ServerTlsConfig {
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let (cert_file, key_file) = leaf.write_to(&server_dir);
    let client_ca_file = (client_auth != ClientAuth::Off).then(|| {
        let path = server_dir.join("client-ca.crt");
        std::fs::write(&path, &ca.pem).unwrap();
        path
    });
    ServerTlsConfig {
        cert_file,
        key_file,
        client_ca_file,
        client_auth,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    }
}

fn client_config(dir: &Path, name: &str, ca: &Ca, leaf: Option<&Leaf>) -> ClientTlsConfig {
    let client_dir = dir.join(name);
    std::fs::create_dir_all(&client_dir).unwrap();
    let ca_file = client_dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (cert_file, key_file) = match leaf.map(|l| l.write_to(&client_dir)) {
        Some((cert, key)) => (Some(cert), Some(key)),
        None => (None, None),
    };
    ClientTlsConfig {
        ca_file,
        cert_file,
        key_file,
        server_name: None,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    }
}

#[tokio::test]
async fn mutual_tls_handshake_works_and_each_side_sees_the_others_certificate() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("clients and servers");
    let server_leaf = ca.leaf(&["localhost"], 1);
    let client_leaf = ca.leaf(&["bazel-client"], 2);
    let server = ReloadingServerConfig::new(server_config(
        dir.path(),
        &ca,
        &server_leaf,
        ClientAuth::Required,
    ))
    .unwrap();
    let client =
        ReloadingClientConfig::new(client_config(dir.path(), "c", &ca, Some(&client_leaf)))
            .unwrap();
    let (addr, mut accepted) = spawn_echo_server(server.acceptor()).await;

    let mut tls = dial(&client.connector(), addr, "localhost").await.unwrap();
    echo(&mut tls, b"ping").await.unwrap();

    assert_eq!(server_certificate(&tls), Some(server_leaf.der.clone()));
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
    let seen_by_server = next_accepted(&mut accepted).await.unwrap();
    assert_eq!(seen_by_server, Some(client_leaf.der.clone()));
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let other = Ca::new("somebody else");
    let server_leaf = ca.leaf(&["localhost"], 1);
    let stranger = other.leaf(&["stranger"], 2);
    let server = ReloadingServerConfig::new(server_config(
        dir.path(),
        &ca,
        &server_leaf,
        ClientAuth::Required,
    ))
    .unwrap();
    // The stranger trusts the server; only the server's check can refuse it.
    let client =
        ReloadingClientConfig::new(client_config(dir.path(), "c", &ca, Some(&stranger))).unwrap();
    let (addr, mut accepted) = spawn_echo_server(server.acceptor()).await;

    // With TLS 1.3 the client finishes first and learns of the refusal on use.
    let outcome = match dial(&client.connector(), addr, "localhost").await {
        Ok(mut tls) => echo(&mut tls, b"ping").await,
        Err(err) => Err(std::io::Error::other(err)),
    };
    assert!(
        outcome.is_err(),
        "a stranger's connection must not carry data"
    );
    let refused = next_accepted(&mut accepted).await;
    assert!(
        matches!(refused, Err(AcceptError::Handshake { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused_when_required_and_accepted_when_optional() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("clients and servers");
    let server_leaf = ca.leaf(&["localhost"], 1);
    let anonymous = ReloadingClientConfig::new(client_config(dir.path(), "c", &ca, None)).unwrap();

    let required = ReloadingServerConfig::new(server_config(
        &dir.path().join("required"),
        &ca,
        &server_leaf,
        ClientAuth::Required,
    ))
    .unwrap();
    let (addr, mut accepted) = spawn_echo_server(required.acceptor()).await;
    let outcome = match dial(&anonymous.connector(), addr, "localhost").await {
        Ok(mut tls) => echo(&mut tls, b"ping").await,
        Err(err) => Err(std::io::Error::other(err)),
    };
    assert!(outcome.is_err());
    assert!(next_accepted(&mut accepted).await.is_err());

    let optional = ReloadingServerConfig::new(server_config(
        &dir.path().join("optional"),
        &ca,
        &server_leaf,
        ClientAuth::Optional,
    ))
    .unwrap();
    let (addr, mut accepted) = spawn_echo_server(optional.acceptor()).await;
    let mut tls = dial(&anonymous.connector(), addr, "localhost")
        .await
        .unwrap();
    echo(&mut tls, b"ping").await.unwrap();
    assert_eq!(next_accepted(&mut accepted).await.unwrap(), None);

    // Optional still means "verified if presented".
    let stranger = Ca::new("somebody else").leaf(&["stranger"], 3);
    let stranger =
        ReloadingClientConfig::new(client_config(dir.path(), "s", &ca, Some(&stranger))).unwrap();
    let outcome = match dial(&stranger.connector(), addr, "localhost").await {
        Ok(mut tls) => echo(&mut tls, b"ping").await,
        Err(err) => Err(std::io::Error::other(err)),
    };
    assert!(outcome.is_err());
    assert!(next_accepted(&mut accepted).await.is_err());
}

#[tokio::test]
async fn plaintext_http2_client_is_refused_without_harm() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("servers");
    let leaf = ca.leaf(&["localhost"], 1);
    let server =
        ReloadingServerConfig::new(server_config(dir.path(), &ca, &leaf, ClientAuth::Off)).unwrap();
    let (addr, mut accepted) = spawn_echo_server(server.acceptor()).await;

    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let refused = next_accepted(&mut accepted).await;
    assert!(
        matches!(refused, Err(AcceptError::Handshake { .. })),
        "{refused:?}"
    );
    // The server closes the connection: reading ends (alert bytes, then EOF or reset).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "server kept a refused connection open");

    // And it keeps serving TLS clients afterwards.
    let client = ReloadingClientConfig::new(client_config(dir.path(), "c", &ca, None)).unwrap();
    let mut tls = dial(&client.connector(), addr, "localhost").await.unwrap();
    echo(&mut tls, b"still there").await.unwrap();
}

#[tokio::test]
async fn client_checks_the_server_name_unless_one_is_configured() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backends");
    let leaf = ca.leaf(&["cache.internal"], 1);
    let server =
        ReloadingServerConfig::new(server_config(dir.path(), &ca, &leaf, ClientAuth::Off)).unwrap();
    let (addr, _accepted) = spawn_echo_server(server.acceptor()).await;

    // Dialled by IP, the certificate (no IP SAN) does not match.
    let by_address = ReloadingClientConfig::new(client_config(dir.path(), "a", &ca, None)).unwrap();
    assert!(
        dial(&by_address.connector(), addr, "127.0.0.1")
            .await
            .is_err()
    );

    // With server_name set, the certificate is checked against that name instead.
    let mut config = client_config(dir.path(), "b", &ca, None);
    config.server_name = Some("cache.internal".to_owned());
    let by_name = ReloadingClientConfig::new(config).unwrap();
    let mut tls = dial(&by_name.connector(), addr, "127.0.0.1").await.unwrap();
    echo(&mut tls, b"ping").await.unwrap();
}

#[tokio::test]
async fn server_certificate_from_an_unknown_ca_is_refused_by_the_client() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let impostor_ca = Ca::new("impostor");
    let leaf = impostor_ca.leaf(&["localhost"], 1);
    let server = ReloadingServerConfig::new(server_config(
        dir.path(),
        &impostor_ca,
        &leaf,
        ClientAuth::Off,
    ))
    .unwrap();
    let (addr, _accepted) = spawn_echo_server(server.acceptor()).await;
    let trusted = Ca::new("the real one");
    let client =
        ReloadingClientConfig::new(client_config(dir.path(), "c", &trusted, None)).unwrap();
    assert!(dial(&client.connector(), addr, "localhost").await.is_err());
}

#[tokio::test]
async fn a_client_that_never_speaks_times_out() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("servers");
    let leaf = ca.leaf(&["localhost"], 1);
    let server =
        ReloadingServerConfig::new(server_config(dir.path(), &ca, &leaf, ClientAuth::Off)).unwrap();
    let acceptor = server
        .acceptor()
        .with_handshake_timeout(Duration::from_millis(200));
    let (addr, mut accepted) = spawn_echo_server(acceptor).await;
    let _silent = TcpStream::connect(addr).await.unwrap();
    let outcome = next_accepted(&mut accepted).await;
    assert!(
        matches!(outcome, Err(AcceptError::Timeout { .. })),
        "{outcome:?}"
    );
}
