//! `rewardkit`: define, verify and score rewards from the command line.
//!
//! This binary is glue: argument parsing and validation here, everything else in the library
//! crates (specs and pipelines in `rewardkit`, files in `rewardkit-data`).

mod advantages;
mod eval;
mod expo;
mod prefer;
mod score;
mod serve;
mod steps;
mod summary;
mod train;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rewardkit::{Pipeline, Registry, Spec};

/// A reward engine for reinforcement-learning post-training.
#[derive(Parser)]
#[command(name = "rewardkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score a file of rollouts with a reward spec.
    Score(score::ScoreArgs),
    /// Turn a scored file into advantages (GRPO, Dr.GRPO, RLOO, REINFORCE++, OPRL, GAE).
    Advantages(advantages::AdvantagesArgs),
    /// Label preference pairs within groups by factors ranked by importance (HERON's
    /// lexicographic comparator with margins); writes pairs `rewardkit train` reads.
    Prefer(prefer::PreferArgs),
    /// Build per-step rewards from episode signals (dense turn rewards, mixed-grained
    /// sequence-plus-item rewards, potential-based shaping) for `advantages --estimator gae`.
    Steps(steps::StepsArgs),
    /// Serve rewards over HTTP (JSON, OpenRLHF's /get_reward, Prometheus metrics).
    Serve(serve::ServeArgs),
    /// Inspect reward specs.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Check one maths answer against a gold answer and say why.
    Verify(verify::VerifyArgs),
    /// Evaluate a reward on a benchmark (RewardBench v1/v2 rules, bootstrap intervals,
    /// calibration, length bias, best-of-N) and compare two rewards.
    Eval(Box<eval::EvalArgs>),
    /// Train a reward model from preference pairs or ratings and save it as a model directory.
    Train(Box<train::TrainArgs>),
    /// Extrapolate between two saved reward models: θ = θ_from + α(θ_to − θ_from) (ExPO).
    Expo(expo::ExpoArgs),
}

#[derive(Subcommand)]
enum SpecCommand {
    /// Validate a spec and print what it computes.
    Check(SpecCheckArgs),
    /// List the reward kinds a spec can use.
    Kinds,
}

#[derive(Args)]
struct SpecCheckArgs {
    /// The spec file (TOML).
    file: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(args) => score::run(args),
        Command::Advantages(args) => advantages::run(args),
        Command::Prefer(args) => prefer::run(args),
        Command::Steps(args) => steps::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Eval(args) => eval::run(*args),
        Command::Train(args) => train::run(*args),
        Command::Expo(args) => expo::run(args),
        Command::Spec(SpecCommand::Check(args)) => spec_check(&args),
        Command::Spec(SpecCommand::Kinds) => {
            for (kind, description) in Registry::default().kinds() {
                println!("{kind:<16} {description}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn spec_check(args: &SpecCheckArgs) -> anyhow::Result<()> {
    let spec = Spec::from_path(&args.file)?;
    let pipeline = Pipeline::build(&spec).context("the spec is valid TOML but does not build")?;
    print!("{}", pipeline.describe());
    println!("ok: the spec is valid");
    Ok(())
}
