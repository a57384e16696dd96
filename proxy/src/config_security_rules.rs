//! Which security settings a proxy may start with, and how they must fit together.
//!
//! Owns two checks of the parsed `Config`: `validate_security` (each TLS section on
//! its own, the backend scheme against `[backend_tls]`, keyring against the
//! plaintext opt-in), run by `Config::validate`, and `check_security_at_start`
//! (what a node needs before it may serve: sealed gossip or the explicit opt-in,
//! and listener sections that leave no port where a stranger could act as a
//! peer). Example configs show one section at a time and must still validate, so
//! the second check is separate and runs only at start.
//!
//! # The two listener layouts
//! - Shared port (no `peer_listen`): clients and peers reach `listen`; `[tls]` and
//!   `[mesh_tls]` go together (a mesh certificate tells a peer from a client on
//!   one TLS port), or neither (h2c everywhere, a private network only).
//! - Peer port (`peer_listen`): peers reach `peer_listen` with mutual TLS, so
//!   `[mesh_tls]` is required; `listen` serves clients alone, TLS with `[tls]` or
//!   h2c without. A plaintext peer port would be the old unauthenticated mesh.

use crate::config::{BackendMode, Config, ConfigError, invalid};

impl Config {
    /// Each TLS section on its own and the backend scheme against `backend_tls`.
    /// Whether sections fit together is `check_security_at_start`'s job.
    pub(crate) fn validate_security(&self) -> Result<(), ConfigError> {
        let section =
            |field: &'static str, error: crate::tls::ConfigError| invalid(field, error.to_string());
        if let Some(tls) = &self.tls {
            tls.validate().map_err(|e| section("tls", e))?;
        }
        if let Some(mesh) = &self.mesh_tls {
            mesh.validate().map_err(|e| section("mesh_tls", e))?;
        }
        if let Some(backend) = &self.backend_tls {
            backend.validate().map_err(|e| section("backend_tls", e))?;
        }
        let grpcs = self.backend.starts_with("grpcs://");
        match (grpcs, &self.backend_tls) {
            (true, None) => {
                return Err(invalid("backend_tls", "is required by a grpcs:// backend"));
            }
            (false, Some(_)) => {
                return Err(invalid("backend_tls", "is set but backend is not grpcs://"));
            }
            _ => {}
        }
        if self.load_endpoint().starts_with("grpcs://")
            && self.backend_mode == BackendMode::Executor
        {
            return Err(invalid(
                "backend_load",
                "the executor's Load service is read in cleartext; give its grpc:// address",
            ));
        }
        if self.gossip_keyring.is_some() && self.insecure_plaintext_gossip {
            return Err(invalid(
                "insecure_plaintext_gossip",
                "is set together with gossip_keyring; choose one",
            ));
        }
        Ok(())
    }

    /// What a node needs to start safely, beyond `validate`: a gossip keyring or
    /// the explicit plaintext opt-in, and TLS sections that fit the listener layout
    /// (see the module doc).
    pub fn check_security_at_start(&self) -> Result<(), ConfigError> {
        if self.gossip_keyring.is_none() && !self.insecure_plaintext_gossip {
            return Err(invalid(
                "gossip_keyring",
                "is not set: gossip must be sealed. Create a keyring with \
                 `remesh-proxy keygen > keyring` and set gossip_keyring (or \
                 --gossip-keyring); or set insecure_plaintext_gossip = true on a \
                 private, encrypted network only",
            ));
        }
        if self.peer_listen.is_some() {
            return match &self.mesh_tls {
                Some(_) => Ok(()),
                None => Err(invalid(
                    "peer_listen",
                    "needs [mesh_tls]: a peer port without mutual TLS would let anyone who \
                     reaches it forward work as a peer. Set [mesh_tls] (or the \
                     --mesh-tls-* flags), or drop peer_listen to serve without a peer port",
                )),
            };
        }
        match (&self.tls, &self.mesh_tls) {
            (Some(_), None) => Err(invalid(
                "mesh_tls",
                "is required with [tls] when peers share the gRPC listener (no \
                 peer_listen): they dial the same TLS port and prove themselves with \
                 a mesh certificate",
            )),
            (None, Some(_)) => Err(invalid(
                "tls",
                "is required with [mesh_tls] when peers share the gRPC listener; or set \
                 peer_listen to give peers a mutual-TLS port of their own, and clients \
                 may then use listen without [tls]",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::Config;
    use crate::tls::{ClientAuth, DEFAULT_RELOAD_INTERVAL, MeshTlsConfig, ServerTlsConfig};

    fn mesh() -> Option<MeshTlsConfig> {
        Some(MeshTlsConfig {
            ca_file: PathBuf::from("m.pem"),
            cert_file: PathBuf::from("m.crt"),
            key_file: PathBuf::from("m.key"),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        })
    }

    fn tls() -> Option<ServerTlsConfig> {
        Some(ServerTlsConfig {
            cert_file: PathBuf::from("s.crt"),
            key_file: PathBuf::from("s.key"),
            client_ca_file: None,
            client_auth: ClientAuth::Off,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        })
    }

    fn node(
        tls: Option<ServerTlsConfig>,
        mesh: Option<MeshTlsConfig>,
        peer_listen: Option<&str>,
    ) -> Config {
        Config {
            node_id: "n".into(),
            insecure_plaintext_gossip: true,
            tls,
            mesh_tls: mesh,
            peer_listen: peer_listen.map(|addr| addr.parse().unwrap()),
            ..Config::default()
        }
    }

    #[test]
    fn the_listener_layouts_that_may_start() {
        let peer = Some("127.0.0.1:8991");
        for (config, allowed) in [
            // Shared port: both sections or neither.
            (node(None, None, None), Ok(())),
            (node(tls(), mesh(), None), Ok(())),
            (node(tls(), None, None), Err("mesh_tls:")),
            (node(None, mesh(), None), Err("tls:")),
            // Peer port: mutual TLS required, client TLS optional.
            (node(None, mesh(), peer), Ok(())),
            (node(tls(), mesh(), peer), Ok(())),
            (node(None, None, peer), Err("peer_listen:")),
            (node(tls(), None, peer), Err("peer_listen:")),
        ] {
            config.validate().unwrap();
            let outcome = config.check_security_at_start().map_err(|e| e.to_string());
            match (outcome, allowed) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(field)) => assert!(error.starts_with(field), "{error}"),
                (outcome, allowed) => panic!(
                    "tls {} mesh {} peer {:?}: {outcome:?}, expected {allowed:?}",
                    config.tls.is_some(),
                    config.mesh_tls.is_some(),
                    config.peer_listen
                ),
            }
        }
    }

    #[test]
    fn a_plaintext_peer_port_is_refused_with_the_reason() {
        let error = node(None, None, Some("127.0.0.1:8991"))
            .check_security_at_start()
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs [mesh_tls]"), "{error}");
        assert!(error.contains("forward work as a peer"), "{error}");
    }

    #[test]
    fn peer_addresses_are_checked() {
        let advertise_alone = Config {
            peer_advertise: Some("10.0.0.5:8991".parse().unwrap()),
            ..node(None, None, None)
        };
        let error = advertise_alone.validate().unwrap_err().to_string();
        assert!(error.starts_with("peer_advertise:"), "{error}");
        let same_port = Config {
            listen: "127.0.0.1:8991".parse().unwrap(),
            ..node(None, mesh(), Some("127.0.0.1:8991"))
        };
        let error = same_port.validate().unwrap_err().to_string();
        assert!(error.starts_with("peer_listen:"), "{error}");
    }
}
