//! Real components for end-to-end tests: BuildGrid (cache-only), Bazel in a private
//! output root, and guards that kill exactly the processes a test started, by pid.
//! A missing component fails the test with a message saying what to install.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::eventually;

pub const BGD: &str = "/opt/remesh-buildgrid/venv/bin/bgd";
pub const BAZEL: &str = "/usr/bin/bazel";
const SHARED_BAZEL: &str = "/work/shared/bazel";
const SHARED_BUILDGRID: &str = "/work/shared/buildgrid/cache-only.yml.in";

/// Fails the test unless `path` exists.
pub fn require(path: &str, what: &str) {
    assert!(
        Path::new(path).exists(),
        "{what} is required for this test but {path} does not exist"
    );
}

/// SIGKILLs the given pids when dropped (a test that panics still cleans up).
#[derive(Default)]
pub struct KillOnDrop {
    pub pids: Vec<u32>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

/// Bazel arguments that build every target of the `fan` workspace with remote
/// execution on `endpoint` (its `.bazelrc`'s `rexec` config).
pub fn fan_args(endpoint: SocketAddr) -> Vec<String> {
    vec![
        "--config=rexec".to_owned(),
        format!("--remote_executor=grpc://{endpoint}"),
        "//:all".to_owned(),
    ]
}

/// Checks what each of three nodes' executors ran during one `fan` build sent to
/// node 0, which has a single runner: every one of the workspace's 51 actions ran
/// once, and nodes 1 and 2 ran some of them.
pub fn assert_fan_spread(ran: &[f64]) {
    assert_eq!(
        ran.iter().sum::<f64>(),
        51.0,
        "every action ran once: {ran:?}"
    );
    assert!(
        ran[1] > 0.0 && ran[2] > 0.0,
        "node 0 (one runner) must share with nodes 1 and 2: {ran:?}"
    );
}

/// A port that was free a moment ago (for servers that cannot bind port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("finding a free port")
}

pub async fn wait_listening(addr: SocketAddr, deadline: Duration) {
    eventually(&format!("{addr} to listen"), deadline, || async {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await
}

/// A cache-only BuildGrid (instance `main`) on loopback; killed when dropped.
pub struct BuildGrid {
    pub addr: SocketAddr,
    _child: tokio::process::Child,
}

impl BuildGrid {
    pub async fn start(dir: &Path) -> Self {
        require(BGD, "BuildGrid");
        let port = free_port();
        let cas = dir.join("buildgrid-cas");
        std::fs::create_dir_all(&cas).unwrap();
        let template =
            std::fs::read_to_string(SHARED_BUILDGRID).expect("reading the BuildGrid template");
        let config = dir.join("buildgrid.yml");
        std::fs::write(
            &config,
            template
                .replace("@PORT@", &port.to_string())
                .replace("@DIR@", cas.to_str().unwrap()),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("buildgrid.log")).unwrap();
        let child = tokio::process::Command::new(BGD)
            .args(["server", "start"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting BuildGrid");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(addr, Duration::from_secs(90)).await;
        Self {
            addr,
            _child: child,
        }
    }
}

/// A private copy of the shared Bazel workspaces with its own output root; shuts its
/// Bazel server down when dropped.
pub struct Bazel {
    pub root: PathBuf,
    output_root: PathBuf,
    /// The machine-wide Bazel lock the tests crate's harness also takes: one Bazel
    /// at a time on the machine. Released when dropped, after the server shut down.
    _machine_lock: std::fs::File,
}

impl Bazel {
    pub fn new(dir: &Path) -> Self {
        require(BAZEL, "Bazel (Debian bazel-bootstrap)");
        let machine_lock = lock_machine();
        let root = dir.join("workspaces");
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(SHARED_BAZEL)
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success(), "copying {SHARED_BAZEL}");
        let status = std::process::Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success());
        Self {
            root,
            output_root: dir.join("bazel-output-root"),
            _machine_lock: machine_lock,
        }
    }

    /// Runs `bazel <command> <args>` in `workspace`, bounded by `limit`.
    pub async fn run(
        &self,
        workspace: &str,
        command: &str,
        args: &[String],
        limit: Duration,
    ) -> Output {
        tokio::process::Command::new("timeout")
            .arg(limit.as_secs().to_string())
            .arg(BAZEL)
            .arg(format!("--output_user_root={}", self.output_root.display()))
            .arg(command)
            .args(args)
            .current_dir(self.root.join(workspace))
            .stdin(Stdio::null())
            .output()
            .await
            .expect("running bazel")
    }

    pub fn text(output: &Output) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

/// Waits (up to 30 minutes) for the machine-wide Bazel lock, shared with
/// `remesh_tests::bazel`.
fn lock_machine() -> std::fs::File {
    let path = std::env::temp_dir().join("remesh-bazel.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
    let deadline = std::time::Instant::now() + Duration::from_secs(30 * 60);
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "another test held the Bazel lock for 30 minutes"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                panic!("locking {}: {error}", path.display())
            }
        }
    }
}

impl Drop for Bazel {
    fn drop(&mut self) {
        for workspace in ["hello", "fan", "fail", "big"] {
            let dir = self.root.join(workspace);
            if dir.join("bazel-out").exists() {
                let _ = std::process::Command::new("timeout")
                    .arg("60")
                    .arg(BAZEL)
                    .arg(format!("--output_user_root={}", self.output_root.display()))
                    .arg("shutdown")
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
