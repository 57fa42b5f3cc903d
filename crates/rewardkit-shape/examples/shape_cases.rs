//! Evaluates test cases for the NumPy reference comparison (`tests/reference/shape_reference.py`
//! at the repository root): one JSON case per line on standard input, one JSON result per line on
//! standard output.
//!
//! Every float travels as the `u64` of its IEEE-754 bits, so NaN, ±∞ and the last bit survive the
//! trip both ways (JSON has no NaN, and decimal round trips are a parser's promise, not a given).
//! A case that the library refuses comes back as `{"error": "..."}`.
//!
//! Run: `cargo run -p rewardkit-shape --example shape_cases < cases.jsonl > results.jsonl`.

use std::io::{self, BufRead, BufWriter, Write};

use rewardkit_shape::combine;
use rewardkit_shape::transform::{self, ReferenceQuantile, Scope};
use rewardkit_shape::{
    advantages, count_decay, dense_turn_rewards, gae, mixed_grained_rewards, oprl_advantages,
    potential_shaping, Estimator, Groups, LagrangeMultipliers, Lexicographic, MessageCounts,
    RunningStats, Squash, StdKind, StdScope,
};
use serde_json::{json, Map, Value};

type Fields = Map<String, Value>;

fn floats(case: &Fields, key: &str) -> Result<Vec<f64>, String> {
    let list = case
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("`{key}`: expected a list of float bit patterns"))?;
    list.iter()
        .map(|v| {
            v.as_u64()
                .map(f64::from_bits)
                .ok_or_else(|| format!("`{key}`: expected u64 bits, found {v}"))
        })
        .collect()
}

fn float(case: &Fields, key: &str) -> Result<f64, String> {
    case.get(key)
        .and_then(Value::as_u64)
        .map(f64::from_bits)
        .ok_or_else(|| format!("`{key}`: expected u64 float bits"))
}

fn float_lists(case: &Fields, key: &str) -> Result<Vec<Vec<f64>>, String> {
    let list = case
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("`{key}`: expected a list of lists"))?;
    list.iter()
        .map(|inner| {
            let mut wrapper = Map::new();
            wrapper.insert(key.to_owned(), inner.clone());
            floats(&wrapper, key)
        })
        .collect()
}

fn sizes(case: &Fields, key: &str) -> Result<Option<Vec<usize>>, String> {
    match case.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("`{key}`: expected sizes"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("`{key}`: expected a list of sizes, found {other}")),
    }
}

