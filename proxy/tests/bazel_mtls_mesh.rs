//! A real Bazel builds every shared workspace through a three-node mesh whose
//! proxies meet only on mutual-TLS peer ports, with sealed gossip: what the
//! "Trust" goal asks of a deployment.
//!
//! Each node is a real `remesh-executor` and a real `remesh-proxy serve` started
//! with the flags a user would give: `--peer-listen`, the `--mesh-tls-*` files of a
//! mesh CA generated at test time, and a keyring from `remesh-proxy keygen`.
//! Bazel talks plaintext to node A's client port on loopback (the Bazel here
//! cannot use `grpcs://` at all); node A has one runner and B and C four, so A
//! forwards work over the mesh. B's and C's executors use A's as their shared tier
//! 2 (the executors' own loopback connection, not peer traffic of the proxies).
//!
//! What a user would check: `hello`, `fan`, `fail` (fails the right way, `ok` still
//! builds) and `big` build with correct outputs; B's and C's executors ran
//! actions; the proxies' `/metrics` show mesh handshakes on the peer ports, no
//! refused handshake, no connection to B's or C's client port and no hop header
//! sent to any client port (no peer traffic outside mutual TLS); gossip was sealed
//! and opened, nothing forged.

mod support;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::node::{Node, NodeSpec};
use support::processes::{EXECUTIONS, metric, proxy_binary};
use support::real::{BAZEL, Bazel, require};
use support::secure::Ca;

const BUILD_LIMIT: Duration = Duration::from_secs(300);
const CONVERGE: Duration = Duration::from_secs(30);
const BIG_BYTES: usize = 52_428_800;

/// A keyring made the way the README says: `remesh-proxy keygen > keyring`.
fn keygen(path: &Path) -> std::path::PathBuf {
    let output = std::process::Command::new(proxy_binary())
        .arg("keygen")
        .output()
        .expect("running remesh-proxy keygen");
    assert!(output.status.success(), "keygen: {output:?}");
    std::fs::write(path, &output.stdout).expect("writing the keyring");
    path.to_owned()
}

/// `spec` with a peer port under `mesh`'s certificate for it and sealed gossip.
fn in_the_mesh(spec: NodeSpec, mesh: &Ca, keyring: &Path) -> NodeSpec {
    let leaf = mesh.leaf(&spec.node_id, &[]);
    let path = |p: &Path| p.to_string_lossy().into_owned();
    NodeSpec {
        gossip_keyring: Some(keyring.to_owned()),
        proxy_args: vec![
            "--peer-listen".into(),
            "127.0.0.1:0".into(),
            "--mesh-tls-ca-file".into(),
            path(&mesh.pem_file),
            "--mesh-tls-cert-file".into(),
            path(&leaf.cert),
            "--mesh-tls-key-file".into(),
            path(&leaf.key),
        ],
        ..spec
    }
}

fn rexec(node: &Node, targets: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--config=rexec".to_owned(),
        format!("--remote_executor=grpc://{}", node.grpc()),
    ];
    args.extend(targets.iter().map(|t| (*t).to_owned()));
    args
}

