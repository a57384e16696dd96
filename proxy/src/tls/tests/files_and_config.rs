//! PEM loading errors name the file at fault, and config sections parse and
//! validate as documented.

use std::time::Duration;

use super::{Ca, init};
use crate::tls::{
    BuildError, ClientAuth, ClientTlsConfig, ConfigError, MeshTlsConfig, PemError,
    ReloadingServerConfig, ServerTlsConfig, load_certificates, load_identity, load_roots,
};

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.crt");
    let err = load_certificates(&path).unwrap_err();
    assert!(matches!(&err, PemError::Read { path: p, .. } if *p == path));
    assert!(err.to_string().contains("absent.crt"), "{err}");
}

#[test]
fn file_without_a_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&["localhost"], 1);
    // A key where a certificate was expected: valid PEM, wrong contents.
    let path = dir.path().join("swapped.crt");
    std::fs::write(&path, &leaf.key_pem).unwrap();
    let err = load_certificates(&path).unwrap_err();
    assert!(matches!(&err, PemError::NoCertificate { path: p } if *p == path));
    assert!(load_roots(&path).is_err());
}

#[test]
fn key_of_another_certificate_is_a_mismatch_naming_both_files() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let (one, two) = (ca.leaf(&["localhost"], 1), ca.leaf(&["localhost"], 2));
    let cert = dir.path().join("one.crt");
    let key = dir.path().join("two.key");
    std::fs::write(&cert, &one.cert_pem).unwrap();
    std::fs::write(&key, &two.key_pem).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let err = load_identity(&cert, &key, &provider).err().unwrap();
    assert!(matches!(&err, PemError::KeyMismatch { cert: c, key: k } if *c == cert && *k == key));
    let text = err.to_string();
    assert!(
        text.contains("one.crt") && text.contains("two.key"),
        "{text}"
    );

    std::fs::write(&key, &one.key_pem).unwrap();
    let identity = load_identity(&cert, &key, &provider).unwrap();
    assert_eq!(identity.chain, vec![one.der]);
}

#[test]
fn first_build_fails_with_the_file_at_fault() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tls.key");
    std::fs::write(&key, Ca::new("ca").leaf(&["x"], 1).key_pem).unwrap();
    let config = ServerTlsConfig {
        cert_file: dir.path().join("tls.crt"),
        key_file: key,
        client_ca_file: None,
        client_auth: ClientAuth::Off,
        reload_interval: Duration::from_secs(10),
    };
    match ReloadingServerConfig::new(config) {
        Err(BuildError::Pem(PemError::Read { path, .. })) => {
            assert_eq!(path, dir.path().join("tls.crt"))
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("built a server config without a certificate"),
    }
}

#[test]
fn server_section_parses_with_defaults_and_rejects_unknown_fields() {
    let config: ServerTlsConfig =
        toml::from_str("cert_file = \"/tls/tls.crt\"\nkey_file = \"/tls/tls.key\"\n").unwrap();
    assert_eq!(config.client_auth, ClientAuth::Off);
    assert_eq!(config.reload_interval, Duration::from_secs(10));
    assert_eq!(config.validate(), Ok(()));

    let config: ServerTlsConfig = toml::from_str(
        "cert_file = \"a\"\nkey_file = \"b\"\nclient_ca_file = \"c\"\n\
         client_auth = \"required\"\nreload_interval = \"500ms\"\n",
    )
    .unwrap();
    assert_eq!(config.client_auth, ClientAuth::Required);
    assert_eq!(config.reload_interval, Duration::from_millis(500));

    let typo =
        toml::from_str::<ServerTlsConfig>("cert_file = \"a\"\nkey_file = \"b\"\nca = \"c\"\n");
    assert!(typo.is_err());
}

#[test]
fn validate_names_the_field_at_fault() {
    let mut server: ServerTlsConfig =
        toml::from_str("cert_file = \"a\"\nkey_file = \"b\"\nclient_auth = \"optional\"\n")
            .unwrap();
    assert_eq!(server.validate().unwrap_err().field, "client_ca_file");
    server.client_auth = ClientAuth::Off;
    server.client_ca_file = Some("ca.crt".into());
    assert_eq!(server.validate().unwrap_err().field, "client_ca_file");
    server.client_ca_file = None;
    server.reload_interval = Duration::ZERO;
    assert_eq!(
        server.validate(),
        Err(ConfigError {
            field: "reload_interval",
            reason: "must not be zero"
        })
    );

    let mut client: ClientTlsConfig =
        toml::from_str("ca_file = \"ca\"\ncert_file = \"c\"\n").unwrap();
    assert_eq!(client.validate().unwrap_err().field, "key_file");
    client.cert_file = None;
    client.server_name = Some("not a name!".into());
    assert_eq!(client.validate().unwrap_err().field, "server_name");
    client.server_name = Some("10.0.0.7".into());
    assert_eq!(client.validate(), Ok(()));

    let mesh: MeshTlsConfig =
        toml::from_str("ca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\n").unwrap();
    assert_eq!(mesh.validate(), Ok(()));
    assert!(toml::from_str::<MeshTlsConfig>("cert_file = \"b\"\nkey_file = \"c\"\n").is_err());
}
