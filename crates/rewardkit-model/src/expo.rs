//! ExPO: model extrapolation between two checkpoints of the same network (Zheng et al. 2024,
//! "Weak-to-Strong Extrapolation Expedites Alignment", eq. 2):
//!
//! ```text
//! θ = θ_from + α · (θ_to − θ_from)
//! ```
//!
//! α = 0 gives `from`, α = 1 gives `to`, α > 1 continues past `to` along the direction training
//! moved. HelpSteer2-Preference (Wang et al. 2024, §4) applies it to reward models: `from` is a
//! regression model trained on helpfulness ratings, `to` the scaled Bradley–Terry model trained
//! from it, and the extrapolated model scored best on RewardBench. README's model section has
//! the recipe with `rewardkit train` and `rewardkit expo`.
//!
//! Both directories must hold the same network: the same tensor names, shapes and dtypes, and
//! `config.json` files that agree on everything that defines the network (the output names,
//! versions, the source path of an encoder, its maximum length and whether it was trained may
//! differ; the output takes `to`'s). Floating-point tensors are combined in `f64` and stored in
//! their own dtype; other tensors (integer buffers) must be equal. The output directory gets the
//! new `model.safetensors`, `to`'s `config.json` and tokenizer files, and `expo.json` recording
//! the inputs and α — but no `rewardkit.json`: the validation mean/std saved there belong to
//! `to`'s weights, so `normalize = true` refuses an extrapolated model until it is re-evaluated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use serde_json::Value;

use crate::model::{write_atomically, CONFIG_FILE, WEIGHTS_FILE};
use crate::ModelError;

/// Files copied from `to` when present.
const COPIED: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Config keys that may differ between the two checkpoints.
const FREE_KEYS: &[&str] = &[
    "id2label",
    "label2id",
    "rewardkit_version",
    "transformers_version",
    "_name_or_path",
    "torch_dtype",
    "dtype",
    // Text settings, not weights: the output keeps `to`'s.
    "truncation",
    "chat_template",
];

/// Keys under `backbone` that may differ.
const FREE_BACKBONE_KEYS: &[&str] = &["source", "max_length", "train_encoder"];

/// What [`extrapolate`] did, also written to `expo.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpoReport {
    /// θ_from's directory.
    pub from: PathBuf,
    /// θ_to's directory.
    pub to: PathBuf,
    /// α.
    pub alpha: f64,
    /// The formula, for the record.
    pub formula: &'static str,
    /// Tensors combined.
    pub tensors: usize,
    /// Numbers combined.
    pub parameters: usize,
    /// ‖θ_to − θ_from‖₂ over all floating-point tensors.
    pub distance: f64,
}

