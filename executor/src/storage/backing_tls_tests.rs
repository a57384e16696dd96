//! The backing cache over mutual TLS: a second in-process node's storage services
//! behind tonic's `ServerTlsConfig` (client certificates required) on 127.0.0.1:0,
//! with certificates made for the test in a temporary directory.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::StorageError;
use crate::digest::BlobDigest;
use crate::service::test_support::TestStorage;

/// A certificate authority that signs leaf certificates.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A (certificate PEM, key PEM) pair for `names`, usable as `purpose`.
    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The PKI of one test: the backing cache's CA, its server certificate (named
/// `cache.test`, not the address dialled), a client certificate from the same CA, and
/// an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    server: (String, String),
    client: (PathBuf, PathBuf),
    ca_file: PathBuf,
    wrong_ca_file: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("remesh test backing CA");
        let server = ca.leaf(&["cache.test"], ExtendedKeyUsagePurpose::ServerAuth);
        let (cert, key) = ca.leaf(&["executor.test"], ExtendedKeyUsagePurpose::ClientAuth);
        let client = (
            write(dir.path(), "client.pem", &cert),
            write(dir.path(), "client.key", &key),
        );
        let ca_file = write(dir.path(), "ca.pem", &ca.pem);
        let wrong_ca_file = write(
            dir.path(),
            "wrong-ca.pem",
            &TestCa::new("someone else's CA").pem,
        );
        Self {
            dir,
            ca,
            server,
            client,
            ca_file,
            wrong_ca_file,
        }
    }

    /// Serves `backing`'s storage services over TLS that requires a client certificate
    /// signed by this PKI's CA.
    async fn serve(&self, backing: &TestStorage) -> (std::net::SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.server.0, &self.server.1))
            .client_ca_root(Certificate::from_pem(&self.ca.pem));
        let stop = CancellationToken::new();
        let routes =
            crate::service::storage_routes(&backing.config, &backing.cas, &backing.action_cache);
        let server = Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        (addr, stop)
    }
}

/// A node whose backing cache is `grpcs://addr`, trusting `ca_file`, presenting
/// `client` if given.
async fn node(
    addr: std::net::SocketAddr,
    ca_file: &Path,
    client: Option<&(PathBuf, PathBuf)>,
) -> TestStorage {
    TestStorage::open_with(|config| {
        config.backing_cache = Some(format!("grpcs://{addr}"));
        config.backing_ca_file = Some(ca_file.to_owned());
        config.backing_cert_file = client.map(|(cert, _)| cert.clone());
        config.backing_key_file = client.map(|(_, key)| key.clone());
        config.backing_tls_server_name = Some("cache.test".into());
        config.validate().expect("a valid TLS configuration");
    })
    .await
}

fn blob(len: usize, seed: u8) -> (BlobDigest, Bytes) {
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    (BlobDigest::of_bytes(&data), Bytes::from(data))
}

