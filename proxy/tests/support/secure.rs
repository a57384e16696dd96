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
use remesh_proxy::ReadyLine;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::processes::proxy_binary;
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
