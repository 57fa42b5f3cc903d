//! Text settings of a reward model: the truncation side (left vs right keep different ends on
//! every backbone, `max_length` holds either way) and the chat template, both saved in the model
//! directory and used by the `model` term unless the spec overrides them; a directory saved
//! before these settings existed still loads with the old defaults.

use std::path::Path;

use candle_core::Device;
use rewardkit_core::{Budget, Reward, Sample};
use rewardkit_model::decoder::testing::write_tiny_decoder;
use rewardkit_model::decoder::{DecoderBackbone, Family};
use rewardkit_model::encoder::testing::write_tiny_bert;
use rewardkit_model::encoder::{EncoderConfig, Pooling};
use rewardkit_model::hashed::HashedConfig;
use rewardkit_model::{
    BackboneConfig, ChatTemplate, ChatTemplateConfig, HeadConfig, ModelConfig, ModelTerm,
    ModelTermOptions, RewardInput, RewardModel, Truncation, CONFIG_FILE,
};

fn score(model: &RewardModel, prompt: &str, response: &str) -> f32 {
    model.score(&[RewardInput::new(prompt, response)]).unwrap()[0][0]
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn decoder_truncation_sides_keep_different_ends() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_decoder(dir.path(), Family::Llama, true, false);
    let config = DecoderBackbone::config_for(dir.path(), Some(4)).unwrap();
    let tensors = rewardkit_model::decoder::load_safetensors(dir.path(), &Device::Cpu).unwrap();
    let mut backbone = DecoderBackbone::from_tensors(
        config,
        &dir.path().join("tokenizer.json"),
        &tensors,
        &Device::Cpu,
    )
    .unwrap();
    let words = |ids: &[u32]| -> Vec<&str> {
        ids.iter()
            .map(|&i| rewardkit_model::decoder::testing::WORDS[i as usize])
            .collect()
    };
    let input = RewardInput::new("human : help please ?", " sure here is");
    let ids = |b: &DecoderBackbone| b.token_ids(std::slice::from_ref(&input)).unwrap()[0].clone();
    // `<s>` is added after cutting, inside max_length = 4, on both sides.
    assert_eq!(words(&ids(&backbone)), ["<s>", "sure", "here", "is"]);
    rewardkit_model::Backbone::set_truncation(&mut backbone, Truncation::Right).unwrap();
    assert_eq!(words(&ids(&backbone)), ["<s>", "human", ":", "help"]);
    // Changing max_length keeps the side.
    rewardkit_model::Backbone::set_max_length(&mut backbone, 6).unwrap();
    assert_eq!(
        words(&ids(&backbone)),
        ["<s>", "human", ":", "help", "please", "?"]
    );
    // A template that wrote the BOS token itself does not get a second one.
    let templated = RewardInput::new("<s>human : help ?", " sure");
    assert_eq!(
        words(&backbone.token_ids(&[templated]).unwrap()[0]),
        ["<s>", "human", ":", "help", "?", "sure"]
    );
}

#[test]
fn encoder_truncation_sides_keep_different_ends() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let encoder = |max_length| {
        let bert: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        ModelConfig::new(
            BackboneConfig::Encoder(EncoderConfig {
                source: dir.path().to_path_buf(),
                pooling: Pooling::Mean,
                max_length,
                train_encoder: false,
                bert,
            }),
            HeadConfig::Linear,
            &[],
        )
    };
    let full = RewardModel::new(encoder(32), 3, &Device::Cpu).unwrap();
    let left = RewardModel::new(encoder(3), 3, &Device::Cpu).unwrap();
    let right = RewardModel::new(encoder(3), 3, &Device::Cpu)
        .unwrap()
        .with_truncation(Truncation::Right)
        .unwrap();
    let (prompt, response) = ("human : please help", " sure here is the answer");
    let l = score(&left, prompt, response);
    let r = score(&right, prompt, response);
    assert!(
        close(l, score(&full, "", "is the answer")),
        "left keeps the end"
    );
    assert!(
        close(r, score(&full, "human : please", "")),
        "right keeps the start"
    );
    assert!(!close(l, r));
    // Inputs within max_length are not cut either way.
    assert!(close(
        score(&left, "human", " sure ."),
        score(&right, "human", " sure .")
    ));
}

