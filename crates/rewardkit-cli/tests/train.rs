//! `rewardkit train` end to end: the quickstart trains, saves and scores through a spec; bad input
//! is named; a run killed with SIGKILL resumes to the same weights as an uninterrupted run.

mod common;
use common::{fails_with, json_lines, ok, repo, write, BIN};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Small and fast settings for the tests (a debug build).
const SMALL: &[&str] = &[
    "--buckets",
    "4096",
    "--width",
    "8",
    "--head-hidden",
    "8",
    "--no-progress",
];

fn train(args: &[&str]) -> String {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    all.extend_from_slice(SMALL);
    ok(&all)
}

#[test]
fn quickstart_trains_saves_and_scores_through_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rm");
    let data = repo("examples/preferences.jsonl");
    let stdout = train(&[
        "--data",
        data.to_str().unwrap(),
        "--val-last",
        "8",
        "--backbone",
        "hashed",
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
    ]);
    assert!(stdout.contains("validation: accuracy"), "{stdout}");
    for file in ["config.json", "model.safetensors", "rewardkit.json"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    assert!(
        !out.join("checkpoint.safetensors").exists(),
        "a finished run leaves no checkpoint"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("rewardkit.json")).unwrap()).unwrap();
    assert_eq!(record["config"]["objective"]["kind"], "bt");
    assert_eq!(record["train_examples"], 32);
    assert_eq!(record["validation_examples"], 8);
    assert!(
        record["final_metrics"]["accuracy"].as_f64().unwrap() >= 0.75,
        "{record}"
    );
    assert!(record["reward_std"].as_f64().unwrap() > 0.0);

    let spec = write(
        dir.path(),
        "spec.toml",
        format!("[[term]]\nname = \"rm\"\nkind = \"model\"\n[term.options]\npath = {:?}\nbatch_size = 4\nnormalize = true\n", out.to_str().unwrap()),
    );
    let scored = dir.path().join("scored.jsonl");
    ok(&[
        "score",
        "--spec",
        &spec,
        "--input",
        repo("examples/model-rollouts.jsonl").to_str().unwrap(),
        "--output",
        scored.to_str().unwrap(),
    ]);
    let rows = json_lines(&scored);
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|r| r["rm.outcome"] == "scored" && r["rm"].as_f64().is_some()),
        "{rows:?}"
    );
    // `spec kinds` lists the kind.
    assert!(ok(&["spec", "kinds"]).contains("model"));
}

#[test]
fn bad_input_and_options_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rm");
    let out = out.to_str().unwrap();
    let data = write(
        dir.path(),
        "pairs.jsonl",
        "{\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"chosen\":\"a\",\"rejected\":7}\n",
    );
    fails_with(
        &["train", "--data", &data, "--out", out],
        &["pairs.jsonl:2: field `rejected`: expected a string or a list"],
    );
    let data = write(
        dir.path(),
        "ok.jsonl",
        "{\"chosen\":\"good answer\",\"rejected\":\"bad\"}\n".repeat(4),
    );
    fails_with(
        &["train", "--data", &data, "--out", out, "--backbone", "bert"],
        &["--backbone `bert`: expected `hashed` or a model directory"],
    );
    fails_with(
        &[
            "train",
            "--data",
            &data,
            "--out",
            out,
            "--objective",
            "bt-margin",
        ],
        &["needs a margin on every pair", "line 1"],
    );
    fails_with(
        &["train", "--data", &data, "--out", out, "--val-last", "4"],
        &["--val-last 4 leaves no training data"],
    );
    fails_with(
        &["train", "--data", &data, "--out", out, "--lr=-1"],
        &["option `lr`"],
    );
    fails_with(
        &[
            "train",
            "--data",
            &data,
            "--out",
            out,
            "--objective",
            "regression",
        ],
        &["needs --attributes"],
    );
    // An unfinished run's checkpoint is not silently overwritten.
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(Path::new(out).join("checkpoint.safetensors"), b"x").unwrap();
    fails_with(
        &["train", "--data", &data, "--out", out],
        &["unfinished run", "--resume"],
    );
    fails_with(
        &["train", "--data", &data, "--out", out, "--resume"],
        &["checkpoint.safetensors", "not a checkpoint"],
    );
}