/// Writes `θ_from + α(θ_to − θ_from)` into `out` (see the module docs).
pub fn extrapolate(
    from: &Path,
    to: &Path,
    alpha: f64,
    out: &Path,
) -> Result<ExpoReport, ModelError> {
    if !alpha.is_finite() {
        return Err(ModelError::option(
            "alpha",
            format!("must be a finite number, got {alpha}"),
        ));
    }
    let config_from = read_json(&from.join(CONFIG_FILE))?;
    let config_to = read_json(&to.join(CONFIG_FILE))?;
    let mut differences = Vec::new();
    compare(
        &network_view(&config_from),
        &network_view(&config_to),
        String::new(),
        &mut differences,
    );
    if !differences.is_empty() {
        return Err(ModelError::load(
            to.join(CONFIG_FILE),
            format!(
                "describes another network than {}: {} differ (ExPO needs two checkpoints of the same network)",
                from.join(CONFIG_FILE).display(),
                differences.join(", ")
            ),
        ));
    }
    let device = Device::Cpu;
    let a = load(from, &device)?;
    let b = load(to, &device)?;
    let only = |x: &BTreeMap<String, Tensor>, y: &BTreeMap<String, Tensor>| -> Vec<String> {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    let (only_from, only_to) = (only(&a, &b), only(&b, &a));
    if !only_from.is_empty() || !only_to.is_empty() {
        return Err(ModelError::load(
            to.join(WEIGHTS_FILE),
            format!(
                "holds other tensors than {}: only in `from`: {only_from:?}; only in `to`: {only_to:?}",
                from.join(WEIGHTS_FILE).display()
            ),
        ));
    }
    let mut combined = Vec::with_capacity(a.len());
    let (mut parameters, mut squared) = (0usize, 0f64);
    for (name, ta) in &a {
        let tb = &b[name];
        if ta.dims() != tb.dims() || ta.dtype() != tb.dtype() {
            return Err(ModelError::load(
                to.join(WEIGHTS_FILE),
                format!(
                    "tensor `{name}` is {:?} {:?} there but {:?} {:?} in {}",
                    tb.dtype(),
                    tb.dims(),
                    ta.dtype(),
                    ta.dims(),
                    from.join(WEIGHTS_FILE).display()
                ),
            ));
        }
        let tensor = if ta.dtype().is_float() {
            let (xa, xb) = (ta.to_dtype(DType::F64)?, tb.to_dtype(DType::F64)?);
            let delta = (&xb - &xa)?;
            squared += delta.sqr()?.sum_all()?.to_scalar::<f64>()?;
            (xa + (delta * alpha)?)?.to_dtype(ta.dtype())?
        } else {
            let equal = ta
                .eq(tb)?
                .to_dtype(DType::U32)?
                .sum_all()?
                .to_scalar::<u32>()? as usize;
            if equal != ta.elem_count() {
                return Err(ModelError::load(
                    to.join(WEIGHTS_FILE),
                    format!("integer tensor `{name}` differs between the checkpoints"),
                ));
            }
            ta.clone()
        };
        parameters += ta.elem_count();
        combined.push((name.clone(), tensor));
    }
    let tensors = combined.len();
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let bytes = safetensors::serialize(combined, None)
        .map_err(|e| ModelError::load(out.join(WEIGHTS_FILE), e.to_string()))?;
    write_atomically(&out.join(WEIGHTS_FILE), &bytes)?;
    let config = serde_json::to_vec_pretty(&config_to).expect("JSON values serialise");
    write_atomically(&out.join(CONFIG_FILE), &config)?;
    for file in COPIED {
        let source = to.join(file);
        if source.is_file() {
            let bytes = std::fs::read(&source).map_err(|e| ModelError::io(&source, e))?;
            write_atomically(&out.join(file), &bytes)?;
        }
    }
    let report = ExpoReport {
        from: from.to_owned(),
        to: to.to_owned(),
        alpha,
        formula: "theta = theta_from + alpha * (theta_to - theta_from)",
        tensors,
        parameters,
        distance: squared.sqrt(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
    write_atomically(&out.join("expo.json"), &json)?;
    Ok(report)
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(path, format!("not JSON: {e}")))
}

fn load(dir: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() && dir.join("model.safetensors.index.json").is_file() {
        return Err(ModelError::load(
            dir,
            "sharded checkpoints are not supported by expo (one model.safetensors expected)",
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| ModelError::load(&path, e.to_string()))?;
    Ok(tensors.into_iter().collect())
}

/// The config without the keys that may differ.
fn network_view(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(object) = config.as_object_mut() {
        for key in FREE_KEYS {
            object.remove(*key);
        }
        if let Some(backbone) = object.get_mut("backbone").and_then(Value::as_object_mut) {
            for key in FREE_BACKBONE_KEYS {
                backbone.remove(*key);
            }
        }
    }
    config
}

/// Collects the dotted paths where two JSON values differ.
fn compare(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => compare(u, v, sub, out),
                    _ => out.push(format!("`{sub}`")),
                }
            }
        }
        _ if a != b => out.push(format!(
            "`{}`",
            if path.is_empty() { "(root)" } else { &path }
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(a: Value, b: Value, expected: &[&str]) {
        let mut out = Vec::new();
        compare(
            &network_view(&a),
            &network_view(&b),
            String::new(),
            &mut out,
        );
        assert_eq!(out, expected, "{a} vs {b}");
    }

    #[test]
    fn config_differences_are_named_by_path() {
        check(json!({"a": 1}), json!({"a": 1}), &[]);
        check(json!({"a": 1}), json!({"a": 2}), &["`a`"]);
        check(json!({"a": 1}), json!({"b": 1}), &["`a`", "`b`"]);
        check(
            json!({"head": {"kind": "linear"}}),
            json!({"head": {"kind": "mlp", "hidden": 4}}),
            &["`head.hidden`", "`head.kind`"],
        );
        check(
            json!({"id2label": {"0": "helpfulness"}, "num_labels": 1}),
            json!({"id2label": {"0": "reward"}, "num_labels": 1}),
            &[],
        );
        check(
            json!({"num_labels": 5}),
            json!({"num_labels": 1}),
            &["`num_labels`"],
        );
        check(
            json!({"backbone": {"kind": "encoder", "source": "/a", "max_length": 64, "pooling": "cls"}}),
            json!({"backbone": {"kind": "encoder", "source": "/b", "max_length": 128, "pooling": "cls"}}),
            &[],
        );
        check(
            json!({"backbone": {"kind": "hashed", "width": 32}}),
            json!({"backbone": {"kind": "hashed", "width": 16}}),
            &["`backbone.width`"],
        );
        check(
            json!({"rewardkit_version": "0.1.0"}),
            json!({"rewardkit_version": "0.2.0"}),
            &[],
        );
    }
}
