//! Saving encoder reward models as `BertForSequenceClassification` checkpoints: which
//! configurations are written in that format, the names and config keys transformers reads, and
//! that the directory still loads in rewardkit with the same scores. `bench/export_check.py`
//! loads such a directory with transformers itself.

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::Device;
use rewardkit_model::encoder::testing::write_tiny_bert;
use rewardkit_model::encoder::{EncoderConfig, Pooling};
use rewardkit_model::hashed::HashedConfig;
use rewardkit_model::{BackboneConfig, HeadConfig, ModelConfig, RewardInput, RewardModel};

fn encoder_model(source: &Path, pooling: Pooling, head: HeadConfig) -> RewardModel {
    let encoder = EncoderConfig {
        source: source.to_owned(),
        pooling,
        max_length: 16,
        train_encoder: true,
        bert: serde_json::Value::Null,
    };
    RewardModel::new(
        ModelConfig::new(BackboneConfig::Encoder(encoder), head, &[]),
        3,
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
    ]
}

fn saved(model: &RewardModel) -> (tempfile::TempDir, serde_json::Value, BTreeSet<String>) {
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    (dir, config, names)
}

#[test]
fn cls_pooling_under_the_bert_pooler_head_is_saved_as_bert_for_sequence_classification() {
    let source = tempfile::tempdir().unwrap();
    write_tiny_bert(source.path());
    let model = encoder_model(source.path(), Pooling::Cls, HeadConfig::BertPooler);
    assert!(model.is_bert_compatible());
    let (dir, config, names) = saved(&model);
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"])
    );
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["num_labels"], 1);
    assert_eq!(config["label2id"], serde_json::json!({"reward": 0}));
    // The encoder's BERT keys, at top level where transformers' BertConfig reads them.
    for key in [
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "layer_norm_eps",
        "hidden_act",
    ] {
        assert_eq!(config[key], config["backbone"]["bert"][key], "{key}");
    }
    for name in [
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.output.LayerNorm.bias",
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("bert.") || n.starts_with("classifier.")),
        "{names:?}"
    );
    // And rewardkit reads it back with the same scores.
    let loaded = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(
        loaded.score(&inputs()).unwrap(),
        model.score(&inputs()).unwrap()
    );
    assert!(dir.path().join("tokenizer.json").exists());
}

#[test]
fn the_other_configurations_keep_rewardkit_names() {
    let source = tempfile::tempdir().unwrap();
    write_tiny_bert(source.path());
    for (pooling, head) in [
        (Pooling::Mean, HeadConfig::BertPooler),
        (Pooling::Cls, HeadConfig::Linear),
        (Pooling::Cls, HeadConfig::Mlp { hidden: 8 }),
        (Pooling::Mean, HeadConfig::Linear),
    ] {
        let model = encoder_model(source.path(), pooling, head);
        assert!(!model.is_bert_compatible(), "{pooling:?} {head:?}");
        let (dir, config, names) = saved(&model);
        assert_eq!(
            config["model_type"], "rewardkit-encoder",
            "{pooling:?} {head:?}"
        );
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("backbone.") || n.starts_with("score.")),
            "{names:?}"
        );
        let loaded = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(
            loaded.score(&inputs()).unwrap(),
            model.score(&inputs()).unwrap()
        );
    }
}

#[test]
fn the_bert_pooler_head_is_tanh_between_two_layers() {
    // classifier(tanh(dense(x))), recomputed by hand from the backbone's vectors; on the hashed
    // backbone the head computes the same function but is not exportable.
    let hashed = HashedConfig {
        buckets: 64,
        width: 6,
        ..HashedConfig::default()
    };
    let model = RewardModel::new(
        ModelConfig::new(BackboneConfig::Hashed(hashed), HeadConfig::BertPooler, &[]),
        1,
        &Device::Cpu,
    )
    .unwrap();
    assert!(!model.is_bert_compatible());
    let params = model.parameters();
    let get = |name: &str| -> Vec<f32> {
        params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (wd, bd, wc, bc) = (
        get("score.dense.weight"),
        get("score.dense.bias"),
        get("score.out_proj.weight"),
        get("score.out_proj.bias"),
    );
    assert_eq!(wd.len(), 36, "dense is width × width");
    let x = model
        .backbone()
        .forward(&inputs())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let scores = model.score(&inputs()).unwrap();
    for (row, score) in x.iter().zip(&scores) {
        let pooled: Vec<f32> = (0..6)
            .map(|o| (bd[o] + (0..6).map(|i| wd[o * 6 + i] * row[i]).sum::<f32>()).tanh())
            .collect();
        let expected = bc[0] + (0..6).map(|i| wc[i] * pooled[i]).sum::<f32>();
        assert!(
            (score[0] - expected).abs() < 1e-5,
            "{} vs {expected}",
            score[0]
        );
    }
}
