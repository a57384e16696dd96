//! Configuration of the hardening knobs: backing-cache TLS files and the connection
//! limits, through the file, the flags and `validate`.

use std::path::PathBuf;

use clap::Parser;

use super::*;

fn field_at_fault(config: &Config) -> String {
    let error = config.validate().expect_err("config should be refused");
    error
        .to_string()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Three readable files standing in for a CA, a certificate and a key: validation only
/// checks that they are there; parsing them is the backing client's job.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let paths = ["ca.pem", "cert.pem", "key.pem"].map(|name| dir.join(name));
    for path in &paths {
        std::fs::write(path, "-----BEGIN CERTIFICATE-----\n").unwrap();
    }
    let [ca, cert, key] = paths;
    (ca, cert, key)
}

#[test]
fn grpcs_backing_cache_needs_a_ca_file() {
    let config = Config {
        backing_cache: Some("grpcs://cache.internal:443".into()),
        ..Config::default()
    };
    assert_eq!(field_at_fault(&config), "backing_ca_file");
}

#[test]
fn tls_files_without_grpcs_are_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = tls_files(dir.path());
    for url in [None, Some("grpc://cache.internal:9092".to_owned())] {
        let config = Config {
            backing_cache: url.clone(),
            backing_ca_file: Some(ca.clone()),
            ..Config::default()
        };
        assert_eq!(field_at_fault(&config), "backing_ca_file", "{url:?}");
        let config = Config {
            backing_cache: url,
            backing_tls_server_name: Some("cache".into()),
            ..Config::default()
        };
        assert_eq!(field_at_fault(&config), "backing_tls_server_name");
    }
}

#[test]
fn client_certificate_and_key_come_as_a_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let base = Config {
        backing_cache: Some("grpcs://cache.internal:443".into()),
        backing_ca_file: Some(ca),
        ..Config::default()
    };
    let only_cert = Config {
        backing_cert_file: Some(cert.clone()),
        ..base.clone()
    };
    assert_eq!(field_at_fault(&only_cert), "backing_key_file");
    let only_key = Config {
        backing_key_file: Some(key.clone()),
        ..base.clone()
    };
    assert_eq!(field_at_fault(&only_key), "backing_cert_file");
    let both = Config {
        backing_cert_file: Some(cert),
        backing_key_file: Some(key),
        backing_tls_server_name: Some("cache.internal".into()),
        ..base.clone()
    };
    both.validate().unwrap();
    base.validate().unwrap();
}

#[test]
fn a_missing_tls_file_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, _) = tls_files(dir.path());
    let config = Config {
        backing_cache: Some("grpcs://cache.internal:443".into()),
        backing_ca_file: Some(ca),
        backing_cert_file: Some(cert),
        backing_key_file: Some(dir.path().join("absent.pem")),
        ..Config::default()
    };
    assert_eq!(field_at_fault(&config), "backing_key_file");
}

#[test]
fn tls_fields_come_from_the_file_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let path = dir.path().join("executor.toml");
    std::fs::write(
        &path,
        format!(
            "backing_cache = \"grpcs://10.0.0.5:9092\"\n\
             backing_ca_file = {ca:?}\n\
             backing_tls_server_name = \"cache.internal\"\n\
             max_concurrent_streams = 64\n"
        ),
    )
    .unwrap();
    let args = Args::try_parse_from([
        "remesh-executor".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
        "--backing-cert-file".as_ref(),
        cert.as_os_str(),
        "--backing-key-file".as_ref(),
        key.as_os_str(),
        "--max-concurrent-streams".as_ref(),
        "32".as_ref(),
    ])
    .unwrap();
    let config = args.into_config().unwrap();
    assert_eq!(config.backing_ca_file, Some(ca));
    assert_eq!(config.backing_cert_file, Some(cert));
    assert_eq!(config.backing_key_file, Some(key));
    assert_eq!(
        config.backing_tls_server_name.as_deref(),
        Some("cache.internal")
    );
    assert_eq!(config.max_concurrent_streams, 32);

    // An empty flag clears what the file set.
    let args = Args::try_parse_from([
        "remesh-executor".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
        "--backing-tls-server-name=".as_ref(),
    ])
    .unwrap();
    assert_eq!(args.into_config().unwrap().backing_tls_server_name, None);
}

#[test]
fn zero_concurrent_streams_is_refused() {
    let config = Config {
        max_concurrent_streams: 0,
        ..Config::default()
    };
    assert_eq!(field_at_fault(&config), "max_concurrent_streams");
}
