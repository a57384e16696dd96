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
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Report { out, quick, seed } => {
            remesh_sim::report::run(&out, quick, seed)?;
        }
    }
    Ok(())
}
