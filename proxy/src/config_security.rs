//! The security flags of `remesh-proxy serve`: the `[tls]`, `[mesh_tls]` and
//! `[backend_tls]` sections, `gossip_keyring` and `insecure_plaintext_gossip` as
//! flags and environment variables.
//!
//! Owns only how flags override the file: a flag changes one field of its
//! section; a section the file lacks is created from flags when its required
//! files are all given. Checking the result is `Config::validate`'s job.

use std::path::PathBuf;

use clap::Args;

use crate::config::{Config, ConfigError};
use crate::tls::{
    ClientAuth, ClientTlsConfig, DEFAULT_RELOAD_INTERVAL, MeshTlsConfig, ServerTlsConfig,
};

fn client_auth(text: &str) -> Result<ClientAuth, String> {
    match text {
        "off" => Ok(ClientAuth::Off),
        "optional" => Ok(ClientAuth::Optional),
        "required" => Ok(ClientAuth::Required),
        _ => Err("must be off, optional or required".into()),
    }
}

#[derive(Debug, Default, Args)]
pub struct SecurityArgs {
    /// `[tls] cert_file`: the client-facing certificate chain (PEM).
    #[arg(long, env = "REMESH_PROXY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// `[tls] key_file`.
    #[arg(long, env = "REMESH_PROXY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// `[tls] client_ca_file`: CAs client certificates must chain to.
    #[arg(long, env = "REMESH_PROXY_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// `[tls] client_auth`: off, optional or required.
    #[arg(long, env = "REMESH_PROXY_TLS_CLIENT_AUTH", value_parser = client_auth)]
    pub tls_client_auth: Option<ClientAuth>,
    /// `[mesh_tls] ca_file`: the private mesh CA.
    #[arg(long, env = "REMESH_PROXY_MESH_TLS_CA_FILE")]
    pub mesh_tls_ca_file: Option<PathBuf>,
    /// `[mesh_tls] cert_file`: this node's mesh certificate.
    #[arg(long, env = "REMESH_PROXY_MESH_TLS_CERT_FILE")]
    pub mesh_tls_cert_file: Option<PathBuf>,
    /// `[mesh_tls] key_file`.
    #[arg(long, env = "REMESH_PROXY_MESH_TLS_KEY_FILE")]
    pub mesh_tls_key_file: Option<PathBuf>,
    /// `[backend_tls] ca_file`, for a grpcs:// backend.
    #[arg(long, env = "REMESH_PROXY_BACKEND_TLS_CA_FILE")]
    pub backend_tls_ca_file: Option<PathBuf>,
    /// `[backend_tls] cert_file` (client certificate, optional).
    #[arg(long, env = "REMESH_PROXY_BACKEND_TLS_CERT_FILE")]
    pub backend_tls_cert_file: Option<PathBuf>,
    /// `[backend_tls] key_file`.
    #[arg(long, env = "REMESH_PROXY_BACKEND_TLS_KEY_FILE")]
    pub backend_tls_key_file: Option<PathBuf>,
    /// `[backend_tls] server_name`.
    #[arg(long, env = "REMESH_PROXY_BACKEND_TLS_SERVER_NAME")]
    pub backend_tls_server_name: Option<String>,
    /// The gossip keyring file.
    #[arg(long, env = "REMESH_PROXY_GOSSIP_KEYRING")]
    pub gossip_keyring: Option<PathBuf>,
    /// Gossip in plaintext (tests and private, encrypted networks only).
    #[arg(
        long,
        env = "REMESH_PROXY_INSECURE_PLAINTEXT_GOSSIP",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub insecure_plaintext_gossip: Option<bool>,
}

fn missing(field: &'static str, flag: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: format!("is needed to enable the section from flags; give --{flag}"),
    }
}

