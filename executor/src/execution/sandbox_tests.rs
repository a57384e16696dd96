//! The bwrap command line for a fixed host layout, and real bwrap runs: the start-up
//! probe, and actions spawned through `process` inside the sandbox.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::execution::process::{ProcessOutcome, ProcessSpec, SandboxRun, run_process};

const BWRAP: &str = "/usr/bin/bwrap";

fn merged_usr_layout() -> Vec<SystemPath> {
    vec![
        SystemPath::Directory("/usr".into()),
        SystemPath::Symlink {
            path: "/bin".into(),
            target: "usr/bin".into(),
        },
        SystemPath::Symlink {
            path: "/lib".into(),
            target: "usr/lib".into(),
        },
    ]
}

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|arg| arg.to_str().unwrap().to_owned())
        .collect()
}

/// Whether `window` occurs in `args` as consecutive arguments.
fn has(args: &[String], window: &[&str]) -> bool {
    args.windows(window.len()).any(|found| found == window)
}

/// Real tests need the real binary; its absence is a failure, never a skip.
fn real_bwrap() -> Arc<Sandbox> {
    assert!(
        Path::new(BWRAP).is_file(),
        "{BWRAP} is missing: install Debian's bubblewrap package to run the sandbox tests"
    );
    Arc::new(Sandbox::new(BWRAP.into()))
}

#[test]
fn argv_isolates_and_mounts_only_the_input_root_read_write() {
    let sandbox = Sandbox::with_layout(BWRAP.into(), merged_usr_layout());
    let argv = [
        "/bin/bash".to_owned(),
        "-c".to_owned(),
        "echo hi".to_owned(),
    ];
    let args = strings(&sandbox.args(
        Path::new("/data/cas/tmp/exec-1/root"),
        Path::new("pkg/sub"),
        &argv,
    ));
    for flag in [
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
    ] {
        assert!(
            args.iter().any(|arg| arg == flag),
            "{flag} missing: {args:?}"
        );
    }
    assert!(has(&args, &["--cap-drop", "ALL"]));
    assert!(has(&args, &["--hostname", SANDBOX_HOSTNAME]));
    assert!(has(&args, &["--ro-bind", "/usr", "/usr"]));
    assert!(has(&args, &["--symlink", "usr/bin", "/bin"]));
    assert!(has(&args, &["--symlink", "usr/lib", "/lib"]));
    assert!(has(&args, &["--ro-bind-try", "/etc/passwd", "/etc/passwd"]));
    assert!(has(&args, &["--proc", "/proc"]));
    assert!(has(&args, &["--dev", "/dev"]));
    assert!(has(&args, &["--tmpfs", "/tmp"]));
    assert!(has(&args, &["--chdir", "/execroot/pkg/sub"]));
    // The only writable mount is the input root, and the only host path of the data
    // directory that appears at all is that root.
    let writable: Vec<_> = args
        .windows(3)
        .filter(|window| window[0] == "--bind")
        .collect();
    assert_eq!(
        writable,
        vec![
            &[
                "--bind".to_owned(),
                "/data/cas/tmp/exec-1/root".to_owned(),
                SANDBOX_ROOT.to_owned()
            ][..]
        ]
    );
    assert_eq!(
        args.iter().filter(|arg| arg.starts_with("/data")).count(),
        1,
        "{args:?}"
    );
    // The command comes last, after `--`, unchanged.
    let separator = args.iter().position(|arg| arg == "--").unwrap();
    assert_eq!(&args[separator + 1..], &argv[..]);
    // No setting of the environment in argv: bwrap passes on exactly its own.
    assert!(!args.iter().any(|arg| arg == "--setenv"));
}

#[test]
fn the_working_directory_at_the_root_is_the_mount_point() {
    let sandbox = Sandbox::with_layout(BWRAP.into(), Vec::new());
    let args = strings(&sandbox.args(Path::new("/w"), Path::new(""), &["true".to_owned()]));
    assert!(has(&args, &["--chdir", SANDBOX_ROOT]), "{args:?}");
}

