//! Verifies (gold, prediction) pairs for the differential harness (`bench/math_diff.sh`).
//!
//! Reads JSON lines `{"gold": …, "pred": …}` from the file given as the first argument, verifies
//! each pair `passes` times (second argument, default 3) on one thread, and writes one JSON line
//! per pair: the verdict, the normal forms, the reason and the fastest pass's nanoseconds.

use std::io::{BufRead, BufWriter, Write};
use std::time::Instant;

use rewardkit_core::Budget;
use rewardkit_math::{verify, Judgement, MathOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: math_pairs PAIRS.jsonl [PASSES]")?;
    let passes: usize = args.get(2).map_or(Ok(3), |p| p.parse())?;
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut pairs = Vec::new();
    for (number, line) in file.lines().enumerate() {
        let value: serde_json::Value =
            serde_json::from_str(&line?).map_err(|e| format!("{path} line {}: {e}", number + 1))?;
        let field = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{path} line {}: `{name}` must be a string", number + 1))
        };
        pairs.push((field("gold")?, field("pred")?));
    }
    let options = MathOptions::default();
    let budget = Budget::default();
    // The fastest of the passes per pair: a shared machine's preemptions only ever add time.
    let mut nanos = vec![u64::MAX; pairs.len()];
    for _ in 0..passes.max(1) {
        for (k, (gold, pred)) in pairs.iter().enumerate() {
            let start = Instant::now();
            let verdict = verify(gold, pred, &options, &mut budget.meter());
            nanos[k] = nanos[k].min(start.elapsed().as_nanos() as u64);
            std::hint::black_box(verdict);
        }
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (k, (gold, pred)) in pairs.iter().enumerate() {
        let verdict = verify(gold, pred, &options, &mut budget.meter());
        let name = match verdict.judgement {
            Judgement::Equal => "equal",
            Judgement::NotEqual => "not_equal",
            Judgement::NoAnswer => "no_answer",
            Judgement::BadGold(_) => "bad_gold",
            Judgement::Stopped(_) => "stopped",
        };
        let line = serde_json::json!({
            "equal": verdict.is_equal(),
            "verdict": name,
            "gold_form": verdict.gold,
            "pred_form": verdict.pred,
            "why": verdict.reason,
            "ns": nanos[k],
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
