//! The `encoder` backbone on a tiny random BERT written by the test in Hugging Face format:
//! batched == single with padding, gradients reach every encoder weight (the differentiable
//! LayerNorm), head-only training leaves the encoder alone, and save/load round-trips.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use rewardkit_model::encoder::testing::write_tiny_bert;
use rewardkit_model::encoder::{EncoderConfig, Pooling};
use rewardkit_model::{
    train, BackboneConfig, CheckpointOptions, Examples, HeadConfig, ModelConfig, PreferencePair,
    RewardInput, RewardModel, TrainConfig,
};

fn model(dir: &Path, pooling: Pooling, train_encoder: bool, max_length: usize) -> RewardModel {
    let encoder = EncoderConfig {
        source: dir.to_owned(),
        pooling,
        max_length,
        train_encoder,
        bert: serde_json::Value::Null,
    };
    RewardModel::new(
        ModelConfig::new(
            BackboneConfig::Encoder(encoder),
            HeadConfig::Mlp { hidden: 4 },
            &[],
        ),
        1,
        &Device::Cpu,
    )
    .unwrap()
}

fn inputs() -> Vec<RewardInput> {
    vec![
        RewardInput::new(
            "human : help please ? assistant :",
            " sure here is the answer .",
        ),
        RewardInput::new("human : help ? assistant :", " go away"),
        RewardInput::new("", " no"),
        RewardInput::new(
            "human : question ? assistant :",
            " thanks , here is the answer , please ask the question again .",
        ),
    ]
}

#[test]
fn batched_equals_single_with_padding_for_both_poolings() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let model = model(dir.path(), pooling, false, 32);
        let batch = model.score(&inputs()).unwrap();
        for (i, input) in inputs().iter().enumerate() {
            let one = model.score(std::slice::from_ref(input)).unwrap();
            assert!(
                (one[0][0] - batch[i][0]).abs() < 1e-5,
                "{pooling:?} input {i}: {} vs {}",
                one[0][0],
                batch[i][0]
            );
        }
        let distinct: std::collections::BTreeSet<String> =
            batch.iter().map(|r| format!("{:.6}", r[0])).collect();
        assert_eq!(
            distinct.len(),
            batch.len(),
            "different inputs, different rewards: {batch:?}"
        );
    }
}

#[test]
fn every_encoder_weight_receives_a_gradient_when_fine_tuning() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let model = model(dir.path(), Pooling::Mean, true, 32);
    let params = model.parameters();
    assert!(
        params.len() > 30,
        "encoder weights are trainable: {}",
        params.len()
    );
    let loss = model
        .forward(&inputs())
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in &params {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("`{name}` received no gradient"));
        let norm: f32 = grad.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        // The token-type row 1 is never used (one-segment inputs), so its gradient is zero; every
        // tensor as a whole still receives a non-zero gradient.
        assert!(norm > 0.0, "`{name}` received a zero gradient");
    }
}

fn polite_pairs() -> Vec<PreferencePair> {
    (0..24)
        .map(|i| PreferencePair {
            line: i + 1,
            prompt: "human : help please ? assistant :".into(),
            chosen: if i % 2 == 0 {
                " sure here is the answer .".into()
            } else {
                " thanks , here is help .".into()
            },
            rejected: if i % 3 == 0 {
                " go away , stupid question .".into()
            } else {
                " no , go away .".into()
            },
            margin: None,
        })
        .collect()
}

