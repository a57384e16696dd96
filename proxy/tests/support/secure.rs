//! Certificates, keyrings and `remesh-proxy serve` processes for the mesh security
//! tests. CAs and leaves are generated with rcgen at test time into a temporary
//! directory; every process is killed by pid when its guard drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use remesh_proto::longrunning::Operation;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proxy::ReadyLine;
use remesh_proxy::load::LoadRecord;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Streaming;
use tonic::transport::Channel;

use super::eventually;
use super::fake_backend::FakeBackend;
use super::processes::{metric, proxy_binary};
use super::real::KillOnDrop;

/// A certificate authority written to `<dir>/<name>-ca.pem`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem_file: PathBuf,
    dir: PathBuf,
    name: String,
}

/// A leaf's certificate and key files.
#[derive(Clone)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let pem_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_file, cert.pem()).expect("writing CA");
        Self {
            issuer: Issuer::new(params, key),
            pem_file,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A leaf for TLS server and client use with the given SANs.
    pub fn leaf(&self, leaf: &str, sans: &[&str]) -> LeafFiles {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, leaf);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        let files = LeafFiles {
            cert: self.dir.join(format!("{}-{leaf}.crt", self.name)),
            key: self.dir.join(format!("{}-{leaf}.key", self.name)),
        };
        std::fs::write(&files.cert, cert.pem()).expect("writing leaf");
        std::fs::write(&files.key, key.serialize_pem()).expect("writing key");
        files
    }
}

/// A fresh keyring file at `path`.
pub fn keyring_file(path: &Path) -> PathBuf {
    let keyring = remesh_proxy::gossip_seal::Keyring::generate();
    std::fs::write(path, keyring.export_secret_text().as_bytes()).expect("writing keyring");
    path.to_owned()
}

/// One `remesh-proxy serve` process; SIGKILLed when dropped.
pub struct ServeProcess {
    pub ready: ReadyLine,
    pub log: PathBuf,
    _guard: KillOnDrop,
    _child: tokio::process::Child,
}