/// The backing cache's status inside a failed write, checked to be UNAVAILABLE both
/// there and at the gRPC edge.
fn assert_unavailable(result: Result<(), StorageError>, what: &str) -> tonic::Status {
    let status = match result {
        Err(StorageError::Backing(status)) => status,
        other => panic!("{what}: expected a backing-cache error, got {other:?}"),
    };
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{what}: {status:?}"
    );
    let edge = tonic::Status::from(StorageError::Backing(status.clone()));
    assert_eq!(edge.code(), tonic::Code::Unavailable);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_go_through_mutual_tls() {
    let pki = Pki::new();
    let backing = TestStorage::open().await;
    let (addr, _stop) = pki.serve(&backing).await;
    let node = node(addr, &pki.ca_file, Some(&pki.client)).await;

    // Write-through, both the batch path and the ByteStream path.
    let (small, small_data) = blob(1000, 3);
    node.cas.write_bytes(&small, small_data).await.unwrap();
    let (large, large_data) = blob(2_500_000, 7);
    node.cas
        .write_bytes(&large, large_data.clone())
        .await
        .unwrap();
    assert!(backing.cas.contains_local(&small));
    assert_eq!(
        backing.cas.read_bytes(&large).await.unwrap(),
        Some(large_data)
    );

    // Read-through of a blob only the backing cache has.
    let (remote, remote_data) = blob(300_000, 11);
    backing
        .cas
        .write_bytes(&remote, remote_data.clone())
        .await
        .unwrap();
    assert!(!node.cas.contains_local(&remote));
    assert_eq!(
        node.cas.read_bytes(&remote).await.unwrap(),
        Some(remote_data)
    );
    assert!(node.cas.contains_local(&remote));
    assert_eq!(
        node.cas
            .find_missing(&[small.clone(), remote])
            .await
            .unwrap(),
        Vec::<BlobDigest>::new()
    );
    drop(pki.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backing_cache_signed_by_another_ca_is_unavailable() {
    let pki = Pki::new();
    let backing = TestStorage::open().await;
    let (addr, _stop) = pki.serve(&backing).await;
    let node = node(addr, &pki.wrong_ca_file, Some(&pki.client)).await;

    let (digest, data) = blob(1000, 5);
    let status = assert_unavailable(
        node.cas.write_bytes(&digest, data).await,
        "untrusted server",
    );
    assert!(!backing.cas.contains_local(&digest), "{status:?}");
    let (remote, remote_data) = blob(2000, 9);
    backing.cas.write_bytes(&remote, remote_data).await.unwrap();
    match node.cas.read_bytes(&remote).await {
        Err(StorageError::Backing(status)) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }
        other => panic!("read through an untrusted server: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_client_certificate_is_refused() {
    let pki = Pki::new();
    let backing = TestStorage::open().await;
    let (addr, _stop) = pki.serve(&backing).await;
    let node = node(addr, &pki.ca_file, None).await;

    // With TLS 1.3 the server refuses the missing certificate after the client's side
    // of the handshake is done, so tonic sees the refusal on the first request: as
    // UNKNOWN "transport error" when the alert is read, CANCELLED when the closed
    // connection is noticed first. Either way the CAS edge answers UNAVAILABLE.
    let (digest, data) = blob(1000, 13);
    let status = match node.cas.write_bytes(&digest, data).await {
        Err(StorageError::Backing(status)) => status,
        other => panic!("expected a backing-cache error, got {other:?}"),
    };
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
        ) && format!("{status:?}").contains("Transport"),
        "{status:?}"
    );
    let edge = tonic::Status::from(StorageError::Backing(status));
    assert_eq!(edge.code(), tonic::Code::Unavailable);
    assert!(!backing.cas.contains_local(&digest));
}

#[tokio::test]
async fn an_unreadable_tls_file_fails_at_open() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("absent.pem");
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config {
        data_dir: dir.path().to_owned(),
        backing_cache: Some("grpcs://127.0.0.1:1".into()),
        backing_ca_file: Some(missing),
        ..crate::config::Config::default()
    };
    let error = super::Cas::open(&config, crate::metrics::Metrics::new())
        .await
        .err()
        .expect("a missing CA file must fail");
    assert!(error.to_string().contains("backing_ca_file"), "{error}");
}

#[tokio::test]
async fn a_ca_file_without_certificates_fails_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "not a certificate\n");
    let config = crate::config::Config {
        data_dir: dir.path().join("data"),
        backing_cache: Some("grpcs://127.0.0.1:1".into()),
        backing_ca_file: Some(ca),
        ..crate::config::Config::default()
    };
    let error = super::Cas::open(&config, crate::metrics::Metrics::new())
        .await
        .err()
        .expect("a CA file without a certificate must fail");
    assert!(error.to_string().contains("backing_ca_file"), "{error}");
}

#[tokio::test]
async fn a_key_file_without_a_key_fails_at_open() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config {
        data_dir: dir.path().join("data"),
        backing_cache: Some("grpcs://127.0.0.1:1".into()),
        backing_ca_file: Some(pki.ca_file.clone()),
        backing_cert_file: Some(pki.client.0.clone()),
        // A certificate where the key should be.
        backing_key_file: Some(pki.client.0.clone()),
        ..crate::config::Config::default()
    };
    let error = super::Cas::open(&config, crate::metrics::Metrics::new())
        .await
        .err()
        .expect("a key file without a key must fail");
    assert!(error.to_string().contains("backing_key_file"), "{error}");
}