#[test]
fn killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo("examples/preferences.jsonl");
    let data = data.to_str().unwrap();
    let common = |out: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "train",
            "--data",
            data,
            "--val-last",
            "8",
            "--out",
            out,
            "--epochs",
            "60",
            "--batch-size",
            "4",
            "--eval-every",
            "16",
            "--checkpoint-every",
            "3",
            "--lr",
            "0.005",
            "--schedule",
            "cosine",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(SMALL.iter().map(|s| s.to_string()));
        args
    };
    let straight = dir.path().join("straight");
    let args = common(straight.to_str().unwrap());
    let status = Command::new(BIN).args(&args).output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Kill the second run with SIGKILL once it has written a checkpoint (and a little later, so
    // that it is somewhere between two checkpoints).
    let killed = dir.path().join("killed");
    let args = common(killed.to_str().unwrap());
    let mut child = Command::new(BIN).args(&args).spawn().unwrap();
    let checkpoint = killed.join("checkpoint.safetensors");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpoint.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL on Unix
    let finished_anyway = child.wait().unwrap().success();
    if finished_anyway {
        eprintln!(
            "note: the run finished before it could be killed; the resume path was not exercised"
        );
    } else {
        assert!(checkpoint.exists(), "the killed run left no checkpoint");
        let mut resume = args.clone();
        resume.push("--resume".into());
        let out = Command::new(BIN).args(&resume).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("resuming after step"), "{stderr}");
    }
    let a = std::fs::read(straight.join("model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's weights differ from the uninterrupted run's"
    );
    let history = |dir: &Path| {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("rewardkit.json")).unwrap()).unwrap();
        record["report"]["history"].clone()
    };
    assert_eq!(history(&straight), history(&killed));
}

#[test]
fn encoder_backbone_trains_the_head_and_scores_through_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let bert = dir.path().join("tiny-bert");
    std::fs::create_dir_all(&bert).unwrap();
    rewardkit_model::encoder::testing::write_tiny_bert(&bert);
    let pairs: String = (0..16)
        .map(|i| {
            let (chosen, rejected) = if i % 2 == 0 {
                ("sure here is the answer .", "go away .")
            } else {
                ("thanks , here is help .", "no , stupid question .")
            };
            format!("{{\"prompt\":\"human : help please ? assistant :\",\"chosen\":\"{chosen}\",\"rejected\":\"{rejected}\"}}\n")
        })
        .collect();
    let data = write(dir.path(), "pairs.jsonl", pairs);
    let out = dir.path().join("rm");
    let stdout = ok(&[
        "train",
        "--data",
        &data,
        "--val-last",
        "4",
        "--backbone",
        bert.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--lr",
        "0.05",
        "--max-length",
        "16",
        "--head",
        "linear",
        "--no-progress",
    ]);
    assert!(stdout.contains("validation: accuracy"), "{stdout}");
    assert!(out.join("tokenizer.json").exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["backbone"]["kind"], "encoder");
    assert_eq!(config["backbone"]["bert"]["hidden_size"], 8);
    let spec = write(
        dir.path(),
        "spec.toml",
        format!(
            "[[term]]\nname = \"rm\"\nkind = \"model\"\n[term.options]\npath = {:?}\n",
            out.to_str().unwrap()
        ),
    );
    let rollouts = write(dir.path(), "rollouts.jsonl", "{\"prompt\":\"help ?\",\"completion\":\"here is the answer .\"}\n{\"prompt\":\"help ?\",\"completion\":\"go away\"}\n");
    let scored = dir.path().join("scored.jsonl");
    ok(&[
        "score",
        "--spec",
        &spec,
        "--input",
        &rollouts,
        "--output",
        scored.to_str().unwrap(),
    ]);
    let rows = json_lines(&scored);
    assert!(rows.iter().all(|r| r["rm.outcome"] == "scored"), "{rows:?}");
    fails_with(
        &[
            "train",
            "--data",
            &data,
            "--backbone",
            bert.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-length",
            "64",
        ],
        &["max-length", "1..=32"],
    );
}

