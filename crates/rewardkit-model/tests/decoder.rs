//! The `decoder` backbone on tiny random Qwen2, Qwen3 and Llama sequence-classification models
//! written by the test in Hugging Face format: batched == single with padding, sharded ==
//! single-file weights, the padding-token read rule of `transformers`, left truncation, the
//! `model` term, and errors that name the field. `bench/decoder_check.py` compares the scores
//! with `transformers` itself.

use candle_core::Device;
use rewardkit_core::{Budget, Reward, Sample};
use rewardkit_model::decoder::testing::write_tiny_decoder;
use rewardkit_model::decoder::Family;
use rewardkit_model::{ModelTerm, ModelTermOptions, RewardInput, RewardModel};

const FAMILIES: [Family; 3] = [Family::Llama, Family::Qwen2, Family::Qwen3];

fn inputs() -> Vec<RewardInput> {
    vec![
        RewardInput::new(
            "human : help please ? assistant :",
            " sure here is the answer .",
        ),
        RewardInput::new("human : help ? assistant :", " no"),
        RewardInput::new("", "go away , stupid question"),
        RewardInput::new(
            "human : the question , please ? assistant : no . human : please ? assistant :",
            " sure , here is help . thanks",
        ),
    ]
}

fn scores(model: &RewardModel, inputs: &[RewardInput]) -> Vec<f32> {
    model
        .score(inputs)
        .unwrap()
        .into_iter()
        .map(|row| row[0])
        .collect()
}

fn tiny(family: Family, bos: bool, sharded: bool) -> (tempfile::TempDir, RewardModel) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_decoder(dir.path(), family, bos, sharded);
    let model = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
    (dir, model)
}

#[test]
fn batched_equals_single_with_padding() {
    for family in FAMILIES {
        for bos in [false, true] {
            let (_dir, model) = tiny(family, bos, false);
            let inputs = inputs();
            let batched = scores(&model, &inputs);
            for (i, input) in inputs.iter().enumerate() {
                let single = scores(&model, std::slice::from_ref(input))[0];
                assert!(
                    (single - batched[i]).abs() < 1e-5,
                    "{family:?} bos={bos} input {i}: single {single} batched {}",
                    batched[i]
                );
            }
            // Different texts get different, finite scores (the model is not degenerate).
            assert!(batched.iter().all(|s| s.is_finite()), "{batched:?}");
            assert!(
                batched.windows(2).all(|w| (w[0] - w[1]).abs() > 1e-4),
                "{family:?}: {batched:?}"
            );
        }
    }
}

#[test]
fn families_and_tokenizers_differ() {
    // The three families read the same kind of files but compute different things; a model
    // that ignored its config (the Qwen2 biases, the Qwen3 head norms, Llama 3.1's rotary
    // scaling, the BOS token) would score them alike.
    let mut all = Vec::new();
    for family in FAMILIES {
        for bos in [false, true] {
            let (_dir, model) = tiny(family, bos, false);
            all.push(scores(&model, &inputs()));
        }
    }
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert_ne!(all[i], all[j], "configurations {i} and {j} score alike");
        }
    }
}

#[test]
fn sharded_weights_score_like_one_file() {
    for family in FAMILIES {
        let (_a, single) = tiny(family, true, false);
        let (_b, sharded) = tiny(family, true, true);
        assert_eq!(scores(&single, &inputs()), scores(&sharded, &inputs()));
    }
}

#[test]
fn reads_the_last_token_that_is_not_padding() {
    // transformers reads the rightmost token whose id differs from `pad_token_id`; a response
    // that ends in the padding token (Qwen's <|endoftext|>) is read one token earlier.
    for family in FAMILIES {
        let (_dir, model) = tiny(family, true, false);
        let plain = scores(&model, &[RewardInput::new("human : help ?", " sure")]);
        let padded = scores(
            &model,
            &[RewardInput::new("human : help ?", " sure <pad> <pad>")],
        );
        assert!((plain[0] - padded[0]).abs() < 1e-6, "{plain:?} {padded:?}");
        let other = scores(&model, &[RewardInput::new("human : help ?", " sure .")]);
        assert!((plain[0] - other[0]).abs() > 1e-4);
    }
}

#[test]
fn truncation_keeps_the_last_tokens() {
    for family in FAMILIES {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_decoder(dir.path(), family, true, false);
        let full = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
        let short = RewardModel::load(dir.path(), &Device::Cpu)
            .unwrap()
            .with_max_length(4)
            .unwrap();
        // `<s>` + the last three words.
        let long = scores(
            &short,
            &[RewardInput::new("human : help please ?", " sure here is")],
        );
        let tail = scores(&full, &[RewardInput::new("", "sure here is")]);
        assert!((long[0] - tail[0]).abs() < 1e-5, "{long:?} {tail:?}");
        assert!(RewardModel::load(dir.path(), &Device::Cpu)
            .unwrap()
            .with_max_length(65)
            .unwrap_err()
            .to_string()
            .contains("1..=64"));
    }
}

