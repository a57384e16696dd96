//! Tests of Command checks: output paths, working directory, argv, environment, timeout.

use super::*;
use remesh_proto::protobuf;
use remesh_proto::reapi::command::EnvironmentVariable;

fn names(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| part.to_string()).collect()
}

#[test]
fn resolve_accepts_inner_paths_and_normalises() {
    assert_eq!(
        resolve(&[], "a/b").unwrap().components(),
        names(&["a", "b"])
    );
    assert_eq!(
        resolve(&[], "a/./b/../c").unwrap().components(),
        names(&["a", "c"])
    );
    assert_eq!(
        resolve(&names(&["wd"]), "../out").unwrap().components(),
        names(&["out"])
    );
    assert!(resolve(&[], "").unwrap().components().is_empty());
}

#[test]
fn resolve_refuses_escapes_and_malformed_paths() {
    for hostile in [
        "/etc/passwd",
        "..",
        "../x",
        "a/../../x",
        "a//b",
        "a/",
        "a\0b",
    ] {
        assert!(resolve(&[], hostile).is_err(), "{hostile:?} was accepted");
    }
    assert!(resolve(&names(&["wd"]), "../../x").is_err());
}

#[allow(deprecated)]
fn command(outputs: &[&str], directories: &[&str], paths: &[&str], wd: &str) -> Command {
    Command {
        arguments: names(&["/bin/true"]),
        output_files: names(outputs),
        output_directories: names(directories),
        output_paths: names(paths),
        working_directory: wd.to_owned(),
        ..Default::default()
    }
}

#[test]
fn output_paths_are_relative_to_the_working_directory() {
    let cmd = command(&["out/a.txt"], &["out/dir"], &[], "pkg");
    let wd = resolve(&[], &cmd.working_directory).unwrap();
    let outputs = output_requests(&cmd, &wd).unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].requested, "out/a.txt");
    assert_eq!(outputs[0].kind, OutputKind::File);
    assert_eq!(
        outputs[0].location.components(),
        names(&["pkg", "out", "a.txt"])
    );
    assert_eq!(outputs[1].kind, OutputKind::Directory);
    assert_eq!(
        outputs[1].location.parent().components(),
        names(&["pkg", "out"])
    );
}

#[test]
fn output_paths_v21_replace_the_v20_fields() {
    let cmd = command(&["ignored"], &[], &["x", "x", "y/z"], "");
    let outputs = output_requests(&cmd, &RootPath(Vec::new())).unwrap();
    let requested: Vec<_> = outputs
        .iter()
        .map(|o| (o.requested.as_str(), o.kind))
        .collect();
    assert_eq!(
        requested,
        vec![("x", OutputKind::Any), ("y/z", OutputKind::Any)],
        "duplicates are collapsed, v2.0 fields ignored"
    );
}

#[test]
fn hostile_output_paths_are_invalid_argument() {
    let root = RootPath(Vec::new());
    for (files, dirs, paths) in [
        (vec!["/tmp/x"], vec![], vec![]),
        (vec!["../x"], vec![], vec![]),
        (vec![], vec!["a/../.."], vec![]),
        (vec![], vec![], vec!["/abs"]),
        (vec![], vec![], vec![".."]),
        (vec![], vec![""], vec![]),
        (vec!["."], vec![], vec![]),
    ] {
        let cmd = command(&files, &dirs, &paths, "");
        let error = output_requests(&cmd, &root).unwrap_err();
        assert_eq!(
            error.code(),
            tonic::Code::InvalidArgument,
            "{files:?} {dirs:?} {paths:?}"
        );
    }
}

#[test]
fn argv_and_environment_are_checked() {
    let mut cmd = command(&[], &[], &[], "");
    check_command(&cmd).unwrap();
    cmd.arguments.clear();
    assert!(check_command(&cmd).is_err());
    cmd.arguments = names(&["/bin/sh", "a\0b"]);
    assert!(check_command(&cmd).is_err());
    cmd.arguments = names(&["/bin/sh"]);
    for (name, value) in [("", "x"), ("A=B", "x"), ("A", "x\0y")] {
        cmd.environment_variables = vec![EnvironmentVariable {
            name: name.into(),
            value: value.into(),
        }];
        assert!(check_command(&cmd).is_err(), "{name:?}={value:?} accepted");
    }
}

#[test]
fn timeout_defaults_and_is_capped() {
    let limits = ActionLimits {
        max_message_bytes: 1 << 20,
        default_timeout: Duration::from_secs(60),
        max_timeout: Duration::from_secs(300),
    };
    let with = |seconds: i64, nanos: i32| Action {
        timeout: Some(protobuf::Duration { seconds, nanos }),
        ..Default::default()
    };
    assert_eq!(
        action_timeout(&Action::default(), &limits).unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(
        action_timeout(&with(0, 0), &limits).unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(
        action_timeout(&with(5, 500_000_000), &limits).unwrap(),
        Duration::from_millis(5500)
    );
    assert_eq!(
        action_timeout(&with(100_000, 0), &limits).unwrap(),
        Duration::from_secs(300)
    );
    assert!(action_timeout(&with(-1, 0), &limits).is_err());
    assert!(action_timeout(&with(1, 2_000_000_000), &limits).is_err());
}