impl SecurityArgs {
    /// Overrides `config`'s security fields with the flags given.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        if self.tls_cert_file.is_some() || self.tls_key_file.is_some() {
            let tls = match config.tls.take() {
                Some(tls) => tls,
                None => ServerTlsConfig {
                    cert_file: self
                        .tls_cert_file
                        .clone()
                        .ok_or_else(|| missing("tls.cert_file", "tls-cert-file"))?,
                    key_file: self
                        .tls_key_file
                        .clone()
                        .ok_or_else(|| missing("tls.key_file", "tls-key-file"))?,
                    client_ca_file: None,
                    client_auth: ClientAuth::Off,
                    reload_interval: DEFAULT_RELOAD_INTERVAL,
                },
            };
            config.tls = Some(tls);
        }
        if let Some(tls) = &mut config.tls {
            set(&mut tls.cert_file, self.tls_cert_file);
            set(&mut tls.key_file, self.tls_key_file);
            if self.tls_client_ca_file.is_some() {
                tls.client_ca_file = self.tls_client_ca_file;
            }
            set(&mut tls.client_auth, self.tls_client_auth);
        }

        let mesh_given = [
            &self.mesh_tls_ca_file,
            &self.mesh_tls_cert_file,
            &self.mesh_tls_key_file,
        ]
        .iter()
        .any(|flag| flag.is_some());
        if mesh_given && config.mesh_tls.is_none() {
            config.mesh_tls = Some(MeshTlsConfig {
                ca_file: self
                    .mesh_tls_ca_file
                    .clone()
                    .ok_or_else(|| missing("mesh_tls.ca_file", "mesh-tls-ca-file"))?,
                cert_file: self
                    .mesh_tls_cert_file
                    .clone()
                    .ok_or_else(|| missing("mesh_tls.cert_file", "mesh-tls-cert-file"))?,
                key_file: self
                    .mesh_tls_key_file
                    .clone()
                    .ok_or_else(|| missing("mesh_tls.key_file", "mesh-tls-key-file"))?,
                reload_interval: DEFAULT_RELOAD_INTERVAL,
            });
        }
        if let Some(mesh) = &mut config.mesh_tls {
            set(&mut mesh.ca_file, self.mesh_tls_ca_file);
            set(&mut mesh.cert_file, self.mesh_tls_cert_file);
            set(&mut mesh.key_file, self.mesh_tls_key_file);
        }

        if let Some(ca_file) = self.backend_tls_ca_file.clone()
            && config.backend_tls.is_none()
        {
            config.backend_tls = Some(ClientTlsConfig {
                ca_file,
                cert_file: None,
                key_file: None,
                server_name: None,
                reload_interval: DEFAULT_RELOAD_INTERVAL,
            });
        }
        match &mut config.backend_tls {
            Some(backend) => {
                set(&mut backend.ca_file, self.backend_tls_ca_file);
                if self.backend_tls_cert_file.is_some() {
                    backend.cert_file = self.backend_tls_cert_file;
                }
                if self.backend_tls_key_file.is_some() {
                    backend.key_file = self.backend_tls_key_file;
                }
                if self.backend_tls_server_name.is_some() {
                    backend.server_name = self.backend_tls_server_name;
                }
            }
            None if self.backend_tls_cert_file.is_some()
                || self.backend_tls_key_file.is_some()
                || self.backend_tls_server_name.is_some() =>
            {
                return Err(missing("backend_tls.ca_file", "backend-tls-ca-file"));
            }
            None => {}
        }

        if self.gossip_keyring.is_some() {
            config.gossip_keyring = self.gossip_keyring;
        }
        set(
            &mut config.insecure_plaintext_gossip,
            self.insecure_plaintext_gossip,
        );
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Config, ServeArgs};

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["serve", "--node-id", "n"];
        argv.extend_from_slice(args);
        ServeArgs::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_config()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_build_the_sections() {
        let config = parse(&[
            "--tls-cert-file",
            "s.crt",
            "--tls-key-file",
            "s.key",
            "--tls-client-ca-file",
            "ca.pem",
            "--tls-client-auth",
            "required",
            "--mesh-tls-ca-file",
            "m.pem",
            "--mesh-tls-cert-file",
            "m.crt",
            "--mesh-tls-key-file",
            "m.key",
            "--gossip-keyring",
            "keyring",
        ])
        .unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.client_auth, crate::tls::ClientAuth::Required);
        assert_eq!(
            config.mesh_tls.as_ref().unwrap().key_file,
            std::path::Path::new("m.key")
        );
        config.check_security_at_start().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        for (args, field) in [
            (&["--tls-cert-file", "s.crt"][..], "tls.key_file:"),
            (&["--mesh-tls-ca-file", "m.pem"][..], "mesh_tls.cert_file:"),
            (&["--backend", "grpcs://cache:443"][..], "backend_tls:"),
            (
                &["--gossip-keyring", "k", "--insecure-plaintext-gossip"][..],
                "insecure_plaintext_gossip:",
            ),
            (
                &[
                    "--tls-cert-file",
                    "a",
                    "--tls-key-file",
                    "b",
                    "--tls-client-auth",
                    "required",
                ][..],
                "tls:",
            ),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn a_node_needs_a_keyring_or_the_explicit_opt_in() {
        let config = parse(&[]).unwrap();
        let error = config.check_security_at_start().unwrap_err().to_string();
        assert!(error.starts_with("gossip_keyring:"), "{error}");
        let config = parse(&["--insecure-plaintext-gossip"]).unwrap();
        config.check_security_at_start().unwrap();
        let half = parse(&[
            "--insecure-plaintext-gossip",
            "--tls-cert-file",
            "a",
            "--tls-key-file",
            "b",
        ])
        .unwrap();
        let error = half.check_security_at_start().unwrap_err().to_string();
        assert!(error.starts_with("mesh_tls:"), "{error}");
    }
}