fn text<'a>(case: &'a Fields, key: &str) -> Result<&'a str, String> {
    case.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}`: expected a string"))
}

fn std_kind(case: &Fields) -> Result<StdKind, String> {
    match text(case, "std")? {
        "population" => Ok(StdKind::Population),
        "sample" => Ok(StdKind::Sample),
        other => Err(format!("unknown std `{other}`")),
    }
}

fn bits(values: &[f64]) -> Value {
    Value::from(values.iter().map(|x| x.to_bits()).collect::<Vec<u64>>())
}

fn refs(lists: &[Vec<f64>]) -> Vec<&[f64]> {
    lists.iter().map(Vec::as_slice).collect()
}

fn evaluate(case: &Fields) -> Result<Value, String> {
    let e = |error: rewardkit_shape::ShapeError| error.to_string();
    let groups = |key: &str| -> Result<Option<Groups>, String> {
        Ok(sizes(case, key)?.map(|s| Groups::from_sizes(&s)))
    };
    let op = text(case, "op")?;
    Ok(match op {
        "advantages" => {
            let rewards = floats(case, "rewards")?;
            // `ids` (one group number per sample, groups interleaved) or `sizes` (consecutive).
            let groups = match sizes(case, "ids")? {
                Some(ids) => Groups::from_ids(&ids),
                None => groups("sizes")?.ok_or("`sizes` or `ids` is required")?,
            };
            let estimator = match text(case, "estimator")? {
                "grpo" => Estimator::Grpo {
                    scale: match text(case, "scale")? {
                        "group" => StdScope::Group,
                        "batch" => StdScope::Batch,
                        "none" => StdScope::None,
                        other => return Err(format!("unknown scale `{other}`")),
                    },
                    std: std_kind(case)?,
                    epsilon: float(case, "epsilon")?,
                },
                "dr_grpo" => Estimator::DrGrpo,
                "rloo" => Estimator::Rloo,
                name @ ("reinforce_pp" | "reinforce_pp_baseline") => Estimator::ReinforcePlusPlus {
                    baseline: name == "reinforce_pp_baseline",
                    std: std_kind(case)?,
                    epsilon: float(case, "epsilon")?,
                },
                other => return Err(format!("unknown estimator `{other}`")),
            };
            let filter = case.get("filter").and_then(Value::as_bool).unwrap_or(false);
            let out = advantages(&rewards, &groups, &estimator, filter).map_err(e)?;
            json!({"values": bits(&out.values), "summary": out.summary})
        }
        "gae" => {
            let bootstrap = match case.get("bootstrap") {
                None | Some(Value::Null) => None,
                Some(_) => Some(floats(case, "bootstrap")?),
            };
            let lengths = sizes(case, "lengths")?.ok_or("`lengths` is required")?;
            let out = gae(
                &floats(case, "rewards")?,
                &floats(case, "values")?,
                &lengths,
                bootstrap.as_deref(),
                float(case, "gamma")?,
                float(case, "lambda")?,
            )
            .map_err(e)?;
            json!({"advantages": bits(&out.advantages), "returns": bits(&out.returns), "masked_episodes": out.masked_episodes})
        }
        "oprl" => {
            let lengths = sizes(case, "lengths")?.ok_or("`lengths` is required")?;
            let groups = groups("sizes")?.ok_or("`sizes` is required")?;
            let out = oprl_advantages(
                &floats(case, "outcomes")?,
                &groups,
                &floats(case, "steps")?,
                &lengths,
                float(case, "alpha")?,
                std_kind(case)?,
                float(case, "epsilon")?,
            )
            .map_err(e)?;
            json!({"advantages": bits(&out)})
        }
        "dense_turn" => {
            let lengths = sizes(case, "lengths")?.ok_or("`lengths` is required")?;
            let won: Vec<bool> = case
                .get("won")
                .and_then(Value::as_array)
                .ok_or("`won` is required")?
                .iter()
                .map(|v| v.as_bool().unwrap_or(false))
                .collect();
            let sparse = case.get("sparse").and_then(Value::as_bool).unwrap_or(false);
            let out = dense_turn_rewards(
                &floats(case, "scores")?,
                &lengths,
                &won,
                float(case, "max_total")?,
                sparse,
            )
            .map_err(e)?;
            json!({"values": bits(&out)})
        }
        "mixed_grained" => {
            let lengths = sizes(case, "lengths")?.ok_or("`lengths` is required")?;
            let (out, empty) = mixed_grained_rewards(
                &floats(case, "sequence")?,
                &floats(case, "items")?,
                &lengths,
                float(case, "w_seq")?,
                float(case, "w_item")?,
            )
            .map_err(e)?;
            json!({"values": bits(&out), "empty": empty})
        }
        "count_decay_batches" => {
            // Batches of (value, key) with counts carried across batches; a null key is none.
            let mut counts = MessageCounts::new();
            let mut out = Vec::new();
            let keys = case
                .get("keys")
                .and_then(Value::as_array)
                .ok_or("`keys` is required")?;
            for (batch, keys) in float_lists(case, "batches")?.iter().zip(keys) {
                let keys: Vec<Option<&str>> = keys
                    .as_array()
                    .ok_or("`keys`: expected lists")?
                    .iter()
                    .map(Value::as_str)
                    .collect();
                out.extend(
                    count_decay(batch, &keys, &mut counts, float(case, "beta")?).map_err(e)?,
                );
            }
            json!({"values": bits(&out)})
        }
        "potential_shaping" => {
            let lengths = sizes(case, "lengths")?.ok_or("`lengths` is required")?;
            let out = potential_shaping(
                &floats(case, "rewards")?,
                &floats(case, "potentials")?,
                &lengths,
                float(case, "gamma")?,
            )
            .map_err(e)?;
            json!({"values": bits(&out)})
        }
        "normalize" | "min_max" => {
            let values = floats(case, "values")?;
            let groups = groups("sizes")?;
            let scope = groups.as_ref().map_or(Scope::Batch, Scope::Groups);
            let out = if op == "normalize" {
                transform::normalize(&values, scope, std_kind(case)?, float(case, "epsilon")?)
            } else {
                transform::min_max(&values, scope)
            }
            .map_err(e)?;
            json!({"values": bits(&out)})
        }
        "normalize_running" | "clip_running" | "min_max_running" => {
            let mut stats = RunningStats::new();
            let mut out = Vec::new();
            for batch in float_lists(case, "batches")? {
                out.extend(match op {
                    "normalize_running" => transform::normalize_running(
                        &batch,
                        &mut stats,
                        std_kind(case)?,
                        float(case, "epsilon")?,
                    )
                    .map_err(e)?,
                    "clip_running" => transform::clip_running(&batch, &mut stats, std_kind(case)?),
                    _ => transform::min_max_running(&batch, &mut stats),
                });
            }
            json!({"values": bits(&out)})
        }
        "clip" => {
            json!({"values": bits(&transform::clip(&floats(case, "values")?, float(case, "low")?, float(case, "high")?).map_err(e)?)})
        }
        "ceiling" => {
            json!({"values": bits(&transform::ceiling(&floats(case, "values")?, float(case, "ceiling")?).map_err(e)?)})
        }
        "par" => {
            let m = case
                .get("m")
                .and_then(Value::as_u64)
                .ok_or("`m` is required")? as usize;
            json!({"values": bits(&transform::par_batch(&floats(case, "rewards")?, &floats(case, "references")?, m, float(case, "k")?).map_err(e)?)})
        }
        "log_sigmoid_centred" => {
            let rewards = floats(case, "rewards")?;
            let references = floats(case, "references")?;
            let out: Vec<f64> = rewards
                .iter()
                .zip(&references)
                .map(|(&r, &f)| transform::log_sigmoid_centred(r, f))
                .collect();
            json!({"values": bits(&out)})
        }
        "dynamic_beta" => {
            let (beta, w, k) = (float(case, "beta")?, float(case, "w")?, float(case, "k")?);
            let out: Vec<f64> = floats(case, "margins")?
                .iter()
                .map(|&m| transform::dynamic_beta(m, beta, w, k))
                .collect();
            json!({"values": bits(&out)})
        }
        "self_aligned_reward" => {
            let alone = float_lists(case, "answer")?;
            let given = float_lists(case, "answer_given_query")?;
            let out: Vec<f64> = alone
                .iter()
                .zip(&given)
                .map(|(a, g)| transform::self_aligned_reward(a, g))
                .collect();
            json!({"values": bits(&out)})
        }
        "count_decayed" => {
            let counts = sizes(case, "counts")?.ok_or("`counts` is required")?;
            let (ext, int) = (floats(case, "r_ext")?, floats(case, "r_int")?);
            let (ae, ai, beta) = (
                float(case, "alpha_ext")?,
                float(case, "alpha_int")?,
                float(case, "beta")?,
            );
            let out: Vec<f64> = (0..counts.len())
                .map(|i| transform::count_decayed(ext[i], int[i], counts[i] as u64, ae, ai, beta))
                .collect();
            json!({"values": bits(&out)})
        }
        "reference_quantile" => {
            let q = float(case, "q")?;
            let method = match case.get("method").and_then(Value::as_str) {
                Some("normal") => ReferenceQuantile::Normal { q },
                _ => ReferenceQuantile::Empirical { q },
            };
            let out = method.reference(&floats(case, "values")?).map_err(e)?;
            json!({"values": bits(&[out.unwrap_or(f64::NAN)])})
        }
        "weighted_sum" | "sum_then_normalize" | "normalize_then_sum" | "minimum" | "product" => {
            let terms = float_lists(case, "terms")?;
            let terms = refs(&terms);
            let groups = groups("sizes")?;
            let scope = groups.as_ref().map_or(Scope::Batch, Scope::Groups);
            let out = match op {
                "weighted_sum" => combine::weighted_sum(&terms, &floats(case, "weights")?),
                "sum_then_normalize" => combine::sum_then_normalize(
                    &terms,
                    &floats(case, "weights")?,
                    scope,
                    std_kind(case)?,
                    float(case, "epsilon")?,
                ),
                "normalize_then_sum" => combine::normalize_then_sum(
                    &terms,
                    &floats(case, "weights")?,
                    scope,
                    std_kind(case)?,
                    float(case, "epsilon")?,
                ),
                "minimum" => combine::minimum(&terms),
                _ => combine::product(&terms),
            }
            .map_err(e)?;
            json!({"values": bits(&out)})
        }
        "conjunction" => {
            let terms = float_lists(case, "terms")?;
            let references = float_lists(case, "references")?;
            json!({"values": bits(&combine::conjunction(&refs(&terms), &refs(&references)).map_err(e)?)})
        }
        "hybrid" => {
            let scored: Vec<bool> = case
                .get("scored")
                .and_then(Value::as_array)
                .ok_or("`scored` is required")?
                .iter()
                .map(|v| v.as_bool().unwrap_or(false))
                .collect();
            let out = combine::hybrid(
                &floats(case, "rule")?,
                &scored,
                &floats(case, "model")?,
                float(case, "w_rule")?,
                float(case, "w_model")?,
            )
            .map_err(e)?;
            json!({"values": bits(&out)})
        }
        "gate" => {
            let out = combine::gate(
                &floats(case, "gate")?,
                float(case, "threshold")?,
                &floats(case, "value")?,
                float(case, "otherwise")?,
            )
            .map_err(e)?;
            json!({"values": bits(&out)})
        }
        "lexicographic" => {
            let rows = float_lists(case, "rows")?;
            let higher: Vec<bool> = case
                .get("higher_is_better")
                .and_then(Value::as_array)
                .ok_or("`higher_is_better` is required")?
                .iter()
                .map(|v| v.as_bool().unwrap_or(true))
                .collect();
            let comparator = match case.get("sigma_mult") {
                Some(_) => {
                    let levels = higher.len();
                    let columns: Vec<Vec<f64>> = (0..levels)
                        .map(|k| rows.iter().map(|r| r[k]).collect())
                        .collect();
                    Lexicographic::from_buffer(&refs(&columns), float(case, "sigma_mult")?, higher)
                }
                None => Lexicographic::new(floats(case, "margins")?, higher),
            }
            .map_err(e)?;
            let pairs: Vec<(usize, usize)> = case
                .get("pairs")
                .and_then(Value::as_array)
                .ok_or("`pairs` is required")?
                .iter()
                .map(|p| {
                    (
                        p[0].as_u64().unwrap_or(u64::MAX) as usize,
                        p[1].as_u64().unwrap_or(u64::MAX) as usize,
                    )
                })
                .collect();
            let labels = comparator.labels(&refs(&rows), &pairs).map_err(e)?;
            let labels: Vec<i8> = labels
                .iter()
                .map(|l| match l {
                    Some(true) => 1,
                    Some(false) => -1,
                    None => 0,
                })
                .collect();
            json!({"labels": labels, "margins": bits(comparator.margins())})
        }
        "lexicographic_scores" => {
            let columns = float_lists(case, "factors")?;
            let higher: Vec<bool> = case
                .get("higher_is_better")
                .and_then(Value::as_array)
                .ok_or("`higher_is_better` is required")?
                .iter()
                .map(|v| v.as_bool().unwrap_or(true))
                .collect();
            let comparator = Lexicographic::new(floats(case, "margins")?, higher).map_err(e)?;
            let groups = groups("sizes")?.ok_or("`sizes` is required")?;
            let scores = comparator
                .group_scores(&refs(&columns), &groups)
                .map_err(e)?;
            json!({"scores": bits(&scores)})
        }
        "lagrange" => {
            let squash = match text(case, "squash")? {
                "sigmoid" => Squash::Sigmoid,
                "tanh" => Squash::Tanh,
                other => return Err(format!("unknown squash `{other}`")),
            };
            let mut lagrange = LagrangeMultipliers::new(
                floats(case, "thresholds")?,
                squash,
                float(case, "learning_rate")?,
                float(case, "momentum")?,
                float(case, "initial_mu")?,
            )
            .map_err(e)?;
            let mut trace = Vec::new();
            for means in float_lists(case, "updates")? {
                lagrange.update(&means).map_err(e)?;
                trace.extend(lagrange.multipliers());
            }
            let terms = float_lists(case, "terms")?;
            let combined = lagrange
                .combine(&floats(case, "base")?, &refs(&terms))
                .map_err(e)?;
            json!({"multipliers": bits(&trace), "combined": bits(&combined)})
        }
        other => return Err(format!("unknown op `{other}`")),
    })
}

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = BufWriter::new(io::stdout().lock());
    for (number, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let result = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(case)) => {
                evaluate(&case).unwrap_or_else(|error| json!({ "error": error }))
            }
            Ok(_) => json!({"error": format!("line {}: expected a JSON object", number + 1)}),
            Err(error) => json!({"error": format!("line {}: {error}", number + 1)}),
        };
        serde_json::to_writer(&mut out, &result)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
