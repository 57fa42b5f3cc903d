//! The frozen-backbone vector cache: training the head on cached vectors gives the same weights
//! and validation history as recomputing the backbone every step (within float rounding), for
//! pairs and ratings, and a trainable backbone is never cached.

use std::path::Path;

use candle_core::Device;
use rewardkit_model::encoder::testing::write_tiny_bert;
use rewardkit_model::encoder::{EncoderConfig, Pooling};
use rewardkit_model::hashed::HashedConfig;
use rewardkit_model::{
    train, BackboneConfig, CheckpointOptions, Event, Examples, HeadConfig, ModelConfig, Objective,
    PreferencePair, Rating, RewardInput, RewardModel, TrainConfig, TrainReport,
};

const PROMPTS: &[&str] = &[
    "human : help please ? assistant :",
    "human : question ? assistant :",
    "human : the answer ? assistant :",
];
const GOOD: &[&str] = &[
    " sure here is the answer .",
    " thanks , here is help .",
    " sure , please ask the question again .",
];
const BAD: &[&str] = &[" go away , stupid question .", " no , go away .", " no"];

/// Pairs with repeated texts (so the cache deduplicates) and varied lengths (so batches pad).
fn pairs(n: usize) -> Vec<PreferencePair> {
    (0..n)
        .map(|i| PreferencePair {
            line: i as u64 + 1,
            prompt: PROMPTS[i % PROMPTS.len()].into(),
            chosen: GOOD[(i / 2) % GOOD.len()].into(),
            rejected: BAD[(i / 3) % BAD.len()].into(),
            margin: None,
        })
        .collect()
}

fn ratings(n: usize) -> Vec<Rating> {
    (0..n)
        .map(|i| {
            let good = i % 2 == 0;
            let text = if good { GOOD[i % 3] } else { BAD[i % 3] };
            Rating {
                line: i as u64 + 1,
                input: RewardInput::new(PROMPTS[i % PROMPTS.len()], text),
                targets: vec![if good { 1.0 } else { -1.0 }, (i % 4) as f64],
            }
        })
        .collect()
}

fn encoder_model(dir: &Path, head: HeadConfig, labels: &[String]) -> RewardModel {
    let encoder = EncoderConfig {
        source: dir.to_owned(),
        pooling: Pooling::Mean,
        max_length: 32,
        train_encoder: false,
        bert: serde_json::Value::Null,
    };
    RewardModel::new(
        ModelConfig::new(BackboneConfig::Encoder(encoder), head, labels),
        3,
        &Device::Cpu,
    )
    .unwrap()
}

fn run(
    model: &RewardModel,
    config: &TrainConfig,
    data: &Examples,
    validation: &Examples,
) -> (TrainReport, Vec<f32>, Vec<Event>) {
    let mut events = Vec::new();
    let report = train(
        model,
        config,
        data,
        Some(validation),
        &CheckpointOptions::default(),
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    let weights = model
        .named_tensors()
        .into_iter()
        .flat_map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    (report, weights, events)
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-5, "{what}: {a} vs {b}");
}

/// Trains the same model twice, cached and uncached, and compares everything.
fn check(head: HeadConfig, labels: &[String], objective: Objective, data: Examples) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let (train_set, validation) = data.split_last(7);
    let config = |cache_features| TrainConfig {
        objective,
        epochs: 3,
        batch_size: 5,
        eval_every: 2,
        cache_features,
        optimizer: rewardkit_model::optim::AdamWConfig {
            lr: 0.05,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let cached_model = encoder_model(dir.path(), head, labels);
    let plain_model = encoder_model(dir.path(), head, labels);
    let (cached, cached_weights, events) =
        run(&cached_model, &config(true), &train_set, &validation);
    let (plain, plain_weights, plain_events) =
        run(&plain_model, &config(false), &train_set, &validation);

    let cache = cached
        .feature_cache
        .as_ref()
        .expect("a frozen encoder is cached");
    let texts = |e: &Examples| match e {
        Examples::Pairs(p) => p
            .iter()
            .flat_map(|p| [p.chosen_input(), p.rejected_input()])
            .collect::<Vec<_>>(),
        Examples::Ratings(r) => r.iter().map(|r| r.input.clone()).collect(),
    };
    let distinct: std::collections::HashSet<RewardInput> = texts(&train_set)
        .into_iter()
        .chain(texts(&validation))
        .collect();
    assert_eq!(cache.inputs, distinct.len(), "each distinct text once");
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Caching { done, total } if done == total && *total == cache.inputs)
        ),
        "caching progress reaches the end: {events:?}"
    );
    assert!(plain.feature_cache.is_none());
    assert!(!plain_events
        .iter()
        .any(|e| matches!(e, Event::Caching { .. })));

    assert_eq!(cached.steps, plain.steps);
    assert_eq!(cached.history.len(), plain.history.len());
    for (a, b) in cached.history.iter().zip(&plain.history) {
        close(a.loss, b.loss, "validation loss");
        close(a.train_loss.unwrap(), b.train_loss.unwrap(), "train loss");
        close(a.reward_mean, b.reward_mean, "reward mean");
        close(a.reward_std, b.reward_std, "reward std");
        assert_eq!(a.accuracy, b.accuracy);
    }
    assert_eq!(cached_weights.len(), plain_weights.len());
    for (i, (a, b)) in cached_weights.iter().zip(&plain_weights).enumerate() {
        close(f64::from(*a), f64::from(*b), &format!("weight {i}"));
    }
    // Training moved the head: the comparison is not between two untouched models.
    let fresh = encoder_model(dir.path(), head, labels);
    let probe = [RewardInput::new(PROMPTS[0], GOOD[0])];
    assert_ne!(
        fresh.score(&probe).unwrap(),
        cached_model.score(&probe).unwrap()
    );
}

#[test]
fn frozen_encoder_cache_matches_the_uncached_path() {
    check(
        HeadConfig::Linear,
        &[],
        Objective::Bt,
        Examples::Pairs(pairs(27)),
    );
    check(
        HeadConfig::Mlp { hidden: 4 },
        &[],
        Objective::LabelSmoothing { alpha: 0.1 },
        Examples::Pairs(pairs(27)),
    );
    check(
        HeadConfig::Mlp { hidden: 4 },
        &["good".into(), "count".into()],
        Objective::Regression,
        Examples::Ratings(ratings(25)),
    );
}

#[test]
fn a_trainable_backbone_is_never_cached() {
    let hashed = HashedConfig {
        buckets: 1 << 8,
        width: 4,
        ..HashedConfig::default()
    };
    let model = RewardModel::new(
        ModelConfig::new(BackboneConfig::Hashed(hashed), HeadConfig::Linear, &[]),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let (train_set, validation) = Examples::Pairs(pairs(12)).split_last(4);
    let (report, _, events) = run(&model, &TrainConfig::default(), &train_set, &validation);
    assert!(report.feature_cache.is_none());
    assert!(!events.iter().any(|e| matches!(e, Event::Caching { .. })));
}
