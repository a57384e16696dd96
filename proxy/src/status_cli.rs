//! `remesh-proxy status`: asks one running node's admin port for `/cluster` over
//! plain HTTP and prints the cluster as that node sees it: a table of members (node,
//! state, gRPC address, queued / executing / max, age of the last load record, Executes
//! forwarded to it) and the newest membership events.
//!
//! It only reads; an unreachable or wrong address ends with a message saying what was
//! tried and a non-zero exit, so scripts and people can tell "down" from "empty".

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use remesh_proxy::admin::ClusterReport;
use remesh_proxy::admin::cluster_json::{ForwardReport, MemberReport};

/// A report is a few kilobytes per member; this bounds what a wrong address can make
/// the command buffer.
const MAX_REPORT_BYTES: usize = 8 << 20;

/// Membership events printed under the table (the report may hold more).
const EVENTS_SHOWN: usize = 8;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Admin address of any running node (its `admin_listen`): `host:port` or
    /// `http://host:port`.
    #[arg(long, env = "REMESH_ADMIN", default_value = "127.0.0.1:9466")]
    admin: String,
    /// Print the `/cluster` JSON as received instead of a table.
    #[arg(long)]
    json: bool,
    /// How long to wait for the admin port to answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Why no status could be shown.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0:?} is not an admin address; give host:port or http://host:port")]
    BadAddress(String),
    #[error(
        "cannot reach the admin port at {url}: {reason}. Is remesh-proxy running there? \
         (--admin takes the node's admin_listen address)"
    )]
    Unreachable { url: String, reason: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered HTTP {status}; is this a remesh-proxy admin port?")]
    HttpStatus { url: String, status: u16 },
    #[error("{url} did not send a cluster report: {reason}")]
    BadReport { url: String, reason: String },
}

