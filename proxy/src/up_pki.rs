//! Throwaway certificates for `remesh-proxy up --mesh-tls` and `up --tls`: a mesh CA
//! that signs one certificate per node (for the peer ports), and with `--tls` a
//! separate client CA that signs the listeners' certificate (SANs `127.0.0.1` and
//! `localhost`, what Bazel checks) and one client certificate. Everything is written into `up`'s data directory and dies with it;
//! this is for trying TLS on one machine, never for a real deployment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Whether `up`'s listeners ask Bazel for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpClientAuth {
    Off,
    Optional,
    Required,
}

struct Authority {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> anyhow::Result<(Self, PathBuf)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("remesh up {name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&file, cert.pem()).with_context(|| format!("writing {}", file.display()))?;
        Ok((
            Self {
                issuer: Issuer::new(params, key),
                dir: dir.to_owned(),
            },
            file,
        ))
    }

    /// A leaf for server and client use; returns (certificate, key) files.
    fn leaf(&self, name: &str, sans: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_file = self.dir.join(format!("{name}.crt"));
        let key_file = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem())?;
        crate::up::write_secret(&key_file, &key.serialize_pem())?;
        Ok((cert_file, key_file))
    }
}

/// What `up --mesh-tls` / `up --tls` generated: flags per proxy and flags for Bazel.
pub struct UpPki {
    node_flags: Vec<Vec<OsString>>,
    pub bazel_flags: Vec<String>,
}

impl UpPki {
    /// Writes the mesh CA and one mesh certificate per node into `dir/tls`, and
    /// with `client_tls` the client CA, the listeners' certificate and, unless
    /// client auth is off, a client certificate for Bazel.
    pub fn generate(
        dir: &Path,
        nodes: usize,
        client_tls: Option<UpClientAuth>,
    ) -> anyhow::Result<Self> {
        let dir = dir.join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (mesh, mesh_ca) = Authority::new(&dir, "mesh")?;
        let mut common: Vec<OsString> = vec!["--mesh-tls-ca-file".into(), mesh_ca.into()];
        let mut bazel_flags = Vec::new();
        if let Some(client_auth) = client_tls {
            let (clients, client_ca) = Authority::new(&dir, "client")?;
            let (server_cert, server_key) =
                clients.leaf("listener", &["127.0.0.1", "localhost"])?;
            bazel_flags.push(format!("--tls_certificate={}", client_ca.display()));
            let auth = match client_auth {
                UpClientAuth::Off => "off",
                UpClientAuth::Optional => "optional",
                UpClientAuth::Required => "required",
            };
            common.extend([
                "--tls-cert-file".into(),
                server_cert.into(),
                "--tls-key-file".into(),
                server_key.into(),
                "--tls-client-auth".into(),
                auth.into(),
            ]);
            if client_auth != UpClientAuth::Off {
                let (cert, key) = clients.leaf("bazel-client", &[])?;
                bazel_flags.push(format!("--tls_client_certificate={}", cert.display()));
                bazel_flags.push(format!("--tls_client_key={}", key.display()));
                common.extend(["--tls-client-ca-file".into(), client_ca.into()]);
            }
        }
        let mut node_flags = Vec::new();
        for index in 0..nodes {
            let (cert, key) = mesh.leaf(&format!("mesh-node-{index}"), &[])?;
            let mut flags = common.clone();
            flags.extend([
                "--mesh-tls-cert-file".into(),
                cert.into(),
                "--mesh-tls-key-file".into(),
                key.into(),
            ]);
            node_flags.push(flags);
        }
        Ok(Self {
            node_flags,
            bazel_flags,
        })
    }

    /// The TLS flags of node `index`'s proxy.
    pub fn node_flags(&self, index: usize) -> &[OsString] {
        self.node_flags.get(index).map_or(&[], Vec::as_slice)
    }
}