fn all_weights(model: &RewardModel) -> Vec<Vec<f32>> {
    model
        .named_tensors()
        .into_iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

/// Fine-tuning every weight (the encoder's own backward pass): the same seed gives the same
/// weights bit for bit, every weight moves, and a run interrupted and resumed from its
/// checkpoint ends with the uninterrupted run's weights and history.
#[test]
fn fine_tuning_repeats_moves_every_weight_and_resumes_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let (train_set, validation) = Examples::Pairs(polite_pairs()).split_last(6);
    let config = TrainConfig {
        epochs: 2,
        batch_size: 4,
        eval_every: 2,
        checkpoint_every: 2,
        optimizer: rewardkit_model::optim::AdamWConfig {
            lr: 0.01,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let run = |options: &CheckpointOptions| {
        let model = model(dir.path(), Pooling::Mean, true, 32);
        let report = train(
            &model,
            &config,
            &train_set,
            Some(&validation),
            options,
            &mut |_| {},
        )
        .unwrap();
        (model, report)
    };
    let before = all_weights(&model(dir.path(), Pooling::Mean, true, 32));
    let (straight, full) = run(&CheckpointOptions::default());
    let (again, _) = run(&CheckpointOptions::default());
    let after = all_weights(&straight);
    assert_eq!(after, all_weights(&again), "same seed, same weights");
    let names = straight.named_tensors();
    for (((name, _), before), after) in names.iter().zip(&before).zip(&after) {
        assert_ne!(before, after, "`{name}` did not move");
    }

    let checkpoint = dir.path().join("checkpoint.safetensors");
    let interrupted = CheckpointOptions {
        path: Some(checkpoint.clone()),
        resume: true,
        stop_after: Some(3),
    };
    let (_, first) = run(&interrupted);
    assert!(first.interrupted && first.steps == 3);
    let resume = CheckpointOptions {
        path: Some(checkpoint),
        resume: true,
        stop_after: None,
    };
    let (resumed, second) = run(&resume);
    assert_eq!(all_weights(&resumed), after, "resumed weights differ");
    assert_eq!(second.history, full.history);
}

#[test]
fn head_only_training_keeps_the_encoder_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let model = model(dir.path(), Pooling::Mean, false, 32);
    let encoder_before: HashMap<String, Vec<f32>> = model
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("backbone."))
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    assert_eq!(model.parameters().len(), 4, "only the MLP head trains");
    let pairs = polite_pairs();
    let (train_set, validation) = Examples::Pairs(pairs).split_last(6);
    let config = TrainConfig {
        epochs: 6,
        batch_size: 6,
        optimizer: rewardkit_model::optim::AdamWConfig {
            lr: 0.05,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let report = train(
        &model,
        &config,
        &train_set,
        Some(&validation),
        &CheckpointOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(report.best.unwrap().accuracy.unwrap() >= 0.8);
    for (name, tensor) in model.named_tensors() {
        if let Some(before) = encoder_before.get(&name) {
            assert_eq!(
                &tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                before,
                "`{name}` changed"
            );
        }
    }
    let out = tempfile::tempdir().unwrap();
    model.save(out.path()).unwrap();
    assert!(out.path().join("tokenizer.json").exists());
    let loaded = RewardModel::load(out.path(), &Device::Cpu).unwrap();
    assert_eq!(
        loaded.score(&inputs()).unwrap(),
        model.score(&inputs()).unwrap()
    );
}

#[test]
fn truncation_keeps_the_end_of_the_text() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let model = model(dir.path(), Pooling::Mean, false, 4);
    let a = model
        .score(&[RewardInput::new(
            "human : help please",
            " here is the answer .",
        )])
        .unwrap();
    let b = model
        .score(&[RewardInput::new("thanks", " stupid rude is the answer .")])
        .unwrap();
    assert!(
        (a[0][0] - b[0][0]).abs() < 1e-6,
        "the last four tokens decide: {a:?} vs {b:?}"
    );
    let error = RewardModel::new(
        ModelConfig::new(
            BackboneConfig::Encoder(EncoderConfig {
                source: dir.path().to_owned(),
                pooling: Pooling::Mean,
                max_length: 64,
                train_encoder: false,
                bert: serde_json::Value::Null,
            }),
            HeadConfig::Linear,
            &[],
        ),
        1,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("max-length") && error.contains("1..=32"),
        "{error}"
    );
}

fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let (a, b) = (
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The encoder's three paths compute one function: the packed inference path (no gradient),
/// the fused-kernel training path and the composed reference (candle primitives only) agree
/// within 1e-5, and the fused path's gradients equal the composed path's for every weight.
#[test]
fn packed_fused_and_composed_encoder_paths_agree_in_value_and_gradient() {
    use rewardkit_model::encoder::{without_grad, EncoderBackbone};
    use rewardkit_model::Backbone;
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let config = EncoderConfig {
            source: dir.path().to_owned(),
            pooling,
            max_length: 32,
            train_encoder: true,
            bert: serde_json::Value::Null,
        };
        let encoder = EncoderBackbone::load(config, &Device::Cpu).unwrap();
        let composed = encoder.forward_composed(&inputs()).unwrap();
        let fused = encoder.forward(&inputs()).unwrap();
        let packed = without_grad(|| encoder.forward(&inputs())).unwrap();
        for (what, got) in [("fused", &fused), ("packed", &packed)] {
            let diff = max_abs_diff(got, &composed);
            assert!(diff <= 1e-5, "{pooling:?} {what} vs composed: {diff}");
        }
        let weights = candle_core::Tensor::arange(0f32, 32.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 8))
            .unwrap()
            .cos()
            .unwrap();
        let g_fused = (fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_composed = (composed.clone() * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, var) in encoder.all_parameters() {
            let (a, b) = (g_fused.get(var).unwrap(), g_composed.get(var).unwrap());
            let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
            let diff = max_abs_diff(a, b);
            assert!(
                diff <= 1e-4 * scale,
                "{pooling:?} gradient of {name}: {diff}"
            );
        }

        // The packed training path with its own backward pass: the same vectors, and for every
        // weight the composed path's gradient (within 1e-5, relative to the largest entry when
        // that exceeds 1), added onto what the buffers already hold.
        let (vectors, pass) = encoder.forward_for_training(&inputs()).unwrap().unwrap();
        let diff = max_abs_diff(&vectors, &composed);
        assert!(
            diff <= 1e-5,
            "{pooling:?} own-backward path vs composed: {diff}"
        );
        let params = encoder.all_parameters();
        let mut grads: Vec<Vec<f32>> = params
            .iter()
            .map(|(_, var)| vec![1.0; var.elem_count()])
            .collect();
        let upstream = weights.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        pass.backward(&upstream, &mut grads).unwrap();
        for ((name, var), got) in params.iter().zip(&grads) {
            let want = g_composed.get(var).unwrap();
            let want = (want.flatten_all().unwrap() + 1.0).unwrap();
            let got = candle_core::Tensor::from_slice(got, got.len(), &Device::Cpu).unwrap();
            let scale = (want.clone() - 1.0).unwrap().abs().unwrap().max(0).unwrap();
            let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
            let diff = max_abs_diff(&got, &want);
            assert!(
                diff <= 1e-5 * scale,
                "{pooling:?} own-backward gradient of {name}: {diff} (scale {scale})"
            );
        }
    }
}

/// The own backward pass reaches every encoder weight with a non-zero gradient, and it refuses
/// gradient buffers that do not match the weights instead of writing out of bounds.
#[test]
fn own_backward_pass_reaches_every_weight_and_checks_its_buffers() {
    use rewardkit_model::encoder::EncoderBackbone;
    use rewardkit_model::Backbone;
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let config = EncoderConfig {
        source: dir.path().to_owned(),
        pooling: Pooling::Mean,
        max_length: 32,
        train_encoder: true,
        bert: serde_json::Value::Null,
    };
    let encoder = EncoderBackbone::load(config, &Device::Cpu).unwrap();
    let params = encoder.parameters();
    let fresh = || -> Vec<Vec<f32>> {
        params
            .iter()
            .map(|(_, var)| vec![0.0; var.elem_count()])
            .collect()
    };
    let (vectors, pass) = encoder.forward_for_training(&inputs()).unwrap().unwrap();
    let upstream: Vec<f32> = (0..vectors.elem_count())
        .map(|i| (i as f32).sin())
        .collect();
    let mut grads = fresh();
    pass.backward(&upstream, &mut grads).unwrap();
    for ((name, _), grad) in params.iter().zip(&grads) {
        let norm: f32 = grad.iter().map(|g| g * g).sum();
        assert!(norm > 0.0, "`{name}` received a zero gradient");
    }
    let (_, pass) = encoder.forward_for_training(&inputs()).unwrap().unwrap();
    let mut short = fresh();
    short.pop();
    assert!(pass.backward(&upstream, &mut short).is_err());
    let (_, pass) = encoder.forward_for_training(&inputs()).unwrap().unwrap();
    assert!(pass.backward(&upstream[1..], &mut fresh()).is_err());
}