impl ServeProcess {
    /// Starts `serve` on loopback port 0 with `args` added; stderr goes to `log`.
    pub async fn start(node_id: &str, args: &[std::ffi::OsString], log: &Path) -> Self {
        let stderr = std::fs::File::create(log).expect("creating log file");
        let mut child = tokio::process::Command::new(proxy_binary())
            .args(["serve", "--node-id", node_id])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--gossip-listen", "127.0.0.1:0"])
            .args(["--join-interval", "500ms", "--load-heartbeat", "300ms"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("starting remesh-proxy serve");
        let guard = KillOnDrop {
            pids: vec![child.id().expect("pid")],
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{node_id}: no ready line in 60 s; see {}", log.display()))
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "{node_id} exited before its ready line: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        let ready: ReadyLine = serde_json::from_str(&line).expect("ready line");
        Self {
            ready,
            log: log.to_owned(),
            _guard: guard,
            _child: child,
        }
    }

    pub fn admin(&self) -> SocketAddr {
        self.ready.admin
    }

    /// The process id, for signals (it is this test's own child).
    pub fn pid(&self) -> u32 {
        self._guard.pids[0]
    }
}

/// Members in state `alive` in `admin`'s `/cluster` (0 when it does not answer).
pub async fn alive_members(admin: SocketAddr) -> usize {
    super::cluster(admin).await.map_or(0, |report| {
        report.members.iter().filter(|m| m.state == "alive").count()
    })
}

/// A plaintext (h2c) connection to a TLS-only port, bounded in time: the handshake
/// may fail, or succeed at the TCP level and leave every call to fail. Callers
/// check the calls when it connects.
pub async fn connect_plaintext(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a loopback URL")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

pub use super::fake_backend::execute_request;

/// Runs one Execute to its end; returns the last operation's name.
pub async fn execute_to_end(client: &mut ExecutionClient<Channel>, hash: &str) -> String {
    let mut stream = client
        .execute(execute_request("main", hash))
        .await
        .expect("Execute")
        .into_inner();
    let mut last = None;
    while let Some(operation) = stream.message().await.expect("operation stream") {
        last = Some(operation);
    }
    let last = last.expect("at least one operation");
    assert!(last.done, "{last:?}");
    last.name
}

/// Starts an Execute the fake backend keeps open (a busy runner); returns the
/// open stream and the operation's name. Dropping the stream frees the runner.
pub async fn hold(
    client: &mut ExecutionClient<Channel>,
    hash: &str,
) -> (Streaming<Operation>, String) {
    let mut stream = client
        .execute(execute_request("hold", hash))
        .await
        .expect("Execute (hold)")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("operation stream")
        .expect("a first operation");
    (stream, first.name)
}

/// Whether a member's load (as `report` sees it) leaves no room.
fn full(load: Option<LoadRecord>) -> bool {
    load.is_some_and(|l| l.queued + l.executing >= l.max_concurrency)
}

/// The mesh dialling a rogue member: one with the gossip key (so it is a member
/// the balancer may pick) but a mesh certificate from another CA.
///
/// `entry` must be full already. Each of `fill` (the other mesh nodes, with a
/// client on each) is held busy here, so that the rogue, idle with room, is the
/// entry node's first candidate: a mesh that trusted it would send the Execute
/// there. Its dial must fail the TLS handshake (counted as a failed forward to
/// the rogue, and as a refused handshake on the rogue's side), the Execute must
/// complete inside the mesh, and the rogue's backend must receive nothing.
/// Returns the held streams; dropping them frees the nodes.
pub async fn assert_mesh_never_forwards_to(
    rogue: &ServeProcess,
    rogue_backend: &FakeBackend,
    entry: &ServeProcess,
    entry_client: &mut ExecutionClient<Channel>,
    fill: Vec<(&ServeProcess, ExecutionClient<Channel>)>,
) -> Vec<Streaming<Operation>> {
    let rogue_id = rogue.ready.node_id.clone();
    let mut held = Vec::new();
    for (node, mut client) in fill {
        let id = &node.ready.node_id;
        let (stream, name) = hold(&mut client, &format!("fill-{id}")).await;
        assert!(
            name.starts_with(&format!("remesh/{id}/")),
            "an idle node keeps its own work: {name}"
        );
        held.push(stream);
    }
    eventually(
        "the entry node to see every mesh node full and the rogue idle",
        Duration::from_secs(30),
        || async {
            let report = super::cluster(entry.admin()).await?;
            let mut rogue_idle = false;
            for member in &report.members {
                if member.node_id == rogue_id {
                    rogue_idle = member.state == "alive"
                        && member
                            .load
                            .is_some_and(|l| l.queued + l.executing == 0 && l.max_concurrency > 0);
                } else if !full(member.load) {
                    return None;
                }
            }
            rogue_idle.then_some(())
        },
    )
    .await;
    let forwards = |outcome: &str| {
        format!("remesh_proxy_forwards_total{{peer=\"{rogue_id}\",outcome=\"{outcome}\"}}")
    };
    let refused = "remesh_proxy_tls_handshakes_total{outcome=\"refused\"}";
    let failed_before = metric(entry.admin(), &forwards("failed")).await;
    let refused_before = metric(rogue.admin(), refused).await;

    let name = execute_to_end(entry_client, "towards-the-rogue").await;
    assert!(
        !name.starts_with(&format!("remesh/{rogue_id}/")),
        "the rogue must not own an operation: {name}"
    );
    assert!(
        metric(entry.admin(), &forwards("failed")).await > failed_before,
        "the rogue was the first candidate and the dial to it failed"
    );
    assert_eq!(
        metric(entry.admin(), &forwards("accepted")).await,
        0.0,
        "no forward to the rogue was accepted"
    );
    eventually(
        "the rogue to count the refused handshake",
        Duration::from_secs(10),
        || async { (metric(rogue.admin(), refused).await > refused_before).then_some(()) },
    )
    .await;
    assert_eq!(
        rogue_backend.recorded.lock().unwrap().executes,
        0,
        "the rogue's backend received nothing"
    );
    held
}

/// A CA bundle at `path` holding every PEM of `cas`: what a rogue node trusts to
/// accept the mesh's certificates (the mesh CA's certificate is not secret), so
/// that only the mesh's own checks stand between it and the mesh.
pub fn ca_bundle(path: &Path, cas: &[&Ca]) -> PathBuf {
    let mut pem = String::new();
    for ca in cas {
        pem.push_str(&std::fs::read_to_string(&ca.pem_file).expect("reading a CA"));
    }
    std::fs::write(path, pem).expect("writing a CA bundle");
    path.to_owned()
}

/// Sends an Execute carrying a client-made `x-remesh-hop` header to `client` and
/// returns the name of its last operation: a proxy that honoured the header would
/// keep the action on the entry node however full it is.
pub async fn execute_with_forged_hop(client: &mut ExecutionClient<Channel>) -> String {
    let mut pinned = tonic::Request::new(execute_request("main", "pinned"));
    pinned.metadata_mut().insert(
        "x-remesh-hop",
        tonic::metadata::MetadataValue::from_static("1"),
    );
    let mut stream = client.execute(pinned).await.expect("Execute").into_inner();
    let mut last = None;
    while let Some(operation) = stream.message().await.expect("operation stream") {
        last = Some(operation.name);
    }
    last.expect("an operation")
}
