//! `rewardkit verify --gold G --pred P`: one maths-answer check, with the reasons.

use clap::Args;
use rewardkit_core::Budget;
use rewardkit_math::{verify, Judgement, MathOptions};

/// Arguments of `rewardkit verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The gold answer (LaTeX or plain text; `$…$` and `\boxed{}` are removed).
    #[arg(long)]
    gold: String,
    /// The prediction: a bare answer or a whole completion (the final answer is extracted).
    #[arg(long)]
    pred: String,
    /// Relative tolerance when a side is written with decimals.
    #[arg(long)]
    rel_tol: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `rewardkit verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let mut options = MathOptions::default();
    if let Some(rel_tol) = args.rel_tol {
        options.rel_tol = rel_tol;
    }
    options.validate()?;
    let verdict = verify(
        &args.gold,
        &args.pred,
        &options,
        &mut Budget::default().meter(),
    );
    if args.json {
        let name = match &verdict.judgement {
            Judgement::Equal => "equal",
            Judgement::NotEqual => "not_equal",
            Judgement::NoAnswer => "no_answer",
            Judgement::BadGold(_) => "bad_gold",
            Judgement::Stopped(_) => "stopped",
        };
        let value = serde_json::json!({
            "verdict": name,
            "reward": verdict.outcome(&options),
            "gold": verdict.gold,
            "answer": verdict.extracted.as_ref().map(|(_, text)| text),
            "strategy": verdict.extracted.as_ref().map(|(strategy, _)| strategy),
            "pred": verdict.pred,
            "why": verdict.reason,
        });
        println!("{value}");
    } else {
        println!("{verdict}");
    }
    Ok(())
}