fn hashed_config() -> ModelConfig {
    ModelConfig::new(
        BackboneConfig::Hashed(HashedConfig {
            buckets: 256,
            width: 4,
            max_length: 3,
            ..HashedConfig::default()
        }),
        HeadConfig::Linear,
        &[],
    )
}

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn chat_sample(system: bool) -> Sample {
    let prompt = if system {
        r#"[{"role":"system","content":"be nice"},{"role":"user","content":"help please"}]"#
    } else {
        r#"[{"role":"user","content":"help please"}]"#
    };
    serde_json::from_str(&format!(
        r#"{{"prompt":{prompt},"completion":{{"role":"assistant","content":"sure here is the answer"}}}}"#
    ))
    .unwrap()
}

fn term_options(path: &Path) -> ModelTermOptions {
    ModelTermOptions {
        path: path.to_path_buf(),
        batch_size: 4,
        max_length: None,
        normalize: false,
        output: 0,
        max_batch_tokens: None,
        truncation: None,
        chat_template: None,
    }
}

fn term_score(term: &ModelTerm, sample: &Sample) -> Option<f64> {
    term.score(sample, &mut Budget::default().meter())
        .outcome
        .value()
}

#[test]
fn settings_are_saved_and_used_by_the_model_term() {
    let dir = tempfile::tempdir().unwrap();
    let template_file = dir.path().join("chatml.jinja");
    std::fs::write(&template_file, CHATML).unwrap();
    let chat_template =
        ChatTemplateConfig::resolve("--chat-template", template_file.to_str().unwrap(), &[])
            .unwrap();
    let model = RewardModel::new(hashed_config(), 9, &Device::Cpu)
        .unwrap()
        .with_truncation(Truncation::Right)
        .unwrap()
        .with_chat_template(chat_template.clone())
        .unwrap();
    let out = dir.path().join("model");
    model.save(&out).unwrap();
    // The template is saved whole: the file can go.
    std::fs::remove_file(&template_file).unwrap();
    let loaded = RewardModel::load(&out, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(loaded.config().truncation, Truncation::Right);
    assert_eq!(loaded.config().chat_template, chat_template);

    // The term renders with the saved template and cuts at the saved side.
    let term = ModelTerm::new(term_options(&out)).unwrap();
    let sample = chat_sample(false);
    let rendered =
        RewardInput::render_sample(&sample, &ChatTemplate::new(&chat_template).unwrap()).unwrap();
    assert_eq!(
        rendered,
        RewardInput::new(
            "<|im_start|>user\nhelp please<|im_end|>\n<|im_start|>assistant\n",
            "sure here is the answer<|im_end|>\n"
        )
    );
    let expected = f64::from(loaded.score(std::slice::from_ref(&rendered)).unwrap()[0][0]);
    assert_eq!(term_score(&term, &sample), Some(expected));
    let batch = term.score_batch(&[sample.clone(), chat_sample(true)], &Budget::default());
    assert_eq!(batch[0].outcome.value(), Some(expected));

    // Spec overrides win over the saved settings.
    let overridden = ModelTerm::new(ModelTermOptions {
        truncation: Some(Truncation::Left),
        chat_template: Some("builtin".into()),
        ..term_options(&out)
    })
    .unwrap();
    let builtin = RewardInput::from_sample(&sample);
    let left = loaded.with_truncation(Truncation::Left).unwrap();
    let expected = f64::from(left.score(&[builtin]).unwrap()[0][0]);
    assert_eq!(term_score(&overridden, &sample), Some(expected));
    let error = ModelTerm::new(ModelTermOptions {
        chat_template: Some("chatml".into()),
        ..term_options(&out)
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("option `chat_template`: `chatml` is neither a known value nor an existing file; expected `builtin`, `none`, `tokenizer`"),
        "{error}"
    );
    let error =
        serde_json::from_str::<ModelTermOptions>(r#"{"path": "x", "truncation": "middle"}"#)
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("unknown variant `middle`, expected `left` or `right`"),
        "{error}"
    );
}

#[test]
fn a_sample_the_template_refuses_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let strict = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}\n{% endfor %}";
    let model = RewardModel::new(hashed_config(), 9, &Device::Cpu)
        .unwrap()
        .with_chat_template(ChatTemplateConfig::Jinja {
            origin: "strict.jinja".into(),
            template: strict.into(),
            special_tokens: Default::default(),
        })
        .unwrap();
    model.save(dir.path()).unwrap();
    let term = ModelTerm::new(term_options(dir.path())).unwrap();
    let outputs = term.score_batch(&[chat_sample(true), chat_sample(false)], &Budget::default());
    let failed = format!("{:?}", outputs[0].outcome);
    assert!(
        outputs[0].outcome.value().is_none()
            && failed.contains("strict.jinja: rendering the chat template failed: invalid operation: System role not supported (template line 1"),
        "{failed}"
    );
    assert!(outputs[1].outcome.value().is_some());
}

