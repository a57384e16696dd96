//! Private networks for partition tests: one network namespace per node, each with an
//! `eth0` cabled (a veth pair) to a bridge that lives in a namespace of its own, and
//! addresses `10.77.0.<n>/24` that exist only there. Unplugging a node's cable
//! (`ip link set … down` on the bridge side) partitions it from the others.
//!
//! Names are unique per test process, and dropping `Network` deletes every namespace
//! it made (their veths go with them). Processes inside must be gone first: declare the
//! `Network` before the nodes, so it drops after them.
//!
//! Each node namespace also gets a private `hosts` and `resolv.conf` under
//! `/etc/netns/<name>/`, which `ip netns exec` mounts over `/etc/hosts` and
//! `/etc/resolv.conf` for what it runs there. Names resolve from that `hosts` file
//! only (the resolver named is the namespace's own loopback, where nothing answers), so
//! a test can give a name A records the way a DNS server would, and nothing inside
//! asks a real DNS server. `Network` removes those directories when dropped.
//!
//! The test process cannot open sockets inside a namespace, so it acts there through
//! `ip netns exec NS remesh-probe …` (a tests-crate binary, built with the others).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::node::NodeSpec;
use super::processes::proxy_binary;

/// Every node listens on the same ports, each at its own address, as pods do.
pub const GRPC_PORT: u16 = 8990;
pub const ADMIN_PORT: u16 = 9466;
pub const GOSSIP_PORT: u16 = 7946;

/// Namespaces, a bridge and one cabled namespace per node.
pub struct Network {
    bridge_ns: String,
    nodes: Vec<String>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running `ip {}`: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fails the test, saying why, unless this process may create network namespaces.
pub fn require_namespaces() {
    // /proc/self belongs to the effective user.
    let uid = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").expect("reading /proc/self"),
    );
    assert!(
        uid == 0,
        "this test creates network namespaces and must run as root (CI does)"
    );
    let found = Command::new("ip").arg("-V").output();
    assert!(
        found.is_ok_and(|output| output.status.success()),
        "this test needs `ip` from iproute2 (apt-get install iproute2)"
    );
}