#[test]
fn the_host_layout_follows_merged_usr_links() {
    let layout = host_layout();
    assert!(layout.contains(&SystemPath::Directory("/usr".into())));
    let bin = layout
        .iter()
        .find(|path| {
            matches!(path, SystemPath::Directory(p) if p == Path::new("/bin"))
                || matches!(path, SystemPath::Symlink { path, .. } if path == Path::new("/bin"))
        })
        .expect("/bin is on every host");
    if std::fs::symlink_metadata("/bin")
        .unwrap()
        .file_type()
        .is_symlink()
    {
        assert!(matches!(bin, SystemPath::Symlink { .. }), "{bin:?}");
    }
}

#[tokio::test]
async fn the_probe_passes_with_the_real_bwrap() {
    let scratch = tempfile::tempdir().unwrap();
    real_bwrap().probe(scratch.path()).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "the probe leaves nothing behind: {left:?}");
}

#[tokio::test]
async fn the_probe_names_a_missing_bwrap() {
    let scratch = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(PathBuf::from("/nonexistent/bwrap"));
    let error = sandbox.probe(scratch.path()).await.unwrap_err().to_string();
    assert!(
        error.starts_with("sandbox: required but /nonexistent/bwrap cannot start ("),
        "{error}"
    );
}

fn sandboxed(root: &Path, script: &str, timeout: Duration) -> ProcessSpec {
    let outputs = root.parent().unwrap();
    ProcessSpec {
        argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
        environment: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("ONLY_THIS".into(), "a b=c".into()),
        ],
        working_directory: root.join("sub"),
        stdout: outputs.join("stdout"),
        stderr: outputs.join("stderr"),
        timeout,
        max_output_bytes: 1 << 20,
        sandbox: Some(SandboxRun {
            sandbox: real_bwrap(),
            input_root: root.to_path_buf(),
        }),
    }
}

fn work_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    root
}

#[tokio::test]
async fn an_action_sees_its_root_its_environment_and_its_own_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let root = work_root(dir.path());
    std::fs::write(dir.path().join("secret"), "data dir content").unwrap();
    let script = "pwd; echo $$; hostname; env | grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=' | sort; \
                  echo made > made.txt; ls ../.. || echo no-parent";
    let spec = sandboxed(&root, script, Duration::from_secs(60));
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    let stdout = std::fs::read_to_string(&spec.stdout).unwrap();
    let stderr = std::fs::read_to_string(&spec.stderr).unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "/execroot/sub");
    let pid: u32 = lines[1].parse().unwrap();
    assert!(
        pid < 10,
        "the shell is a low pid in its own namespace: {pid}"
    );
    assert_eq!(lines[2], SANDBOX_HOSTNAME);
    assert_eq!(&lines[3..5], ["ONLY_THIS=a b=c", "PATH=/usr/bin:/bin"]);
    // `../..` of /execroot/sub is `/`: the host's directory around the root is not it.
    assert!(!stdout.contains("secret"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(root.join("sub/made.txt")).unwrap(),
        "made\n",
        "the work directory is writable and shared with the host"
    );
}

/// Host pids of live processes whose argv[0] is `marker` (bwrap and the shell carry
/// the marker too, inside the script text, but not as their argv[0]).
fn pids_with(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        let argv0 = cmdline.split(|byte| *byte == 0).next().unwrap_or_default();
        if !zombie && argv0 == marker.as_bytes() {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn the_timeout_kills_everything_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let root = work_root(dir.path());
    // A marker only these processes carry, to find them from the host side.
    let marker = format!("remesh-sandbox-sleeper-{}", uuid::Uuid::new_v4().simple());
    let script = format!("(exec -a {marker} sleep 1000) & (exec -a {marker} sleep 1000) & wait");
    let spec = sandboxed(&root, &script, Duration::from_secs(600));
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (spec, cancel) = (spec.clone(), cancel.clone());
        async move { run_process(&spec, &cancel).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let sleepers = loop {
        let found = pids_with(&marker);
        if found.len() == 2 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the sandboxed sleeps never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Cancel and timeout share the kill path; cancel lets the test pick the moment.
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the kill ends the run promptly")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, ProcessOutcome::Cancelled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "sandboxed processes {sleepers:?} survived the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_relative_program_is_found_in_the_working_directory_inside() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = work_root(dir.path());
    let tool = root.join("sub/tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool in $(pwd)\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = sandboxed(&root, "", Duration::from_secs(60));
    spec.argv = vec!["./tool".into()];
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    let stderr = std::fs::read_to_string(&spec.stderr).unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&spec.stdout).unwrap(),
        "tool in /execroot/sub\n"
    );
}
