//! `remesh-sim`: runs the simulations and writes the report.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Simulate a remesh cluster of 10 to 1,000 nodes")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every experiment and write `simulation.md` and `sim/*.png` under `--out`.
    Report {
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        /// Fewer repetitions and shorter runs, for a quick look.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// One balancing policy under the report's scenarios over many seeds (seconds, no
    /// membership runs): how much of a result is the seed's luck.
    Seeds {
        #[arg(long, value_enum, default_value = "affinity")]
        policy: remesh_proxy::config::Policy,
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// `affinity`'s bound, as the proxy's `affinity_load_factor`.
        #[arg(long, default_value_t = 1.25)]
        load_factor: f64,
    },
    /// One quiet membership run, printing its traffic and suspicions.
    Quiet {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// foca settings: `new_lan(N)` with these overrides (milliseconds).
        #[arg(long)]
        probe_ms: Option<u64>,
        #[arg(long)]
        rtt_ms: Option<u64>,
        #[arg(long)]
        suspect_ms: Option<u64>,
        #[arg(long)]
        max_tx: Option<u8>,
        /// Crash this many nodes (after the quiet run) and print detection times.
        #[arg(long, default_value_t = 0)]
        crashes: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Report { out, quick, seed } => {
            remesh_sim::report::run(&out, quick, seed)?;
        }
        Command::Seeds {
            policy,
            seeds,
            load_factor,
        } => {
            use remesh_sim::balance::seed_spread;
            let spreads = seed_spread::run(policy, load_factor, seeds);
            print!(
                "{}",
                seed_spread::render(policy, load_factor, seeds, &spreads)
            );
        }
        Command::Quiet {
            nodes,
            seconds,
            loss,
            probe_ms,
            rtt_ms,
            suspect_ms,
            max_tx,
            crashes,
        } => {
            use remesh_sim::clock::SECONDS;
            use remesh_sim::membership::experiments::{WARMUP, detection, quiet_run};
            use remesh_sim::report::membership_runs::{Settings, cluster_config};
            use std::time::Duration;
            let mut config = cluster_config(nodes, Settings::LanForSize, loss, 1);
            let ms = Duration::from_millis;
            if let Some(v) = probe_ms {
                config.foca.probe_period = ms(v);
            }
            if let Some(v) = rtt_ms {
                config.foca.probe_rtt = ms(v);
            }
            if let Some(v) = suspect_ms {
                config.foca.suspect_to_down_after = ms(v);
            }
            if let Some(v) = max_tx.and_then(std::num::NonZeroU8::new) {
                config.foca.max_transmissions = v;
            }
            println!("{:?}", config.foca);
            let run = quiet_run(&config, WARMUP, seconds * SECONDS);
            println!("{run:?}");
            if crashes > 0 {
                config.net.loss = 0.0;
                let mut cluster = remesh_sim::membership::Cluster::new(&config);
                cluster.run_until(WARMUP);
                for d in detection(&mut cluster, crashes, 30 * SECONDS, 1) {
                    println!("{d:?}");
                }
            }
        }
    }
    Ok(())
}
