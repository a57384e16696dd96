//! One cluster node as real processes, started one by one so a test controls each:
//! a `remesh-executor` and a `remesh-proxy serve` in front of it, optionally inside a
//! network namespace (through `ip netns exec`, which execs, so the pid is the
//! program's own). Each process prints a JSON ready line on stdout; its stderr goes to
//! a log file in the node's directory. Dropping a `Process` SIGKILLs exactly its pid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use remesh_proxy::ReadyLine;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::processes::{ExecutorAddrs, executor_binary, proxy_binary};

const READY_LIMIT: Duration = Duration::from_secs(60);

/// A started process and what its ready line said.
pub struct Process<T> {
    pub ready: T,
    pub pid: u32,
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl<T> Process<T> {
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid as i32), signal)
            .unwrap_or_else(|error| panic!("{signal} to pid {}: {error}", self.pid));
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("pid {} still runs after {limit:?}", self.pid))
            .expect("waiting for a child")
    }
}

impl<T> Drop for Process<T> {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// Starts `program args` (inside `netns` when given) and reads its ready line.
pub async fn spawn_ready<T: DeserializeOwned>(
    netns: Option<&str>,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Process<T> {
    let mut command = match netns {
        Some(ns) => {
            let mut command = tokio::process::Command::new("ip");
            command.args(["netns", "exec", ns]).arg(program);
            command
        }
        None => tokio::process::Command::new(program),
    };
    let log_file = std::fs::File::create(log).expect("creating a log file");
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", program.display()));
    let pid = child.id().expect("a fresh child has a pid");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(READY_LIMIT, lines.next_line()).await;
    let Ok(Ok(Some(line))) = line else {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        panic!(
            "{} {args:?} printed no ready line; its log:\n{}",
            program.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    let ready =
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("ready line {line:?}: {error}"));
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Process {
        ready,
        pid,
        log: log.to_owned(),
        child,
    }
}

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub node_id: String,
    pub dir: PathBuf,
    pub netns: Option<String>,
    /// The proxy's gRPC, admin and gossip addresses.
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub gossip_listen: SocketAddr,
    pub join: Vec<String>,
    pub runners: usize,
    /// Where the executor serves gRPC (port 0 picks one): loopback unless other
    /// nodes' executors use it as their backing cache.
    pub executor_listen: SocketAddr,
    /// Extra executor flags (`--backing-cache …`).
    pub executor_args: Vec<String>,
    /// Extra proxy flags.
    pub proxy_args: Vec<String>,
    /// Seal gossip with this keyring; `None`: plaintext gossip (the opt-in flag).
    pub gossip_keyring: Option<PathBuf>,
}

impl NodeSpec {
    /// A node on loopback: every port but gossip picked by the OS; gossip gets a fixed
    /// free port, so a restarted node comes back at the same gossip address.
    pub fn loopback(node_id: &str, dir: &Path, runners: usize) -> Self {
        let gossip = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .expect("finding a free UDP port");
        Self {
            node_id: node_id.into(),
            dir: dir.join(node_id),
            netns: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            gossip_listen: gossip,
            join: Vec::new(),
            runners,
            executor_listen: "127.0.0.1:0".parse().unwrap(),
            executor_args: Vec::new(),
            proxy_args: Vec::new(),
            gossip_keyring: None,
        }
    }
}

/// One running node: its executor and its proxy.
pub struct Node {
    pub spec: NodeSpec,
    pub executor: Process<ExecutorAddrs>,
    pub proxy: Process<ReadyLine>,
}

/// Starts every spec as one cluster, each node joining through all the nodes'
/// gossip addresses, and waits until every node sees every member alive.
pub async fn start_cluster(mut specs: Vec<NodeSpec>) -> Vec<Node> {
    let join: Vec<String> = specs.iter().map(|s| s.gossip_listen.to_string()).collect();
    let mut nodes = Vec::new();
    for spec in &mut specs {
        spec.join = join.clone();
        nodes.push(Node::start(spec.clone()).await);
    }
    for node in &nodes {
        for spec in &specs {
            super::wait_member_state(
                node.admin(),
                &spec.node_id,
                "alive",
                Duration::from_secs(30),
            )
            .await;
        }
    }
    nodes
}

impl Node {
    pub async fn start(spec: NodeSpec) -> Self {
        let executor = start_executor(&spec).await;
        let proxy = start_proxy(&spec, &executor.ready).await;
        Self {
            spec,
            executor,
            proxy,
        }
    }

    pub fn id(&self) -> &str {
        &self.spec.node_id
    }

    pub fn grpc(&self) -> SocketAddr {
        self.proxy.ready.grpc
    }

    pub fn admin(&self) -> SocketAddr {
        self.proxy.ready.admin
    }
}

pub async fn start_executor(spec: &NodeSpec) -> Process<ExecutorAddrs> {
    std::fs::create_dir_all(&spec.dir).unwrap();
    let mut args: Vec<String> = [
        "--listen",
        &spec.executor_listen.to_string(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--load-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    args.push("--data-dir".into());
    args.push(spec.dir.join("data").to_string_lossy().into_owned());
    args.push("--runners".into());
    args.push(spec.runners.to_string());
    args.extend(spec.executor_args.iter().cloned());
    spawn_ready(
        spec.netns.as_deref(),
        &executor_binary(),
        &args,
        &spec.dir.join("executor.log"),
    )
    .await
}

/// Starts the proxy in front of `executor` (a fresh log each time, numbered, so a
/// restarted node keeps its earlier log).
pub async fn start_proxy(spec: &NodeSpec, executor: &ExecutorAddrs) -> Process<ReadyLine> {
    std::fs::create_dir_all(&spec.dir).unwrap();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--node-id".into(),
        spec.node_id.clone(),
        "--listen".into(),
        spec.listen.to_string(),
        "--admin-listen".into(),
        spec.admin_listen.to_string(),
        "--gossip-listen".into(),
        spec.gossip_listen.to_string(),
        "--backend".into(),
        format!("grpc://{}", executor.grpc),
        "--backend-mode".into(),
        "executor".into(),
        "--backend-load".into(),
        format!("grpc://{}", executor.load),
        "--join-interval".into(),
        "1s".into(),
        "--load-heartbeat".into(),
        "500ms".into(),
    ];
    match &spec.gossip_keyring {
        Some(keyring) => {
            args.push("--gossip-keyring".into());
            args.push(keyring.to_string_lossy().into_owned());
        }
        // Most tests are about something else; sealed gossip has its own
        // (mesh_security, mesh_peer_port, bazel_mtls_mesh).
        None => args.push("--insecure-plaintext-gossip".into()),
    }
    if !spec.join.is_empty() {
        args.push("--join".into());
        args.push(spec.join.join(","));
    }
    args.extend(spec.proxy_args.iter().cloned());
    let log = (0..)
        .map(|n| spec.dir.join(format!("proxy-{n}.log")))
        .find(|path| !path.exists())
        .unwrap();
    spawn_ready(spec.netns.as_deref(), &proxy_binary(), &args, &log).await
}
