//! Training end to end on small synthetic data: learning, determinism, bit-exact resume,
//! gradients reaching every parameter, and the `model` term's batched == single.

use candle_core::Device;
use rewardkit_core::{Budget, Reward, Sample};
use rewardkit_model::hashed::HashedConfig;
use rewardkit_model::{
    train, BackboneConfig, CheckpointOptions, Event, Examples, HeadConfig, ModelConfig, ModelTerm,
    ModelTermOptions, Objective, PreferencePair, RewardInput, RewardModel, TrainConfig,
    TrainingRecord,
};

/// Pairs where the chosen response is polite and the rejected one is rude, over varied prompts.
fn polite_pairs(n: usize, offset: usize) -> Vec<PreferencePair> {
    let topics = [
        "the weather",
        "a recipe",
        "my homework",
        "a poem",
        "the news",
        "my code",
        "a trip",
        "a gift",
    ];
    let polite = [
        "Sure, happy to help with",
        "Of course, here is some help with",
        "Thanks for asking about",
        "Glad to help with",
    ];
    let rude = [
        "Go away, I will not discuss",
        "That is a stupid question about",
        "Figure out yourself",
        "Nobody cares about",
    ];
    (0..n)
        .map(|i| {
            let k = i + offset;
            let topic = topics[k % topics.len()];
            PreferencePair {
                line: k as u64 + 1,
                prompt: format!("\n\nHuman: Can you help me with {topic}?\n\nAssistant:"),
                chosen: format!(" {} {topic}.", polite[(k / 3) % polite.len()]),
                rejected: format!(" {} {topic}.", rude[(k / 5) % rude.len()]),
                margin: Some(1.0 + (k % 3) as f64),
            }
        })
        .collect()
}