#[test]
fn save_and_load_in_rewardkit_format_round_trips() {
    let (_dir, model) = tiny(Family::Qwen3, true, false);
    let out = tempfile::tempdir().unwrap();
    model.save(out.path()).unwrap();
    let loaded = RewardModel::load(out.path(), &Device::Cpu).unwrap();
    assert_eq!(scores(&model, &inputs()), scores(&loaded, &inputs()));
}

#[test]
fn the_model_term_scores_a_hugging_face_directory() {
    let (dir, model) = tiny(Family::Qwen2, false, false);
    let term = ModelTerm::new(ModelTermOptions {
        path: dir.path().to_owned(),
        batch_size: 3,
        max_length: None,
        normalize: false,
        output: 0,
        max_batch_tokens: None,
        truncation: None,
        chat_template: None,
    })
    .unwrap();
    let samples: Vec<Sample> = inputs()
        .iter()
        .map(|i| Sample::new(i.prompt.clone(), i.response.clone()))
        .collect();
    let expected = scores(&model, &inputs());
    let outputs = term.score_batch(&samples, &Budget::default());
    for (output, want) in outputs.iter().zip(&expected) {
        let got = output.outcome.value().expect("scored");
        assert!((got - f64::from(*want)).abs() < 1e-5, "{got} vs {want}");
    }
    // Token-budget batches (sorted by length, at most 30 padded tokens each) change nothing.
    let budgeted = ModelTerm::new(ModelTermOptions {
        path: dir.path().to_owned(),
        batch_size: 8,
        max_length: None,
        normalize: false,
        output: 0,
        max_batch_tokens: Some(30),
        truncation: None,
        chat_template: None,
    })
    .unwrap();
    for (output, want) in budgeted
        .score_batch(&samples, &Budget::default())
        .iter()
        .zip(&expected)
    {
        let got = output.outcome.value().expect("scored");
        assert!((got - f64::from(*want)).abs() < 1e-5, "{got} vs {want}");
    }
    assert_eq!(
        model.backbone().length(&inputs()[1]),
        7,
        "tokens: human : help ? assistant : no"
    );
    // `normalize` needs statistics a Hugging Face directory does not have.
    let error = ModelTerm::new(ModelTermOptions {
        path: dir.path().to_owned(),
        batch_size: 3,
        max_length: None,
        normalize: true,
        output: 0,
        max_batch_tokens: None,
        truncation: None,
        chat_template: None,
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("rewardkit.json"), "{error}");
}

/// Edits the config.json of a fresh tiny model and returns the load error.
fn load_error(edit: impl Fn(&mut serde_json::Value), family: Family) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_decoder(dir.path(), family, false, false);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    RewardModel::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string()
}

fn check(edit: impl Fn(&mut serde_json::Value), family: Family, expected: &str) {
    let error = load_error(edit, family);
    assert!(
        error.contains(expected),
        "expected `{expected}` in: {error}"
    );
}

#[test]
fn bad_configs_and_weights_are_named() {
    use serde_json::json;
    check(
        |c| c["model_type"] = json!("mistral"),
        Family::Llama,
        "field `model_type`: expected `llama`, `qwen2` or `qwen3`, got `mistral`",
    );
    check(
        |c| c["hidden_act"] = json!("gelu"),
        Family::Qwen2,
        "field `hidden_act`: only `silu`",
    );
    check(
        |c| c["use_sliding_window"] = json!(true),
        Family::Qwen2,
        "sliding-window attention is not supported",
    );
    check(
        |c| c["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0}),
        Family::Llama,
        "rope type `yarn` is not supported",
    );
    check(
        |c| c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0}),
        Family::Llama,
        "field `low_freq_factor`: expected a number",
    );
    check(
        |c| c["num_key_value_heads"] = json!(3),
        Family::Qwen2,
        "field `num_key_value_heads`: expected a divisor of num_attention_heads (4), got 3",
    );
    check(
        |c| c["hidden_size"] = json!("sixteen"),
        Family::Qwen2,
        "field `hidden_size`: expected a non-negative integer",
    );
    check(
        |c| c["hidden_size"] = json!(24),
        Family::Qwen2,
        "tensor `model.embed_tokens.weight` has shape [23, 16], config.json implies [23, 24]",
    );
    check(
        |c| c["attention_bias"] = json!(true),
        Family::Llama,
        "missing tensor `model.layers.0.self_attn.q_proj.bias`",
    );
    check(
        |c| c["num_labels"] = json!(2),
        Family::Qwen3,
        "tensor `score.weight` has shape [1, 16], config.json implies [2, 16]",
    );
    check(
        |c| c["pad_token_id"] = json!(-1),
        Family::Qwen3,
        "field `pad_token_id`: expected a token id",
    );
    check(
        |c| c["architectures"] = json!(["MistralForCausalLM"]),
        Family::Qwen3,
        "names none of the Hugging Face reward models rewardkit loads",
    );
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_decoder(dir.path(), Family::Qwen2, false, true);
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let error = RewardModel::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("model-00002-of-00002.safetensors"),
        "{error}"
    );
    std::fs::remove_file(dir.path().join("model.safetensors.index.json")).unwrap();
    let error = RewardModel::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no model.safetensors"), "{error}");
}
