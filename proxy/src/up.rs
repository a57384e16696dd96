//! `remesh-proxy up`: a whole cluster on loopback, for trying remesh and for tests.
//!
//! Spawns, per node, a `remesh-executor` (found next to this binary) and a proxy
//! (this binary, `serve`) in front of it, every port picked by the OS. Node 0's
//! executor is the others' backing cache, so all nodes share one tier 2; with
//! `--peer-fill`, no node is special: each executor reads its misses from the other
//! nodes through its own proxy's fill endpoint (`remesh_proxy::fill`). Waits until
//! node 0 sees every member with its load, then prints one JSON ready line on stdout
//! (and a human summary with the Bazel flags on stderr). On Ctrl-C or SIGTERM it stops
//! every process it started, by pid: SIGTERM, then SIGKILL after a grace period. A
//! child that dies on its own is reported and left dead (fault tests kill nodes).
//!
//! With `--mesh-tls` (or `--tls`, which adds client TLS) every proxy also gets a
//! peer port with mutual TLS under a throwaway mesh CA (`up_pki`), and peers only
//! meet there; the client ports stay plaintext loopback unless `--tls` is given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use remesh_proxy::config::Policy;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::up_children::{Children, READY_TIMEOUT};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes (executor + proxy each).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Runners per executor: one value for every node, or one per node
    /// (`--runners 1,4,4`). Default: the executor's own (one per CPU).
    #[arg(long, value_delimiter = ',')]
    runners: Vec<usize>,
    #[arg(long, default_value = "least-loaded")]
    policy: Policy,
    /// Where nodes keep their data and logs; default: a fresh temporary directory,
    /// removed on exit.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The remesh-executor binary; default: next to this one.
    #[arg(long)]
    executor: Option<PathBuf>,
    /// Gossip in plaintext instead of sealing it with a keyring generated into the
    /// data directory (the default).
    #[arg(long)]
    insecure_plaintext_gossip: bool,
    /// Mutual TLS between the nodes, each on a peer port of its own, with a
    /// throwaway mesh CA generated into the data directory; clients keep plaintext
    /// on loopback (`grpc://`), which every Bazel can use.
    #[arg(long)]
    mesh_tls: bool,
    /// Serve clients over TLS too, with a throwaway client CA; implies
    /// `--mesh-tls`. The Bazel flags printed include the CA (and client
    /// certificate) to use.
    #[arg(long)]
    tls: bool,
    /// With `--tls`: whether clients must present a certificate.
    #[arg(long, value_enum, default_value = "off", requires = "tls")]
    tls_client_auth: crate::up_pki::UpClientAuth,
    /// A backing cache for node 0's executor (the cluster's shared tier 2), e.g. a
    /// BuildGrid or bazel-remote endpoint `grpc://host:port`.
    #[arg(long, conflicts_with = "peer_fill")]
    backing_cache: Option<String>,
    /// No shared tier 2: each node's executor reads its misses from the other nodes
    /// through its proxy's fill endpoint, as a Kubernetes cluster without a shared
    /// cache does.
    #[arg(long)]
    peer_fill: bool,
    /// Client gRPC address of node 0, the one Bazel is pointed at; the other nodes
    /// pick free ports. A fixed port lets a `.bazelrc` name the cluster.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Admin HTTP address of node 0 (status page, /metrics, /cluster).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecutorReady {
    grpc: SocketAddr,
    metrics: SocketAddr,
    load: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProxyReady {
    grpc: SocketAddr,
    admin: SocketAddr,
    gossip: SocketAddr,
    node_id: String,
    #[serde(default)]
    peer: Option<SocketAddr>,
}

/// One node of the cluster, as the ready line reports it.
#[derive(Debug, Serialize)]
struct NodeReport {
    node_id: String,
    grpc: SocketAddr,
    admin: SocketAddr,
    gossip: SocketAddr,
    /// The peer port (mutual TLS), with `--mesh-tls` or `--tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<SocketAddr>,
    proxy_pid: u32,
    executor: ExecutorReady,
    executor_pid: u32,
    data_dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct ClusterReady<'a> {
    ready: &'static str,
    /// Node 0's client and admin addresses: where Bazel and a browser go.
    grpc: SocketAddr,
    admin: SocketAddr,
    nodes: &'a [NodeReport],
    bazel_flags: Vec<String>,
}

fn executor_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("remesh-executor"),
    };
    if !path.is_file() {
        bail!(
            "remesh-executor not found at {} (build it with `cargo build -p remesh-executor`, or pass --executor)",
            path.display()
        );
    }
    Ok(path)
}