#[test]
fn a_directory_saved_before_the_settings_loads_with_the_old_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let model = RewardModel::new(hashed_config(), 4, &Device::Cpu).unwrap();
    model.save(dir.path()).unwrap();
    let path = dir.path().join(CONFIG_FILE);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let object = config.as_object_mut().unwrap();
    assert_eq!(object.remove("truncation"), Some(serde_json::json!("left")));
    assert_eq!(
        object.remove("chat_template"),
        Some(serde_json::json!({"kind": "builtin"}))
    );
    std::fs::write(&path, config.to_string()).unwrap();
    let loaded = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.config().truncation, Truncation::Left);
    assert_eq!(loaded.config().chat_template, ChatTemplateConfig::Builtin);
    let inputs = [RewardInput::new("one two three four", " five six")];
    assert_eq!(
        loaded.score(&inputs).unwrap(),
        model.score(&inputs).unwrap()
    );
}

#[test]
fn tokenizer_templates_of_a_decoder_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_decoder(dir.path(), Family::Qwen2, true, false);
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::json!({
            "bos_token": "<s>",
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }} : {{ m.content }} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
        })
        .to_string(),
    )
    .unwrap();
    let term = ModelTerm::new(ModelTermOptions {
        chat_template: Some("tokenizer".into()),
        ..term_options(dir.path())
    })
    .unwrap();
    let model = RewardModel::load(dir.path(), &Device::Cpu).unwrap();
    let sample = chat_sample(false);
    // `{{ bos_token }}` renders `<s>`, which the tokenizer then does not add a second time.
    let expected = score(
        &model,
        "<s>user : help please assistant :",
        " sure here is the answer ",
    );
    let got = term_score(&term, &sample).unwrap();
    assert!((got - f64::from(expected)).abs() < 1e-6, "{got} {expected}");
    // A published directory is scored with its own template by default, like transformers
    // users do; `builtin` in the spec still overrides it.
    assert!(matches!(
        model.config().chat_template,
        ChatTemplateConfig::Jinja { .. }
    ));
    let default = ModelTerm::new(term_options(dir.path())).unwrap();
    let got = term_score(&default, &sample).unwrap();
    assert!((got - f64::from(expected)).abs() < 1e-6, "{got} {expected}");
    let builtin = ModelTerm::new(ModelTermOptions {
        chat_template: Some("builtin".into()),
        ..term_options(dir.path())
    })
    .unwrap();
    let hh = score(
        &model,
        "\n\nHuman: help please\n\nAssistant:",
        " sure here is the answer",
    );
    let got = term_score(&builtin, &sample).unwrap();
    assert!((got - f64::from(hh)).abs() < 1e-6, "{got} {hh}");
    assert!(
        (hh - expected).abs() > 1e-6,
        "the two renderings must differ"
    );
    // Without a tokenizer_config.json the error names where it looked.
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    let error = ModelTerm::new(ModelTermOptions {
        chat_template: Some("tokenizer".into()),
        ..term_options(dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("option `chat_template`: no chat template found; looked in")
            && error.contains("tokenizer_config.json (field `chat_template`)"),
        "{error}"
    );
}
