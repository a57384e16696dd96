//! The Dockerfile builds both binaries in a multi-stage build, runs them as a non-root
//! user and exposes their default ports.

use crate::problems::Problems;
use crate::{DOCKERFILE, read};

#[test]
fn the_image_builds_and_exposes_both_binaries() {
    let dockerfile = read(DOCKERFILE);
    // Join continuation lines so each instruction is one line.
    let instructions: Vec<String> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let with = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter_map(|line| line.strip_prefix(keyword))
            .filter_map(|rest| rest.strip_prefix(' '))
            .collect()
    };
    let exposed: Vec<String> = with("EXPOSE")
        .iter()
        .flat_map(|rest| rest.split_whitespace())
        .map(|port| {
            if port.contains('/') {
                port.to_owned()
            } else {
                format!("{port}/tcp")
            }
        })
        .collect();
    let proxy = remesh_proxy::Config::default();
    let executor = remesh_executor::Config::default();
    let mut problems = Problems::default();
    for (what, port, protocol) in [
        ("proxy listen", proxy.listen.port(), "tcp"),
        ("proxy admin_listen", proxy.admin_listen.port(), "tcp"),
        ("proxy gossip_listen", proxy.gossip_listen.port(), "udp"),
        ("executor listen", executor.listen.port(), "tcp"),
        ("executor load_listen", executor.load_listen.port(), "tcp"),
        (
            "executor metrics_listen",
            executor.metrics_listen.port(),
            "tcp",
        ),
    ] {
        let wanted = format!("{port}/{protocol}");
        problems.check(exposed.contains(&wanted), || {
            format!("{DOCKERFILE}: EXPOSE lacks {wanted} ({what} default); has {exposed:?}")
        });
    }
    let gossip_tcp = format!("{}/tcp", proxy.gossip_listen.port());
    problems.check(!exposed.contains(&gossip_tcp), || {
        format!("{DOCKERFILE}: gossip is UDP only, yet {gossip_tcp} is exposed")
    });
    problems.check(with("FROM").len() >= 2, || {
        format!("{DOCKERFILE}: not multi-stage")
    });
    let build = with("RUN")
        .into_iter()
        .find(|run| run.contains("cargo build"));
    problems.check(
        build.is_some_and(|build| {
            ["--release", "--locked", "-p remesh-executor", "-p remesh-proxy"]
                .iter()
                .all(|part| build.contains(part))
        }),
        || format!("{DOCKERFILE}: no `cargo build --release --locked -p remesh-executor -p remesh-proxy`"),
    );
    problems.check(
        with("COPY").iter().any(|copy| {
            copy.starts_with("--from=")
                && copy.contains("remesh-proxy")
                && copy.contains("remesh-executor")
                && copy.ends_with("/usr/local/bin/")
        }),
        || format!("{DOCKERFILE}: does not copy both binaries to /usr/local/bin/"),
    );
    let user = with("USER").last().map(|user| user.to_string());
    problems.check(
        user.as_deref()
            .is_some_and(|user| !["root", "0", "0:0"].contains(&user)),
        || format!("{DOCKERFILE}: the runtime stage must end as a non-root USER, has {user:?}"),
    );
    let packages = ["bash", "coreutils", "ca-certificates"];
    problems.check(
        with("RUN")
            .iter()
            .any(|run| packages.iter().all(|p| run.contains(p))),
        || format!("{DOCKERFILE}: the runtime must install {packages:?}"),
    );
    // cargo needs every workspace member in the build context.
    let workspace: toml::Table = read("Cargo.toml").parse().unwrap();
    let copies = with("COPY");
    for member in workspace["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        problems.check(
            copies
                .iter()
                .any(|copy| copy.split_whitespace().next() == Some(member)),
            || format!("{DOCKERFILE}: workspace member {member} is not copied into the builder"),
        );
    }
    problems.finish();
}