/// ChatML (Qwen2-Instruct's template, without its default system message).
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

#[test]
fn truncation_and_chat_template_are_saved_and_scored_with() {
    let dir = tempfile::tempdir().unwrap();
    let template = write(dir.path(), "chatml.jinja", CHATML);
    let rows: String = (0..12)
        .map(|i| {
            format!(
                "{{\"prompt\":[{{\"role\":\"user\",\"content\":\"question {i}\"}}],\"chosen\":[{{\"role\":\"assistant\",\"content\":\"a kind and helpful answer {i}\"}}],\"rejected\":[{{\"role\":\"assistant\",\"content\":\"go away {i}\"}}]}}\n"
            )
        })
        .collect();
    let data = write(dir.path(), "chat.jsonl", rows);
    let out = dir.path().join("rm");
    let stderr_line = {
        let output = common::run(&[
            "train",
            "--data",
            &data,
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "2",
            "--truncation",
            "right",
            "--chat-template",
            &template,
            "--max-length",
            "16",
            "--buckets",
            "4096",
            "--width",
            "8",
            "--head-hidden",
            "8",
            "--no-progress",
        ]);
        assert!(output.status.success(), "{}", common::stderr(&output));
        common::stderr(&output)
    };
    assert!(
        stderr_line.contains(&format!("chat template from {template}, truncation right")),
        "{stderr_line}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["truncation"], "right");
    assert_eq!(config["chat_template"]["kind"], "jinja");
    assert_eq!(config["chat_template"]["template"], CHATML);
    // Scoring renders chat samples with the saved template, even once the file is gone.
    std::fs::remove_file(&template).unwrap();
    let spec = write(
        dir.path(),
        "spec.toml",
        format!(
            "[[term]]\nname = \"rm\"\nkind = \"model\"\n[term.options]\npath = {:?}\n",
            out.to_str().unwrap()
        ),
    );
    let rollouts = write(
        dir.path(),
        "rollouts.jsonl",
        "{\"prompt\":[{\"role\":\"user\",\"content\":\"question 1\"}],\"completion\":{\"role\":\"assistant\",\"content\":\"a kind answer\"}}\n{\"prompt\":\"plain\",\"completion\":\"text\"}\n",
    );
    let scored = dir.path().join("scored.jsonl");
    ok(&[
        "score",
        "--spec",
        &spec,
        "--input",
        &rollouts,
        "--output",
        scored.to_str().unwrap(),
    ]);
    let rows = json_lines(&scored);
    assert!(rows.iter().all(|r| r["rm.outcome"] == "scored"), "{rows:?}");

    // Bad values name the flag and list what is accepted.
    let output = common::run(&[
        "train",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--truncation",
        "middle",
    ]);
    let err = common::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'middle' for '--truncation")
            && err.contains("[possible values: left, right]"),
        "{err}"
    );
    let fresh = dir.path().join("rm2");
    fails_with(
        &["train", "--data", &data, "--out", fresh.to_str().unwrap(), "--chat-template", "chatml"],
        &["option `--chat-template`: `chatml` is neither a known value nor an existing file; expected `builtin`, `none`, `tokenizer`"],
    );
    fails_with(
        &[
            "train",
            "--data",
            &data,
            "--out",
            fresh.to_str().unwrap(),
            "--chat-template",
            "tokenizer",
        ],
        &["option `--chat-template`", "this backbone has no directory"],
    );
    let broken = write(
        dir.path(),
        "broken.jinja",
        "{% for m in messages %}{{ m.content }\n",
    );
    fails_with(
        &[
            "train",
            "--data",
            &data,
            "--out",
            fresh.to_str().unwrap(),
            "--chat-template",
            &broken,
        ],
        &[
            "broken.jinja: compiling the chat template failed: syntax error",
            "template line 1",
        ],
    );
}