fn output(bazel: &Bazel, workspace: &str, file: &str) -> Vec<u8> {
    let path = bazel.root.join(workspace).join("bazel-bin").join(file);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// What the `all` genrule of `fan` must produce (as in `bazel_fan`).
fn expected_all_txt() -> String {
    let mut parts = String::new();
    for i in 0..50 {
        let line = format!("part {i}\n");
        parts.push_str(&line.to_uppercase());
        parts.push_str(&format!(
            "{}  -\n",
            hex::encode(Sha256::digest(line.as_bytes()))
        ));
    }
    let hash = hex::encode(Sha256::digest(parts.as_bytes()));
    format!("{parts}{hash}\n")
}

async fn executions(node: &Node) -> f64 {
    metric(node.executor.ready.metrics, EXECUTIONS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bazel_builds_every_workspace_through_an_mtls_mesh_with_sealed_gossip() {
    require(BAZEL, "Bazel (Debian bazel-bootstrap)");
    let dir = tempfile::tempdir().unwrap();
    let mesh = Ca::new(dir.path(), "mesh");
    let keyring = keygen(&dir.path().join("keyring"));

    let mut specs: Vec<NodeSpec> = [("a", 1), ("b", 4), ("c", 4)]
        .into_iter()
        .map(|(id, runners)| {
            in_the_mesh(NodeSpec::loopback(id, dir.path(), runners), &mesh, &keyring)
        })
        .collect();
    let join: Vec<String> = specs.iter().map(|s| s.gossip_listen.to_string()).collect();
    for spec in &mut specs {
        spec.join = join.clone();
    }
    let [a, b, c] = <[NodeSpec; 3]>::try_from(specs).unwrap();
    let a = Node::start(a).await;
    let tier2 = vec![
        "--backing-cache".to_owned(),
        format!("grpc://{}", a.executor.ready.grpc),
    ];
    let b = Node::start(NodeSpec {
        executor_args: tier2.clone(),
        ..b
    })
    .await;
    let c = Node::start(NodeSpec {
        executor_args: tier2,
        ..c
    })
    .await;
    let nodes = [&a, &b, &c];
    for node in nodes {
        assert!(
            node.proxy.ready.peer.is_some(),
            "{} has a peer port",
            node.id()
        );
        for id in ["a", "b", "c"] {
            support::wait_member_state(node.admin(), id, "alive", CONVERGE).await;
        }
    }
    let bazel = Bazel::new(dir.path());

    // hello: one action, its output fetched back.
    let build = bazel
        .run("hello", "build", &rexec(&a, &["//..."]), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&build);
    assert!(build.status.success(), "hello: {text}");
    assert!(text.contains("1 remote"), "hello ran remotely: {text}");
    let hello = String::from_utf8(output(&bazel, "hello", "hello.txt")).unwrap();
    let lines: Vec<&str> = hello.lines().collect();
    assert_eq!(lines.len(), 3, "{hello:?}");
    assert!(lines[0].starts_with("hello from "), "{hello:?}");
    assert_eq!(lines[1], "WORLD");
    let first_two = format!("{}\n{}\n", lines[0], lines[1]);
    assert!(
        lines[2].starts_with(&hex::encode(Sha256::digest(first_two.as_bytes()))),
        "{hello:?}"
    );

    // fan: 51 actions, more than A's one runner can take: B and C must share.
    let before = [executions(&b).await, executions(&c).await];
    let build = bazel
        .run("fan", "build", &rexec(&a, &["//..."]), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&build);
    assert!(build.status.success(), "fan: {text}");
    assert!(text.contains("51 remote"), "fan: {text}");
    assert_eq!(
        String::from_utf8(output(&bazel, "fan", "all.txt")).unwrap(),
        expected_all_txt()
    );
    let ran = [
        executions(&b).await - before[0],
        executions(&c).await - before[1],
    ];
    assert!(
        ran[0] > 0.0 && ran[1] > 0.0,
        "B and C ran part of fan: {ran:?}"
    );

    // fail: the action's exit fails the build, its output reaches the user.
    let build = bazel
        .run("fail", "build", &rexec(&a, &["//:fail"]), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&build);
    assert_eq!(build.status.code(), Some(1), "fail: {text}");
    assert!(text.contains("deliberate failure on stderr"), "{text}");
    assert!(text.contains("about to fail"), "{text}");
    let build = bazel
        .run("fail", "build", &rexec(&a, &["//:ok"]), BUILD_LIMIT)
        .await;
    assert!(build.status.success(), "ok: {}", Bazel::text(&build));
    assert_eq!(output(&bazel, "fail", "ok.txt"), b"ok\n");

    // big: 50 MiB produced remotely, consumed remotely, downloaded intact.
    let build = bazel
        .run("big", "build", &rexec(&a, &["//..."]), BUILD_LIMIT)
        .await;
    assert!(build.status.success(), "big: {}", Bazel::text(&build));
    let expected: Vec<u8> = b"reapi-big-blob-0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(BIG_BYTES)
        .collect();
    let sum = String::from_utf8(output(&bazel, "big", "big.sum")).unwrap();
    assert_eq!(
        sum,
        format!("{}\n{BIG_BYTES}\n", hex::encode(Sha256::digest(&expected)))
    );
    let big = output(&bazel, "big", "big.bin");
    assert_eq!(big.len(), BIG_BYTES);
    assert!(big == expected, "big.bin arrived intact");

    // The mesh, as its metrics tell it.
    assert!(
        metric(
            a.admin(),
            "remesh_proxy_forwards_total{peer=\"b\",outcome=\"accepted\"}"
        )
        .await
            + metric(
                a.admin(),
                "remesh_proxy_forwards_total{peer=\"c\",outcome=\"accepted\"}"
            )
            .await
            > 0.0,
        "A forwarded work"
    );
    assert!(
        metric(
            a.admin(),
            "remesh_proxy_grpc_connections_total{listener=\"client\"}"
        )
        .await
            >= 1.0,
        "Bazel used A's client port"
    );
    for node in [&b, &c] {
        let admin = node.admin();
        let mesh_handshakes =
            metric(admin, "remesh_proxy_tls_handshakes_total{outcome=\"mesh\"}").await;
        let peer_port = metric(
            admin,
            "remesh_proxy_grpc_connections_total{listener=\"peer\"}",
        )
        .await;
        let client_port = metric(
            admin,
            "remesh_proxy_grpc_connections_total{listener=\"client\"}",
        )
        .await;
        assert!(mesh_handshakes >= 1.0, "{}: mesh handshakes", node.id());
        assert!(peer_port >= 1.0, "{}: peer port used", node.id());
        assert_eq!(
            client_port,
            0.0,
            "{}: nobody used its client port",
            node.id()
        );
    }
    for node in nodes {
        let admin = node.admin();
        let id = node.id();
        for (name, expected_zero) in [
            (
                "remesh_proxy_tls_handshakes_total{outcome=\"refused\"}",
                true,
            ),
            ("remesh_proxy_hop_headers_ignored_total", true),
            (
                "remesh_proxy_gossip_seal_packets_total{outcome=\"forged\"}",
                true,
            ),
            (
                "remesh_proxy_gossip_seal_packets_total{outcome=\"sealed\"}",
                false,
            ),
            (
                "remesh_proxy_gossip_seal_packets_total{outcome=\"opened\"}",
                false,
            ),
        ] {
            let value = metric(admin, name).await;
            if expected_zero {
                assert_eq!(value, 0.0, "{id}: {name}");
            } else {
                assert!(value > 0.0, "{id}: {name} is {value}");
            }
        }
    }
}
