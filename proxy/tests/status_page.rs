//! The status page in a real browser: Debian's headless Chromium loads `/` from a
//! three-node loopback cluster, runs the page's script, and the resulting DOM lists
//! the three members as alive, with this node's forwards and the join events; a
//! screenshot of the page is a real PNG of the requested size.
//!
//! The screenshot is also kept in cargo's test scratch directory
//! (`target/tmp/status-page.png`) for people to look at.

mod support;

use support::fake_backend::execute_request;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use remesh_proto::reapi::execution_client::ExecutionClient;
use support::fake_backend::FakeBackend;
use support::{RunningProxy, start_proxy, wait_member_state};

const CHROMIUM: &str = "/usr/bin/chromium";
const CONVERGE: Duration = Duration::from_secs(30);
/// Chromium starts in a few seconds when idle; a loaded CI machine gets much more.
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test needs Debian's Chromium at {CHROMIUM}: apt-get install chromium"
    );
}

/// Kills the browser's whole process group (its renderer and helpers included) if the
/// test ends before the browser does.
struct BrowserGroup {
    leader: Option<u32>,
}

impl Drop for BrowserGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.leader {
            let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
        }
    }
}

/// Runs headless Chromium on `url` with `extra` flags; a profile of its own in
/// `profile`, nothing but loopback traffic.
async fn chromium(profile: &Path, extra: &[String], url: &str) -> Output {
    let mut command = tokio::process::Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = command.spawn().expect("starting chromium");
    let mut group = BrowserGroup { leader: child.id() };
    let output = tokio::time::timeout(BROWSER_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish within {BROWSER_DEADLINE:?}"))
        .expect("waiting for chromium");
    // It exited on its own; its group is gone with it.
    group.leader = None;
    output
}

/// Three nodes joined through the first; the first has one slot, the others four.
async fn start_cluster() -> Vec<RunningProxy> {
    let mut proxies: Vec<RunningProxy> = Vec::new();
    for (id, capacity) in [("p-a", 1), ("p-b", 4), ("p-c", 4)] {
        let backend = FakeBackend::default().start().await;
        let mut config = support::loopback_config(id, backend);
        config.capacity = capacity;
        config.load_heartbeat = Duration::from_millis(300);
        config.join_interval = Duration::from_millis(500);
        if let Some(first) = proxies.first() {
            config.join = vec![first.ready.gossip.to_string()];
        }
        proxies.push(start_proxy(config).await);
    }
    for proxy in &proxies {
        for id in ["p-a", "p-b", "p-c"] {
            wait_member_state(proxy.ready.admin, id, "alive", CONVERGE).await;
        }
    }
    proxies
}

/// The value of `attribute="…"` on the first tag that has it.
fn attribute<'a>(dom: &'a str, attribute: &str) -> Option<&'a str> {
    let start = dom.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    let len = dom[start..].find('"')?;
    Some(&dom[start..start + len])
}

/// The sum of the "N accepted" counts in the forwards column.
fn accepted_forwards(dom: &str) -> u64 {
    dom.match_indices(" accepted")
        .map(|(at, _)| {
            let before = &dom[..at];
            let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            before[at - digits..].parse::<u64>().unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_live_cluster_in_a_browser() {
    require_chromium();
    let proxies = start_cluster().await;
    let a = &proxies[0];

    // Fill a's slot, then send two more Executes that a forwards to peers: one that
    // stays running there, one that completes.
    let mut at_a = ExecutionClient::new(a.channel().await);
    let mut held = Vec::new();
    for hash in ["one", "two"] {
        let mut stream = at_a
            .execute(execute_request("hold", hash))
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap();
        held.push(stream);
    }
    let mut done = at_a
        .execute(execute_request("main", "three"))
        .await
        .unwrap()
        .into_inner();
    while done.message().await.unwrap().is_some() {}
    // Wait until gossip has brought the peer's new load back to a.
    support::eventually("a peer's running action in a's view", CONVERGE, || async {
        let report = support::cluster(a.ready.admin).await?;
        let accepted: u64 = report.forwards.iter().map(|f| f.accepted).sum();
        let remote_running = report
            .members
            .iter()
            .filter(|m| !m.local)
            .filter_map(|m| m.load)
            .map(|load| load.executing)
            .sum::<u32>();
        (accepted == 2 && remote_running == 1).then_some(())
    })
    .await;

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", a.ready.admin);
    let output = chromium(
        &profile.path().join("dom"),
        &["--dump-dom".to_owned()],
        &url,
    )
    .await;
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // The script ran and drew what /cluster says.
    let refreshes: u32 = attribute(&dom, "data-refreshes")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 1, "the page never refreshed:\n{dom}");
    assert!(dom.contains("<b id=\"node-id\">p-a</b>"), "{dom}");
    assert!(dom.contains("3 (3 alive)"), "{dom}");
    assert_eq!(dom.matches("data-state=").count(), 3, "{dom}");
    for id in ["p-a", "p-b", "p-c"] {
        assert!(
            dom.contains(&format!("data-node=\"{id}\" data-state=\"alive\"")),
            "{id} is not listed alive:\n{dom}"
        );
    }
    // a's own row: its slot is busy.
    assert!(dom.contains("0 queued · 1 executing / 1"), "{dom}");
    assert_eq!(accepted_forwards(&dom), 2, "{dom}");
    assert!(dom.matches("data-event=\"join\"").count() >= 2, "{dom}");
    // No refresh failed: the problem banner stays empty.
    assert!(dom.contains("<div id=\"problem\"></div>"), "{dom}");

    let screenshot = profile.path().join("status-page.png");
    let output = chromium(
        &profile.path().join("shot"),
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,800".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
        &url,
    )
    .await;
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let png = std::fs::read(&screenshot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(PNG_SIGNATURE), "not a PNG");
    // The IHDR chunk follows the signature: width and height, big-endian.
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!((dimension(16), dimension(20)), (1280, 800));
    // A blank page compresses to a few kilobytes; text and tables do not.
    assert!(
        (20_000..20_000_000).contains(&png.len()),
        "{} bytes",
        png.len()
    );
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::copy(&screenshot, &kept).unwrap();
    eprintln!("status page screenshot: {}", kept.display());
    drop(held);
}