/// Polls node 0's `/cluster` until it lists `nodes` alive members with known load.
async fn wait_converged(admin: SocketAddr, nodes: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(alive)) = alive_with_load(admin).await
            && alive >= nodes
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the cluster did not converge to {nodes} nodes within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn alive_with_load(admin: SocketAddr) -> anyhow::Result<Option<usize>> {
    let mut stream = tokio::net::TcpStream::connect(admin).await?;
    stream
        .write_all(b"GET /cluster HTTP/1.0\r\nHost: admin\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let Some((_, body)) = response.split_once("\r\n\r\n") else {
        return Ok(None);
    };
    let report: remesh_proxy::admin::ClusterReport = serde_json::from_str(body)?;
    Ok(Some(
        report
            .members
            .iter()
            .filter(|m| m.state == "alive" && m.load.is_some_and(|l| l.max_concurrency > 0))
            .count(),
    ))
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.runners.len() > 1 && args.runners.len() != args.nodes {
        bail!(
            "--runners takes one value or one per node ({} nodes)",
            args.nodes
        );
    }
    let executor = executor_binary(args.executor)?;
    let proxy = std::env::current_exe().context("locating this binary")?;
    let temporary;
    let base = match args.data_dir {
        Some(dir) => dir,
        None => {
            temporary = TempDirectory::new()?;
            temporary.path.clone()
        }
    };
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let security_args = if args.insecure_plaintext_gossip {
        vec!["--insecure-plaintext-gossip".into()]
    } else {
        let path = base.join("gossip.keyring");
        write_secret(
            &path,
            &remesh_proxy::gossip_seal::Keyring::generate().export_secret_text(),
        )?;
        vec!["--gossip-keyring".into(), path.into_os_string()]
    };
    let pki = if args.tls || args.mesh_tls {
        let client_tls = args.tls.then_some(args.tls_client_auth);
        Some(crate::up_pki::UpPki::generate(
            &base, args.nodes, client_tls,
        )?)
    } else {
        None
    };
    let (mut children, mut exits) = Children::new();
    let started = start_nodes(
        &mut children,
        &executor,
        &proxy,
        &base,
        &args.runners,
        args.nodes,
        args.policy,
        if args.peer_fill {
            SharedTier::PeerFill
        } else {
            SharedTier::NodeZero(args.backing_cache.as_deref())
        },
        &security_args,
        pki.as_ref(),
        (args.listen, args.admin_listen),
    )
    .await;
    let nodes = match started {
        Ok(nodes) => nodes,
        Err(error) => {
            children.stop_all(&mut exits).await;
            return Err(error);
        }
    };
    if let Err(error) = wait_converged(nodes[0].admin, nodes.len()).await {
        children.stop_all(&mut exits).await;
        return Err(error);
    }

    // Only client TLS changes what Bazel dials; the mesh's TLS is between nodes.
    let scheme = if args.tls { "grpcs" } else { "grpc" };
    let mut bazel_flags = vec![
        format!("--remote_executor={scheme}://{}", nodes[0].grpc),
        "--remote_instance_name=main".to_owned(),
        // Every action remote, none silently run on the client instead.
        "--spawn_strategy=remote".to_owned(),
        "--noremote_local_fallback".to_owned(),
    ];
    if let Some(pki) = &pki {
        bazel_flags.extend(pki.bazel_flags.iter().cloned());
    }
    for node in &nodes {
        let peer = node
            .peer
            .map(|peer| format!("  peers (mTLS) {peer}"))
            .unwrap_or_default();
        eprintln!(
            "{}: {scheme}://{}{peer}  status page http://{}/  executor metrics http://{}/metrics  data {}",
            node.node_id,
            node.grpc,
            node.admin,
            node.executor.metrics,
            node.data_dir.display()
        );
    }
    eprintln!("bazel build {} //...", bazel_flags.join(" "));
    let ready = ClusterReady {
        ready: "remesh-cluster",
        grpc: nodes[0].grpc,
        admin: nodes[0].admin,
        nodes: &nodes,
        bazel_flags,
    };
    // Handlers before the ready line, so a SIGTERM sent on reading it stops the cluster.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    println!("{}", serde_json::to_string(&ready)?);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            Some((pid, status)) = exits.recv() => {
                if let Some(name) = children.running.remove(&pid) {
                    eprintln!("{name} (pid {pid}) exited: {status}");
                }
            }
        }
    }
    children.stop_all(&mut exits).await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn start_nodes(
    children: &mut Children,
    executor: &Path,
    proxy: &Path,
    base: &Path,
    runners: &[usize],
    count: usize,
    policy: Policy,
    shared_tier: SharedTier<'_>,
    security_args: &[std::ffi::OsString],
    pki: Option<&crate::up_pki::UpPki>,
    (first_listen, first_admin): (SocketAddr, SocketAddr),
) -> anyhow::Result<Vec<NodeReport>> {
    let mut nodes: Vec<NodeReport> = Vec::new();
    for index in 0..count {
        let node_id = format!("node-{index}");
        let dir = base.join(&node_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut command = Command::new(executor);
        command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--load-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"));
        if let Some(runners) = runners.get(index).or(runners.first()) {
            command.args(["--runners", &runners.to_string()]);
        }
        let fill_listen = match (shared_tier, nodes.first()) {
            (SharedTier::PeerFill, _) => {
                let fill = free_loopback_port()?;
                command
                    .args(["--backing-cache", &format!("grpc://{fill}")])
                    .arg("--backing-read-only");
                Some(fill)
            }
            (SharedTier::NodeZero(_), Some(first)) => {
                command.args([
                    "--backing-cache",
                    &format!("grpc://{}", first.executor.grpc),
                ]);
                None
            }
            (SharedTier::NodeZero(Some(url)), None) => {
                command.args(["--backing-cache", url]);
                None
            }
            (SharedTier::NodeZero(None), None) => None,
        };
        let (executor_pid, executor_ready): (u32, ExecutorReady) = children
            .spawn_ready(
                format!("{node_id} executor"),
                &mut command,
                &dir.join("executor.log"),
            )
            .await?;

        let mut command = Command::new(proxy);
        command
            .arg("serve")
            .args(["--node-id", &node_id])
            .args(["--listen", &node_address(index, first_listen)])
            .args(["--admin-listen", &node_address(index, first_admin)])
            .args(["--gossip-listen", "127.0.0.1:0"])
            .args(["--backend", &format!("grpc://{}", executor_ready.grpc)])
            .args(["--backend-mode", "executor"])
            .args(["--backend-load", &format!("grpc://{}", executor_ready.load)])
            .args(["--policy", policy_name(policy)])
            .args(security_args);
        if let Some(pki) = pki {
            // Peers meet on a mutual-TLS port of their own; clients keep `--listen`.
            command
                .args(["--peer-listen", "127.0.0.1:0"])
                .args(pki.node_flags(index));
        }
        if let Some(first) = nodes.first() {
            command.args(["--join", &first.gossip.to_string()]);
        }
        if let Some(fill) = fill_listen {
            command.args(["--fill-listen", &fill.to_string()]);
        }
        let (proxy_pid, proxy_ready): (u32, ProxyReady) = children
            .spawn_ready(
                format!("{node_id} proxy"),
                &mut command,
                &dir.join("proxy.log"),
            )
            .await?;
        nodes.push(NodeReport {
            node_id: proxy_ready.node_id,
            grpc: proxy_ready.grpc,
            admin: proxy_ready.admin,
            gossip: proxy_ready.gossip,
            peer: proxy_ready.peer,
            proxy_pid,
            executor: executor_ready,
            executor_pid,
            data_dir: dir,
        });
    }
    Ok(nodes)
}

/// Where the nodes' executors find what their own disk lacks.
#[derive(Clone, Copy)]
enum SharedTier<'a> {
    /// Node 0's executor is every other node's backing cache; node 0 has this one,
    /// if any.
    NodeZero(Option<&'a str>),
    /// Each executor asks the other nodes through its proxy's fill endpoint.
    PeerFill,
}

/// A loopback port free right now. The executor must be told its fill endpoint
/// before the proxy that serves it starts; it connects lazily, so the proxy binding
/// the port a moment later is enough. The OS does not hand a just-released port
/// out again at once, so the window for another process to take it is small.
fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("picking a free port")?;
    Ok(probe.local_addr()?)
}

/// Writes key material readable by this user only.
pub(crate) fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::LeastLoaded => "least-loaded",
        Policy::P2c => "p2c",
        Policy::Affinity => "affinity",
    }
}

/// A temporary directory removed when `up` returns.
struct TempDirectory {
    path: PathBuf,
}

impl TempDirectory {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "remesh-up-{}-{}",
            std::process::id(),
            remesh_proxy::membership::identity::generation_now()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Node 0 takes the address asked for; the others a free port on loopback.
fn node_address(index: usize, first: SocketAddr) -> String {
    if index == 0 {
        first.to_string()
    } else {
        "127.0.0.1:0".to_owned()
    }
}
