//! ExPO weight extrapolation between two saved models: α = 0 and α = 1 give the inputs back,
//! other α the formula tensor by tensor, and checkpoints of different networks are refused with
//! the difference named.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rewardkit_model::expo::extrapolate;
use rewardkit_model::hashed::HashedConfig;
use rewardkit_model::{BackboneConfig, HeadConfig, ModelConfig, RewardInput, RewardModel};

fn save(dir: &Path, seed: u64, width: usize, labels: &[String]) -> RewardModel {
    let hashed = HashedConfig {
        buckets: 64,
        width,
        ..HashedConfig::default()
    };
    let model = RewardModel::new(
        ModelConfig::new(
            BackboneConfig::Hashed(hashed),
            HeadConfig::Mlp { hidden: 3 },
            labels,
        ),
        seed,
        &Device::Cpu,
    )
    .unwrap();
    model.save(dir).unwrap();
    model
}

fn weights(dir: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn extrapolation_follows_the_formula_tensor_by_tensor() {
    let root = tempfile::tempdir().unwrap();
    let (from, to, out) = (
        root.path().join("reg"),
        root.path().join("sbt"),
        root.path().join("expo"),
    );
    save(&from, 1, 4, &["helpfulness".to_owned()]);
    let model_to = save(&to, 2, 4, &[]);
    let (a, b) = (weights(&from), weights(&to));
    for alpha in [0.0, 1.0, 0.5, 2.0, -0.3] {
        let report = extrapolate(&from, &to, alpha, &out).unwrap();
        assert_eq!(report.tensors, a.len());
        let c = weights(&out);
        for (name, xa) in &a {
            let (xb, xc) = (&b[name], &c[name]);
            for i in 0..xa.len() {
                let expected =
                    (f64::from(xa[i]) + alpha * (f64::from(xb[i]) - f64::from(xa[i]))) as f32;
                assert_eq!(xc[i], expected, "{name}[{i}] at alpha {alpha}");
            }
        }
        if alpha == 0.0 {
            assert_eq!(c, a);
        }
        if alpha == 1.0 {
            assert_eq!(c, b);
            // The output is a model directory that scores like `to`.
            let inputs = [
                RewardInput::new("q", "a fine answer"),
                RewardInput::new("q", "no"),
            ];
            let loaded = RewardModel::load(&out, &Device::Cpu).unwrap();
            assert_eq!(
                loaded.score(&inputs).unwrap(),
                model_to.score(&inputs).unwrap()
            );
        }
    }
    // `to`'s config (its output names), a record of the inputs, and no stale statistics.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["0"], "reward");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("expo.json")).unwrap()).unwrap();
    assert_eq!(record["alpha"], -0.3);
    assert!(!out.join("rewardkit.json").exists());
}

#[test]
fn different_networks_are_refused_with_the_difference_named() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    save(&a, 1, 4, &[]);
    save(&b, 2, 5, &[]);
    let error = extrapolate(&a, &b, 0.5, &root.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`backbone.width`") && error.contains("same network"),
        "{error}"
    );
    save(&c, 2, 4, &["x".to_owned(), "y".to_owned()]);
    let error = extrapolate(&a, &c, 0.5, &root.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("`num_labels`"), "{error}");

    // Same config, but a tensor of another shape (a hand-edited file).
    let d = root.path().join("d");
    save(&d, 3, 4, &[]);
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    let name = tensors[0].0.clone();
    tensors[0].1 = Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap();
    std::fs::write(
        d.join("model.safetensors"),
        safetensors::serialize(tensors.clone(), None).unwrap(),
    )
    .unwrap();
    let error = extrapolate(&a, &d, 0.5, &root.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("tensor `{name}`")) && error.contains("[7]"),
        "{error}"
    );
    tensors.remove(0);
    std::fs::write(
        d.join("model.safetensors"),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let error = extrapolate(&a, &d, 0.5, &root.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("only in `from`") && error.contains(&name),
        "{error}"
    );

    let error = extrapolate(&a, &a, f64::NAN, &root.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("alpha"), "{error}");
    let error = extrapolate(
        &a,
        &root.path().join("missing"),
        0.5,
        &root.path().join("out"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("missing") && error.contains("config.json"),
        "{error}"
    );
}