/// Runs the command; the exit code says whether the report was printed.
pub async fn run(args: StatusArgs) -> ExitCode {
    match fetch(&args).await {
        Ok((body, report)) => {
            if args.json {
                println!("{}", String::from_utf8_lossy(&body));
            } else {
                print!("{}", render(&report));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("remesh-proxy status: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `http://host:port/cluster` from what the user typed.
pub fn cluster_url(admin: &str) -> Result<http::Uri, StatusError> {
    let bad = || StatusError::BadAddress(admin.to_owned());
    let base = admin.trim().trim_end_matches('/');
    let base = match base.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return Err(bad()),
        None => base,
    };
    if base.is_empty() || base.contains('/') {
        return Err(bad());
    }
    let uri: http::Uri = format!("http://{base}/cluster")
        .parse()
        .map_err(|_| bad())?;
    if uri.port().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

async fn fetch(args: &StatusArgs) -> Result<(Bytes, ClusterReport), StatusError> {
    let uri = cluster_url(&args.admin)?;
    let url = uri.to_string();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let exchange = async {
        let response = client
            .get(uri)
            .await
            .map_err(|error| StatusError::Unreachable {
                url: url.clone(),
                reason: causes(&error),
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(StatusError::HttpStatus {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        let body = Limited::new(response.into_body(), MAX_REPORT_BYTES)
            .collect()
            .await
            .map_err(|error| StatusError::BadReport {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        Ok(body.to_bytes())
    };
    let body = tokio::time::timeout(args.timeout, exchange)
        .await
        .map_err(|_| StatusError::Timeout {
            url: url.clone(),
            timeout: args.timeout,
        })??;
    let report = serde_json::from_slice(&body).map_err(|error| StatusError::BadReport {
        url,
        reason: error.to_string(),
    })?;
    Ok((body, report))
}

/// An error and its causes, innermost last ("client error (Connect): tcp connect
/// error: Connection refused (os error 111)").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// A duration as people read it at a glance: `850ms`, `4.2s`, `3m 12s`, `2h 5m`.
fn human(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".into();
    }
    if seconds < 1.0 {
        return format!("{}ms", (seconds * 1000.0) as u64);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds as u64;
    let (days, hours, minutes) = (whole / 86_400, whole % 86_400 / 3600, whole % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m {}s", whole % 60)
    }
}

fn state_of(member: &MemberReport) -> String {
    if member.leaving && member.state != "down" {
        format!("{} (leaving)", member.state)
    } else {
        member.state.clone()
    }
}

fn forwarded(member: &MemberReport, forwards: &[ForwardReport]) -> String {
    if member.local {
        return "-".into();
    }
    let Some(f) = forwards.iter().find(|f| f.peer == member.node_id) else {
        return "0".into();
    };
    let mut text = f.accepted.to_string();
    if f.refused + f.failed > 0 {
        let _ = write!(text, " ({} refused, {} failed)", f.refused, f.failed);
    }
    text
}

/// The report as a table plus recent events, ending with a newline.
pub fn render(report: &ClusterReport) -> String {
    let mut members: Vec<&MemberReport> = report.members.iter().collect();
    members.sort_by(|a, b| b.local.cmp(&a.local).then(a.node_id.cmp(&b.node_id)));
    let header = [
        "NODE",
        "STATE",
        "GRPC",
        "QUEUED",
        "EXECUTING",
        "MAX",
        "UPDATED",
        "FORWARDED",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for member in &members {
        let name = if member.local {
            format!("{} *", member.node_id)
        } else {
            member.node_id.clone()
        };
        let (queued, executing, max) = member.load.map_or_else(
            || ("-".into(), "-".into(), "-".into()),
            |load| {
                (
                    load.queued.to_string(),
                    load.executing.to_string(),
                    load.max_concurrency.to_string(),
                )
            },
        );
        let updated = match (member.local, member.load_age_seconds) {
            (true, _) => "local".into(),
            (false, Some(age)) => format!("{} ago", human(age)),
            (false, None) => "never".into(),
        };
        rows.push([
            name,
            state_of(member),
            member.grpc_addr.clone(),
            queued,
            executing,
            max,
            updated,
            forwarded(member, &report.forwards),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let alive = members.iter().filter(|m| m.state == "alive").count();
    let mut out = format!(
        "cluster seen by {} (up {}): {} members, {} alive; cluster queue depth {}\n",
        report.node_id,
        human(report.uptime_seconds),
        members.len(),
        alive,
        report.cluster_queue_depth
    );
    if let (Some(client), Some(peer)) = (&report.client_addr, &report.peer_addr) {
        // GRPC is what members gossip: with a peer port, not where clients go.
        let _ = writeln!(
            out,
            "{} serves clients at {client} and peers (mutual TLS) at {peer}; GRPC is the \
             address peers dial",
            report.node_id
        );
    }
    out.push('\n');
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Numbers line up on the right, words on the left.
            let numeric = (3..=5).contains(&index);
            let pad = width - cell.chars().count();
            if numeric {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("(* = the node answering)\n");
    if !report.events.is_empty() {
        out.push_str("\nrecent membership events (newest first):\n");
        for event in report.events.iter().rev().take(EVENTS_SHOWN) {
            let _ = writeln!(
                out,
                "  {:>9} ago  {:<8} {} ({})",
                human(event.age_seconds),
                event.event.event,
                event.event.node_id,
                event.event.gossip_addr
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_become_cluster_urls() {
        assert_eq!(
            cluster_url("127.0.0.1:9466").unwrap(),
            "http://127.0.0.1:9466/cluster"
        );
        assert_eq!(
            cluster_url("http://node-1:9466/").unwrap(),
            "http://node-1:9466/cluster"
        );
        for bad in ["", "https://a:1", "a:1/x", "no-port", "ftp://a:1", "a b:1"] {
            assert!(
                matches!(cluster_url(bad), Err(StatusError::BadAddress(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_table_lists_every_member_with_its_load() {
        let json = r#"{
          "node_id": "a", "cluster_queue_depth": 3, "uptime_seconds": 192.5,
          "members": [
            {"node_id":"b","state":"suspect","gossip_addr":"127.0.0.1:2","grpc_addr":"127.0.0.1:20",
             "generation":1,"local":false,"leaving":false,
             "load":{"queued":3,"executing":4,"max_concurrency":4},"load_age_seconds":2.25},
            {"node_id":"a","state":"alive","gossip_addr":"127.0.0.1:1","grpc_addr":"127.0.0.1:10",
             "generation":1,"local":true,"leaving":false,
             "load":{"queued":0,"executing":1,"max_concurrency":16},"load_age_seconds":0.0}
          ],
          "forwards": [{"peer":"b","accepted":5,"refused":1,"failed":0}],
          "events": [{"at_unix_ms":1,"node_id":"b","gossip_addr":"127.0.0.1:2",
                      "event":"join","age_seconds":61.0}]
        }"#;
        let report: ClusterReport = serde_json::from_str(json).unwrap();
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "cluster seen by a (up 3m 12s): 2 members, 1 alive; cluster queue depth 3"
        );
        assert!(lines[2].starts_with("NODE "), "{text}");
        let columns = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            columns(lines[3]),
            [
                "a",
                "*",
                "alive",
                "127.0.0.1:10",
                "0",
                "1",
                "16",
                "local",
                "-"
            ]
        );
        assert_eq!(
            columns(lines[4]),
            [
                "b",
                "suspect",
                "127.0.0.1:20",
                "3",
                "4",
                "4",
                "2.2s",
                "ago",
                "5",
                "(1",
                "refused,",
                "0",
                "failed)"
            ]
        );
        assert!(
            text.contains("1m 1s ago  join     b (127.0.0.1:2)"),
            "{text}"
        );
    }

    #[test]
    fn a_node_with_a_peer_port_names_both_addresses() {
        let json = r#"{
          "node_id": "a", "cluster_queue_depth": 0, "uptime_seconds": 1.0,
          "client_addr": "127.0.0.1:8980", "peer_addr": "127.0.0.1:8991",
          "members": [
            {"node_id":"a","state":"alive","gossip_addr":"127.0.0.1:1","grpc_addr":"127.0.0.1:8991",
             "generation":1,"local":true,"leaving":false,
             "load":{"queued":0,"executing":0,"max_concurrency":1},"load_age_seconds":0.0}
          ]
        }"#;
        let report: ClusterReport = serde_json::from_str(json).unwrap();
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "a serves clients at 127.0.0.1:8980 and peers (mutual TLS) at 127.0.0.1:8991; \
             GRPC is the address peers dial"
        );
        assert!(lines[3].starts_with("NODE "), "{text}");
        // Without a peer port the table alone says it: no extra line.
        let shared: ClusterReport =
            serde_json::from_str(&json.replace(r#""peer_addr": "127.0.0.1:8991","#, "")).unwrap();
        assert!(render(&shared).lines().nth(2).unwrap().starts_with("NODE "));
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(0.25), "250ms");
        assert_eq!(human(4.25), "4.2s");
        assert_eq!(human(3725.0), "1h 2m");
        assert_eq!(human(90_000.0), "1d 1h");
        assert_eq!(human(f64::NAN), "-");
    }
}
