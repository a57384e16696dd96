//! The report: runs the membership experiments at 10, 100 and 1,000 nodes, feeds the
//! measured load-record delays to the balancing runs, and writes `simulation.md` and
//! the plots under `sim/`.

pub mod balance_runs;
pub mod markdown;
pub mod membership_runs;
pub mod plots;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};

use crate::balance::{POLICIES, policy_name};
use crate::clock::seconds;
use membership_runs::{MembershipRow, Settings};
use plots::{Axes, Line};

/// Runs everything and writes `<out>/simulation.md` and `<out>/sim/*.png`.
pub fn run(out: &Path, quick: bool, seed: u64) -> Result<()> {
    let plot_dir = out.join("sim");
    std::fs::create_dir_all(&plot_dir)
        .with_context(|| format!("creating {}", plot_dir.display()))?;
    plots::register_fonts()?;

    // Largest first, so the two longest runs do not end up on one worker.
    let mut plan = membership_runs::plan(quick);
    plan.reverse();
    let mut rows = parallel_map(&plan, |&(nodes, settings)| {
        eprintln!("membership: {nodes} nodes, {}", settings.name());
        membership_runs::run_row(nodes, settings, quick, seed)
    });
    rows.reverse();
    let delays = rows
        .iter()
        .find(|r| r.nodes == balance_runs::NODES && r.settings == Settings::Proxy)
        .map(MembershipRow::spread_delays)
        .unwrap_or_default();
    let gossip = balance_runs::gossip_model(&delays);
    eprintln!(
        "balancing: {} scenarios",
        balance_runs::scenarios(quick, seed).len()
    );
    let jobs = balance_runs::jobs(quick, seed);
    let results = parallel_map(&jobs, |job| balance_runs::run_job(job, &gossip));
    let balance = balance_runs::group(&jobs, results);

    plot_membership(&plot_dir, &rows)?;
    plot_balance(&plot_dir, &balance)?;
    let md = markdown::render(&markdown::Inputs {
        membership: &rows,
        balance: &balance,
        gossip_samples: delays.len(),
        quick,
        seed,
    });
    let path = out.join("simulation.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))
}

/// `f` over every item on as many threads as there are cores, results in item order.
/// Each run is a pure function of its inputs, so threads change nothing but the time.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = f(item);
                    results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn plot_membership(dir: &Path, rows: &[MembershipRow]) -> Result<()> {
    let sizes = [10usize, 100, 1000];
    let names: Vec<String> = sizes.iter().map(|n| format!("N = {n}")).collect();
    let mut lines = Vec::new();
    let mut y_max: f64 = 6.0;
    for settings in [Settings::Proxy, Settings::LanForSize, Settings::Tuned] {
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .enumerate()
            .filter_map(|(x, n)| {
                // new_lan(N) is the proxy's setting at N = 10.
                let settings = if *n == 10 && settings == Settings::LanForSize {
                    Settings::Proxy
                } else {
                    settings
                };
                let row = rows
                    .iter()
                    .find(|r| r.nodes == *n && r.settings == settings)?;
                Some((x as f64, row.detection_all(0.99)?))
            })
            .collect();
        y_max = points.iter().map(|p| p.1 * 1.15).fold(y_max, f64::max);
        lines.push(Line {
            name: format!("{}: p99 until all nodes know", settings.name()),
            points,
        });
    }
    plots::lines(
        &dir.join("detection.png"),
        &Axes {
            title: "Crash detection time (all live nodes declare it down)",
            x: "cluster size",
            y: "seconds after the crash",
            x_max: 2.2,
            y_max,
            target: Some((5.0, "target 5 s")),
            x_names: Some(&names),
        },
        &lines,
    )?;

    let mut lines = Vec::new();
    let mut x_max: f64 = 0.5;
    for n in sizes {
        let Some(row) = rows
            .iter()
            .find(|r| r.nodes == n && r.settings == Settings::Proxy)
        else {
            continue;
        };
        let delays = row.spread_delays();
        x_max = crate::stats::quantile(&delays, 0.995).map_or(x_max, |q| x_max.max(q * 1.1));
        lines.push(Line {
            name: format!("N = {n}"),
            points: plots::cdf(&delays),
        });
    }
    plots::lines(
        &dir.join("propagation.png"),
        &Axes {
            title: "Load change reaching other nodes (proxy's foca settings)",
            x: "seconds after the change",
            y: "fraction of nodes holding it",
            x_max,
            y_max: 1.02,
            target: Some((0.99, "99%")),
            x_names: None,
        },
        &lines,
    )
}

fn plot_balance(dir: &Path, balance: &[Vec<crate::balance::ScenarioResult>]) -> Result<()> {
    let names: Vec<String> = balance
        .iter()
        .filter_map(|runs| runs.first().map(|r| r.name.clone()))
        .collect();
    let series: Vec<String> = POLICIES
        .iter()
        .map(|p| policy_name(*p).to_owned())
        .collect();
    let values: Vec<Vec<f64>> = balance
        .iter()
        .map(|runs| {
            (0..POLICIES.len())
                .map(|i| {
                    let r = markdown::ratios(runs, i);
                    r.iter().sum::<f64>() / r.len().max(1) as f64
                })
                .collect()
        })
        .collect();
    // Past 3× the ideal the exact height no longer matters: such bars are cut and
    // labelled, so that the differences near 1 stay visible.
    let y_max = values
        .iter()
        .flatten()
        .fold(1.3f64, |m, v| m.max(v * 1.1))
        .min(3.0);
    plots::bars(
        &dir.join("balance_makespan.png"),
        &Axes {
            title: "Makespan / ideal central scheduler (mean over seeds; cut bars show their value)",
            x: "workload (100 nodes, half 1 runner, half 8)",
            y: "makespan / ideal",
            x_max: names.len() as f64,
            y_max,
            target: Some((1.1, "target 1.1")),
            x_names: Some(&names),
        },
        &series,
        &values,
    )?;

    // Queue waits of the first seed of the most skewed workload.
    let Some(first) = balance.first().and_then(|runs| runs.first()) else {
        return Ok(());
    };
    let to_s = |w: &Vec<u64>| w.iter().map(|w| seconds(*w)).collect::<Vec<_>>();
    let mut lines = vec![Line {
        name: "ideal".to_owned(),
        points: plots::cdf(&to_s(&first.ideal_waits)),
    }];
    let mut x_max: f64 = 1.0;
    for policy in &first.policies {
        let waits = to_s(&policy.waits);
        x_max = crate::stats::quantile(&waits, 0.995).map_or(x_max, |q| x_max.max(q * 1.1));
        lines.push(Line {
            name: policy_name(policy.policy).to_owned(),
            points: plots::cdf(&waits),
        });
    }
    plots::lines(
        &dir.join("balance_waits.png"),
        &Axes {
            title: &format!("Queue wait distribution: {}", first.name),
            x: "queue wait (s)",
            y: "fraction of actions",
            x_max,
            y_max: 1.02,
            target: None,
            x_names: None,
        },
        &lines,
    )
}
