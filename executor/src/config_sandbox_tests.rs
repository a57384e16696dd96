//! Configuration of the sandbox and the output bound: file, flags, environment names
//! and `validate`.

use clap::Parser;

use super::*;

#[test]
fn the_sandbox_is_off_by_default_and_outputs_are_bounded() {
    let config = Config::default();
    assert_eq!(config.sandbox, SandboxMode::Off);
    assert_eq!(config.bwrap_path, Path::new("/usr/bin/bwrap"));
    assert_eq!(config.max_output_bytes, 4 << 30);
}

#[test]
fn the_file_names_the_mode_and_bwrap_is_a_synonym_of_required() {
    for (text, mode) in [
        ("sandbox = \"off\"", SandboxMode::Off),
        ("sandbox = \"required\"", SandboxMode::Required),
        ("sandbox = \"bwrap\"", SandboxMode::Required),
    ] {
        let config: Config = toml::from_str(text).unwrap();
        assert_eq!(config.sandbox, mode, "{text}");
    }
    let error = toml::from_str::<Config>("sandbox = \"maybe\"").unwrap_err();
    assert!(error.to_string().contains("maybe"), "{error}");
}

#[test]
fn flags_set_the_sandbox_and_the_output_bound() {
    let args = Args::try_parse_from([
        "remesh-executor",
        "--sandbox",
        "required",
        "--bwrap-path",
        "/opt/bwrap",
        "--max-output-bytes",
        "1048576",
    ])
    .unwrap();
    let config = args.into_config().unwrap();
    assert_eq!(config.sandbox, SandboxMode::Required);
    assert_eq!(config.bwrap_path, Path::new("/opt/bwrap"));
    assert_eq!(config.max_output_bytes, 1 << 20);
    let args = Args::try_parse_from(["remesh-executor", "--sandbox", "bwrap"]).unwrap();
    assert_eq!(args.sandbox, Some(SandboxMode::Required));
}

#[test]
fn each_flag_has_its_environment_variable() {
    use clap::CommandFactory;
    let command = Args::command();
    for (flag, env) in [
        ("sandbox", "REMESH_EXECUTOR_SANDBOX"),
        ("bwrap_path", "REMESH_EXECUTOR_BWRAP_PATH"),
        ("max_output_bytes", "REMESH_EXECUTOR_MAX_OUTPUT_BYTES"),
    ] {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == flag)
            .unwrap_or_else(|| panic!("no flag {flag}"));
        assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env));
    }
}

#[test]
fn validate_refuses_a_zero_bound_and_a_relative_bwrap() {
    let config = Config {
        max_output_bytes: 0,
        ..Config::default()
    };
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("max_output_bytes:")
    );
    let config = Config {
        sandbox: SandboxMode::Required,
        bwrap_path: PathBuf::from("bwrap"),
        ..Config::default()
    };
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("bwrap_path:")
    );
    // Unused, a relative path harms nothing.
    let config = Config {
        bwrap_path: PathBuf::from("bwrap"),
        ..Config::default()
    };
    config.validate().unwrap();
}