impl Network {
    /// `count` node namespaces named `rmt<pid>-<letter>`, all on one bridge.
    pub fn create(count: usize) -> Self {
        require_namespaces();
        let tag = format!("rmt{}", std::process::id());
        let mut network = Self {
            bridge_ns: format!("{tag}-br"),
            nodes: Vec::new(),
        };
        ip(&["netns", "add", &network.bridge_ns]);
        let br = network.bridge_ns.clone();
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for index in 0..count {
            let ns = format!("{tag}-{}", (b'a' + index as u8) as char);
            ip(&["netns", "add", &ns]);
            network.nodes.push(ns.clone());
            network.write_resolver_files(index);
            let cable = Self::cable(index);
            ip(&[
                "-n", &br, "link", "add", &cable, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &br, "link", "set", &cable, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &cable, "up"]);
            let address = format!("{}/24", Self::address(index));
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        network
    }

    /// The bridge-side end of node `index`'s cable (names are per namespace).
    fn cable(index: usize) -> String {
        format!("cable{index}")
    }

    /// Node `index`'s address, inside its namespace only.
    pub fn address(index: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, index as u8 + 1))
    }

    pub fn addr(index: usize, port: u16) -> SocketAddr {
        SocketAddr::new(Self::address(index), port)
    }

    pub fn namespace(&self, index: usize) -> &str {
        &self.nodes[index]
    }

    /// Node `index` (`id`, with `runners`) inside its namespace, on its own address
    /// and the common ports, joining through `join`; its files under `dir`.
    pub fn node_spec(
        &self,
        index: usize,
        id: &str,
        dir: &Path,
        runners: usize,
        join: &[String],
    ) -> NodeSpec {
        NodeSpec {
            netns: Some(self.namespace(index).to_owned()),
            listen: Self::addr(index, GRPC_PORT),
            admin_listen: Self::addr(index, ADMIN_PORT),
            gossip_listen: Self::addr(index, GOSSIP_PORT),
            executor_listen: Self::addr(index, 0),
            join: join.to_vec(),
            ..NodeSpec::loopback(id, dir, runners)
        }
    }

    /// The node ids node `index` reports alive with a load record, read from inside
    /// its namespace; `None` while its admin port does not answer.
    pub async fn alive_members(&self, index: usize) -> Option<Vec<String>> {
        let report = cluster_in(self.namespace(index), Self::addr(index, ADMIN_PORT)).await?;
        let mut alive: Vec<String> = report
            .members
            .into_iter()
            .filter(|member| member.state == "alive" && member.load.is_some())
            .map(|member| member.node_id)
            .collect();
        alive.sort_unstable();
        Some(alive)
    }

    /// The directory whose files `ip netns exec` mounts over `/etc` in node `index`'s
    /// namespace.
    fn etc_dir(&self, index: usize) -> PathBuf {
        Path::new("/etc/netns").join(&self.nodes[index])
    }

    /// Rewrites node `index`'s private `hosts` file: localhost plus `records` (address,
    /// name), a name listed several times resolving to every address given for it.
    /// The file is rewritten in place, so processes already running in the namespace
    /// see the new records at their next lookup.
    pub fn write_hosts(&self, index: usize, records: &[(IpAddr, &str)]) {
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (address, name) in records {
            hosts.push_str(&format!("{address} {name}\n"));
        }
        let path = self.etc_dir(index).join("hosts");
        std::fs::write(&path, hosts)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    }

    /// A resolver that answers from the hosts file only, which names localhost alone.
    fn write_resolver_files(&self, index: usize) {
        let dir = self.etc_dir(index);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        // A query that gets past the hosts file is refused at once, inside.
        std::fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap_or_else(|error| panic!("writing {}/resolv.conf: {error}", dir.display()));
        self.write_hosts(index, &[]);
    }

    /// Unplugs (`false`) or plugs back (`true`) node `index`'s cable.
    pub fn set_link(&self, index: usize, up: bool) {
        let cable = Self::cable(index);
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.bridge_ns, "link", "set", &cable, state]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            let _ = std::fs::remove_dir_all(self.etc_dir(index));
        }
        for ns in self.nodes.iter().chain([&self.bridge_ns]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The `remesh-probe` binary (built next to the proxy by `executor_binary()`).
pub fn probe_binary() -> PathBuf {
    super::processes::executor_binary();
    let path = proxy_binary().with_file_name("remesh-probe");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// Runs `remesh-probe args` (inside `ns` when given); its stdout on success, else
/// the error text.
pub async fn probe(ns: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut command = match ns {
        Some(ns) => {
            let mut command = tokio::process::Command::new("ip");
            command.args(["netns", "exec", ns]).arg(probe_binary());
            command
        }
        None => tokio::process::Command::new(probe_binary()),
    };
    let output = command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A node's `/cluster`, read from inside its namespace.
pub async fn cluster_in(ns: &str, admin: SocketAddr) -> Option<remesh_proxy::admin::ClusterReport> {
    let body = probe(Some(ns), &["get", &admin.to_string(), "/cluster"])
        .await
        .ok()?;
    serde_json::from_str(&body).ok()
}

/// What `remesh-probe execute` reports.
#[derive(Debug, serde::Deserialize)]
pub struct Executed {
    pub name: String,
    pub exit_code: Option<i32>,
    pub status_code: i32,
}

impl Executed {
    /// The node id in `remesh/<node_id>/…`.
    pub fn owner(&self) -> &str {
        self.name.split('/').nth(1).unwrap_or_default()
    }
}

/// Runs `/bin/sh -c shell` through the proxy at `grpc` (from inside `ns` when given)
/// and checks that it succeeded.
pub async fn execute(ns: Option<&str>, grpc: SocketAddr, salt: &str, shell: &str) -> Executed {
    let line = probe(ns, &["execute", &grpc.to_string(), salt, shell])
        .await
        .unwrap_or_else(|error| panic!("Execute {salt:?} through {grpc}: {error}"));
    let executed: Executed = serde_json::from_str(line.trim())
        .unwrap_or_else(|error| panic!("probe output {line:?}: {error}"));
    assert_eq!(executed.status_code, 0, "{salt}: {executed:?}");
    assert_eq!(executed.exit_code, Some(0), "{salt}: {executed:?}");
    executed
}
