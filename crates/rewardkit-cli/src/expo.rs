//! `rewardkit expo`: ExPO weight extrapolation between two saved reward models,
//! `θ = θ_from + α(θ_to − θ_from)` (Zheng et al. 2024), the last step of the
//! HelpSteer2-Preference recipe (README, model section). The arithmetic and the checks live in
//! `rewardkit_model::expo`.

use std::path::PathBuf;

use clap::Args;
use rewardkit_model::expo::extrapolate;

/// Arguments of `rewardkit expo`.
#[derive(Args)]
pub struct ExpoArgs {
    /// The starting model directory θ_from (HelpSteer2-Preference: the regression model).
    #[arg(long)]
    from: PathBuf,
    /// The model directory trained from it, θ_to (HelpSteer2-Preference: the scaled
    /// Bradley–Terry model trained with `--init` from θ_from).
    #[arg(long)]
    to: PathBuf,
    /// α: 0 gives `--from`, 1 gives `--to`, above 1 extrapolates past `--to`.
    #[arg(long, allow_negative_numbers = true)]
    alpha: f64,
    /// The output model directory (weights, `--to`'s config.json and tokenizer, expo.json).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ExpoArgs) -> anyhow::Result<()> {
    let report = extrapolate(&args.from, &args.to, args.alpha, &args.out)?;
    println!(
        "wrote {}: θ = θ_from + {}·(θ_to − θ_from) over {} tensors ({} numbers), ‖θ_to − θ_from‖ = {:.6}",
        args.out.display(),
        report.alpha,
        report.tensors,
        report.parameters,
        report.distance
    );
    Ok(())
}
