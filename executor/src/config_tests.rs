//! The configuration as a whole: defaults, the file, the flags and `validate`; and
//! `backing_read_only`.

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn unknown_fields_are_refused() {
    let error =
        toml::from_str::<Config>("listen = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap_err();
    assert!(error.to_string().contains("listen_typo"), "{error}");
}

#[test]
fn durations_are_human() {
    let config: Config = toml::from_str("keepalive_interval = \"500ms\"").unwrap();
    assert_eq!(config.keepalive_interval, Duration::from_millis(500));
}

#[test]
fn validate_names_the_field() {
    let config = Config {
        queue_max: 0,
        ..Config::default()
    };
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("queue_max:")
    );
    let config = Config {
        backing_cache: Some("http://x".into()),
        ..Config::default()
    };
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("backing_cache:")
    );
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("executor.toml");
    std::fs::write(&path, "runners = 3\nqueue_max = 7\n").unwrap();
    let args = Args {
        config: Some(path),
        queue_max: Some(9),
        ..Args::default()
    };
    let config = args.into_config().unwrap();
    assert_eq!((config.runners, config.queue_max), (3, 9));
}

#[test]
fn backing_read_only_comes_from_the_file_the_flag_and_the_environment_name() {
    use clap::{CommandFactory, Parser};
    assert!(!Config::default().backing_read_only);
    let config: Config =
        toml::from_str("backing_cache = \"grpc://127.0.0.1:8982\"\nbacking_read_only = true\n")
            .unwrap();
    assert!(config.backing_read_only);

    let backed = [
        "remesh-executor",
        "--backing-cache",
        "grpc://127.0.0.1:8982",
    ];
    for (extra, expected) in [
        (&[][..], false),
        (&["--backing-read-only"][..], true),
        (&["--backing-read-only=true"][..], true),
        (&["--backing-read-only", "false"][..], false),
    ] {
        let args = Args::try_parse_from(backed.iter().chain(extra)).unwrap();
        assert_eq!(
            args.into_config().unwrap().backing_read_only,
            expected,
            "{extra:?}"
        );
    }

    let command = Args::command();
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_id() == "backing_read_only")
        .expect("a --backing-read-only flag");
    assert_eq!(
        arg.get_env().and_then(|env| env.to_str()),
        Some("REMESH_EXECUTOR_BACKING_READ_ONLY")
    );
}

#[test]
fn backing_read_only_needs_a_backing_cache() {
    let config = Config {
        backing_read_only: true,
        ..Config::default()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(error.starts_with("backing_read_only:"), "{error}");
    let args = Args {
        backing_read_only: Some(true),
        ..Args::default()
    };
    assert!(args.into_config().is_err());
}