fn tiny_model(seed: u64, head: HeadConfig) -> RewardModel {
    let hashed = HashedConfig {
        buckets: 1 << 10,
        width: 8,
        ..HashedConfig::default()
    };
    RewardModel::new(
        ModelConfig::new(BackboneConfig::Hashed(hashed), head, &[]),
        seed,
        &Device::Cpu,
    )
    .unwrap()
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 8,
        grad_accumulation: 2,
        eval_every: 3,
        optimizer: rewardkit_model::optim::AdamWConfig {
            lr: 0.02,
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

fn weights(model: &RewardModel) -> Vec<Vec<f32>> {
    model
        .named_tensors()
        .into_iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn learns_a_planted_preference_with_every_objective() {
    let train_set = Examples::Pairs(polite_pairs(64, 0));
    let validation = Examples::Pairs(polite_pairs(24, 1000));
    let objectives = [
        Objective::Bt,
        Objective::BtMargin,
        Objective::ScaledBt,
        Objective::LabelSmoothing { alpha: 0.1 },
        Objective::LogExp,
    ];
    for objective in objectives {
        for head in [HeadConfig::Linear, HeadConfig::Mlp { hidden: 8 }] {
            let model = tiny_model(1, head);
            let config = TrainConfig {
                objective,
                centring: 0.01,
                ..config()
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
            let best = report.best.unwrap();
            assert!(
                best.accuracy.unwrap() >= 0.95,
                "{objective:?} {head:?}: {best:?}"
            );
            assert!(
                best.loss < report.history[0].loss || report.history[0].accuracy == Some(1.0),
                "{objective:?}: {:?}",
                report.history
            );
        }
    }
}

#[test]
fn same_seed_same_model_and_every_parameter_gets_a_gradient() {
    let data = Examples::Pairs(polite_pairs(32, 0));
    let run = |seed| {
        let model = tiny_model(seed, HeadConfig::Mlp { hidden: 4 });
        let before = weights(&model);
        let config = TrainConfig {
            seed,
            epochs: 1,
            ..config()
        };
        train(
            &model,
            &config,
            &data,
            None,
            &CheckpointOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        (before, weights(&model))
    };
    let (before, a) = run(3);
    let (_, b) = run(3);
    let (_, c) = run(4);
    assert_eq!(a, b, "same seed, same weights");
    assert_ne!(a, c, "another seed, other weights");
    // Every trainable tensor moved: the gradient reached it (AdamW moves any weight whose
    // gradient is non-zero; decay alone would not move the zero-initialised biases).
    let names: Vec<String> = tiny_model(3, HeadConfig::Mlp { hidden: 4 })
        .named_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for ((name, before), after) in names.iter().zip(&before).zip(&a) {
        assert_ne!(before, after, "`{name}` received no gradient");
    }
}

#[test]
fn resume_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint.safetensors");
    let data = Examples::Pairs(polite_pairs(40, 0));
    let validation = Examples::Pairs(polite_pairs(10, 500));
    let config = TrainConfig {
        checkpoint_every: 2,
        eval_every: 2,
        ..config()
    };

    let straight = tiny_model(9, HeadConfig::Mlp { hidden: 4 });
    let full = train(
        &straight,
        &config,
        &data,
        Some(&validation),
        &CheckpointOptions::default(),
        &mut |_| {},
    )
    .unwrap();

    // Interrupted after 5 steps: the last checkpoint is from step 4, so step 5 is redone.
    let interrupted = tiny_model(9, HeadConfig::Mlp { hidden: 4 });
    let options = CheckpointOptions {
        path: Some(checkpoint.clone()),
        resume: true,
        stop_after: Some(5),
    };
    let first = train(
        &interrupted,
        &config,
        &data,
        Some(&validation),
        &options,
        &mut |_| {},
    )
    .unwrap();
    assert!(first.interrupted && first.steps == 5);

    // A fresh process would start from freshly initialised weights (another seed even).
    let resumed = tiny_model(77, HeadConfig::Mlp { hidden: 4 });
    let mut from = None;
    let options = CheckpointOptions {
        path: Some(checkpoint.clone()),
        resume: true,
        stop_after: None,
    };
    let second = train(
        &resumed,
        &config,
        &data,
        Some(&validation),
        &options,
        &mut |event| {
            if let Event::Start { from_step, .. } = event {
                from = Some(*from_step);
            }
        },
    )
    .unwrap();
    assert_eq!(from, Some(4));
    assert_eq!(
        weights(&resumed),
        weights(&straight),
        "resumed weights differ from the uninterrupted run"
    );
    assert_eq!(second.history, full.history);

    // Other settings refuse the checkpoint instead of mixing two runs.
    let other = TrainConfig {
        seed: 1,
        ..config.clone()
    };
    let error = train(
        &tiny_model(9, HeadConfig::Mlp { hidden: 4 }),
        &other,
        &data,
        Some(&validation),
        &options,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(error.to_string().contains("other settings"), "{error}");
}

#[test]
fn early_stopping_keeps_the_best_weights() {
    let data = Examples::Pairs(polite_pairs(48, 0));
    // Validation whose labels are flipped: the better the model fits, the worse validation gets.
    let flipped: Vec<PreferencePair> = polite_pairs(16, 300)
        .into_iter()
        .map(|p| PreferencePair {
            chosen: p.rejected,
            rejected: p.chosen,
            ..p
        })
        .collect();
    let validation = Examples::Pairs(flipped);
    let model = tiny_model(2, HeadConfig::Linear);
    let config = TrainConfig {
        epochs: 20,
        eval_every: 1,
        patience: 2,
        ..config()
    };
    let mut stops = 0;
    let report = train(
        &model,
        &config,
        &data,
        Some(&validation),
        &CheckpointOptions::default(),
        &mut |e| {
            if matches!(e, Event::EarlyStop { .. }) {
                stops += 1;
            }
        },
    )
    .unwrap();
    assert!(report.stopped_early && stops == 1);
    assert!(report.steps < report.total_steps);
    let best = report.best.clone().unwrap();
    let now = rewardkit_model::train::evaluate(&model, &config, &validation).unwrap();
    assert_eq!(
        now.loss, best.loss,
        "the model keeps the best validation weights"
    );
}

#[test]
fn bad_combinations_are_refused() {
    let model = tiny_model(1, HeadConfig::Linear);
    let mut pairs = polite_pairs(4, 0);
    pairs[2].margin = None;
    let data = Examples::Pairs(pairs);
    let config = TrainConfig {
        objective: Objective::BtMargin,
        ..config()
    };
    let error = train(
        &model,
        &config,
        &data,
        None,
        &CheckpointOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("needs a margin on every pair") && error.contains("line 3"),
        "{error}"
    );
    let config = TrainConfig {
        objective: Objective::Regression,
        ..TrainConfig::default()
    };
    let error = train(
        &model,
        &config,
        &data,
        None,
        &CheckpointOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("regression trains on ratings"), "{error}");
    let config = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    let error = train(
        &model,
        &config,
        &data,
        None,
        &CheckpointOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("batch-size"), "{error}");
}

#[test]
fn regression_fits_ratings() {
    use rewardkit_model::Rating;
    let ratings: Vec<Rating> = polite_pairs(40, 0)
        .into_iter()
        .flat_map(|p| {
            [
                Rating {
                    line: p.line,
                    input: p.chosen_input(),
                    targets: vec![3.0, 1.0],
                },
                Rating {
                    line: p.line,
                    input: p.rejected_input(),
                    targets: vec![0.0, 1.0],
                },
            ]
        })
        .collect();
    let hashed = HashedConfig {
        buckets: 1 << 10,
        width: 8,
        ..HashedConfig::default()
    };
    let labels = ["helpfulness".to_owned(), "verbosity".to_owned()];
    let model = RewardModel::new(
        ModelConfig::new(BackboneConfig::Hashed(hashed), HeadConfig::Linear, &labels),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let (train_set, validation) = Examples::Ratings(ratings).split_last(20);
    let config = TrainConfig {
        objective: Objective::Regression,
        epochs: 8,
        ..config()
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
    let best = report.best.unwrap();
    assert!(best.loss < 0.2, "{best:?}");
    assert!(best.accuracy.is_none());
}

#[test]
fn model_term_scores_batched_like_single_and_normalises() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(5, HeadConfig::Mlp { hidden: 4 });
    let data = Examples::Pairs(polite_pairs(32, 0));
    let validation = Examples::Pairs(polite_pairs(8, 100));
    let config = config();
    let report = train(
        &model,
        &config,
        &data,
        Some(&validation),
        &CheckpointOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    model.save(dir.path()).unwrap();
    let final_metrics = rewardkit_model::train::evaluate(&model, &config, &validation).unwrap();
    TrainingRecord {
        rewardkit_version: "test".into(),
        config: config.clone(),
        train_data: "memory".into(),
        train_examples: 32,
        validation_data: None,
        validation_examples: 8,
        reward_mean: Some(final_metrics.reward_mean),
        reward_std: Some(final_metrics.reward_std),
        final_metrics: Some(final_metrics.clone()),
        report,
    }
    .save(dir.path())
    .unwrap();

    let samples: Vec<Sample> = polite_pairs(13, 200)
        .iter()
        .flat_map(|p| {
            [
                Sample::new(p.prompt.clone(), p.chosen.clone()),
                Sample::new(p.prompt.clone(), p.rejected.clone()),
            ]
        })
        .chain([Sample::new("", ""), Sample::new("x", "y ".repeat(5000))])
        .collect();
    let options = |batch_size, normalize| ModelTermOptions {
        path: dir.path().to_owned(),
        batch_size,
        max_length: None,
        normalize,
        output: 0,
        max_batch_tokens: None,
        truncation: None,
        chat_template: None,
    };
    let budget = Budget::default();
    let batched = ModelTerm::new(options(7, false))
        .unwrap()
        .score_batch(&samples, &budget);
    let single = ModelTerm::new(options(1, false)).unwrap();
    let direct = model
        .score(
            &samples
                .iter()
                .map(RewardInput::from_sample)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    for (i, sample) in samples.iter().enumerate() {
        let one = single
            .score(sample, &mut budget.meter())
            .outcome
            .value()
            .unwrap();
        let many = batched[i].outcome.value().unwrap();
        assert!((one - many).abs() < 1e-5, "sample {i}: {one} vs {many}");
        assert!((one - direct[i][0] as f64).abs() < 1e-5);
    }
    // Normalised validation rewards have mean 0 and std 1.
    let normalised = ModelTerm::new(options(4, true)).unwrap();
    let validation_samples: Vec<Sample> = polite_pairs(8, 100)
        .iter()
        .flat_map(|p| {
            [
                Sample::new(p.prompt.clone(), p.chosen.clone()),
                Sample::new(p.prompt.clone(), p.rejected.clone()),
            ]
        })
        .collect();
    let values: Vec<f64> = normalised
        .score_batch(&validation_samples, &budget)
        .iter()
        .map(|o| o.outcome.value().unwrap())
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    assert!(
        mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
        "mean {mean}, var {var}"
    );
    // Bad options name themselves.
    let error = ModelTerm::new(ModelTermOptions {
        output: 3,
        ..options(4, false)
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("output"), "{error}");
    std::fs::remove_file(dir.path().join("rewardkit.json")).unwrap();
    let error = ModelTerm::new(options(4, true)).unwrap_err().to_string();
    assert!(error.contains("rewardkit.json"), "{error}");
}
