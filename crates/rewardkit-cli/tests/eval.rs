//! End-to-end tests of `rewardkit eval`.

mod common;

use std::path::Path;

use common::*;

fn tiny() -> String {
    repo("examples/eval/tiny-pairs.jsonl").display().to_string()
}

fn gsm8k_spec() -> String {
    repo("examples/eval/gsm8k.toml").display().to_string()
}

/// Runs `eval` with a private cache directory and returns the parsed JSON report.
fn eval_json(cache: &Path, args: &[&str]) -> serde_json::Value {
    let cache = cache.to_str().unwrap();
    let mut all = vec!["eval", "--json", "--cache-dir", cache];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&all)).expect("--json prints one JSON object")
}

#[test]
fn a_spec_gives_table_json_html_and_a_warm_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let html = dir.path().join("report.html");
    let (tiny, spec) = (tiny(), gsm8k_spec());
    let html_arg = html.to_str().unwrap();
    let cache_arg = cache.to_str().unwrap();
    let text = ok(&[
        "eval",
        "--spec",
        &spec,
        "--bench",
        &tiny,
        "--html",
        html_arg,
        "--cache-dir",
        cache_arg,
    ]);
    for needle in [
        "alpacaeval-easy",
        "[Chat]",
        "[Safety]",
        "overall",
        "calibration",
        "length",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    assert!(text.contains("0 cached, 36 scored now"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<figure class=\"plot\"").count(), 4);
    assert!(page.contains("<svg") && !page.contains("<script src"));

    // Second run: everything from the cache, same numbers.
    let first = eval_json(&cache, &["--spec", &spec, "--bench", &tiny]);
    assert_eq!(first["reward"]["cached"], 36);
    assert_eq!(first["reward"]["scored"], 0);
    let overall = first["evaluation"]["overall"]["value"].as_f64().unwrap();
    // Chat: alpacaeval-easy and mt-bench-med; Safety: donotanswer; Reasoning: math-prm.
    let sections: Vec<&str> = first["evaluation"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sections, ["Chat", "Safety", "Reasoning"]);
    let mean: f64 = first["evaluation"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["score"]["value"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((overall - mean).abs() < 1e-12, "overall = mean of sections");

    // Saved scores evaluate to the same report numbers.
    let saved = dir.path().join("scores.jsonl");
    let saved_arg = saved.to_str().unwrap();
    ok(&[
        "eval",
        "--spec",
        &spec,
        "--bench",
        &tiny,
        "--cache-dir",
        cache_arg,
        "--save-scores",
        saved_arg,
    ]);
    let from_file = eval_json(&cache, &["--scores", saved_arg, "--bench", &tiny]);
    assert_eq!(
        from_file["evaluation"]["overall"],
        first["evaluation"]["overall"]
    );
    assert_eq!(from_file["reward"]["source"], "scores");
}

#[test]
fn comparing_two_rewards_reports_a_paired_test() {
    let dir = tempfile::tempdir().unwrap();
    let (tiny, spec) = (tiny(), gsm8k_spec());
    let other = repo("examples/eval/shorter.toml").display().to_string();
    let report = eval_json(
        dir.path(),
        &[
            "--spec",
            &spec,
            "--bench",
            &tiny,
            "--compare",
            &other,
            "--bootstrap",
            "300",
        ],
    );
    let cmp = &report["comparison"];
    assert_eq!(cmp["items"], 18);
    let first = cmp["first"].as_f64().unwrap();
    let second = cmp["second"].as_f64().unwrap();
    assert!((cmp["difference"]["value"].as_f64().unwrap() - (first - second)).abs() < 1e-12);
    assert!(cmp["mcnemar"]["p_exact"].as_f64().unwrap() <= 1.0);
    assert!(cmp["verdict"].as_str().unwrap().contains("McNemar"));
    assert_eq!(report["compared_with"]["source"], "spec");
    assert!(report["compared_evaluation"]["subsets"].is_array());
}

#[test]
fn bad_input_is_refused_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let (tiny, spec) = (tiny(), gsm8k_spec());
    let cache = dir.path().to_str().unwrap();
    fails_with(
        &["eval", "--bench", &tiny],
        &["one of --spec, --model or --scores"],
    );
    let short = write(dir.path(), "short.jsonl", "{\"scores\":[1,0]}\n");
    fails_with(
        &["eval", "--scores", &short, "--bench", &tiny],
        &["short.jsonl", "1 score rows for 18 benchmark items"],
    );
    let nan = write(
        dir.path(),
        "nan.jsonl",
        "{\"id\":\"t0\",\"scores\":[1,\"nan\"]}\n",
    );
    fails_with(
        &["eval", "--scores", &nan, "--bench", &tiny],
        &["nan.jsonl:1", "scores.1", "finite number"],
    );
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"q\",\"chosen\":\"a\"}\n",
    );
    fails_with(
        &[
            "eval",
            "--spec",
            &spec,
            "--bench",
            &bad,
            "--cache-dir",
            cache,
        ],
        &["bad.jsonl:2", "rejected"],
    );
    let empty = write(
        dir.path(),
        "empty.jsonl",
        "{\"prompt\":\"q\",\"chosen\":[],\"rejected\":[\"b\"]}\n",
    );
    fails_with(
        &[
            "eval",
            "--spec",
            &spec,
            "--bench",
            &empty,
            "--layout",
            "best-of-n",
            "--cache-dir",
            cache,
        ],
        &["empty.jsonl:1", "chosen", "empty list"],
    );
    // A model directory goes through the `model` reward kind, whose loader names what is
    // missing; a path that is not a directory is refused up front.
    let not_a_model = dir.path().join("not-a-model");
    std::fs::create_dir(&not_a_model).unwrap();
    let not_a_model = not_a_model.to_str().unwrap();
    fails_with(
        &[
            "eval",
            "--model",
            not_a_model,
            "--bench",
            &tiny,
            "--cache-dir",
            cache,
        ],
        &["not-a-model", "model"],
    );
    fails_with(
        &["eval", "--model", "no/such/dir", "--bench", &tiny],
        &["--model no/such/dir: not a directory"],
    );
    fails_with(
        &[
            "eval",
            "--spec",
            &spec,
            "--bench",
            &tiny,
            "--section",
            "oops",
        ],
        &["NAME=subset"],
    );
    fails_with(
        &[
            "eval",
            "--spec",
            &spec,
            "--bench",
            &tiny,
            "--confidence",
            "1.5",
            "--cache-dir",
            cache,
        ],
        &["confidence"],
    );
}

#[test]
fn labelled_data_gets_the_best_of_n_curve() {
    let dir = tempfile::tempdir().unwrap();
    let bench = write(
        dir.path(),
        "labelled.jsonl",
        concat!(
            r#####"{"prompt":"2+2?","reference":"4","samples":[{"completion":"#### 4","correct":true},{"completion":"#### 5","correct":false},{"completion":"#### 4","correct":true}]}"#####,
            "\n",
            r#####"{"prompt":"3+3?","reference":"6","samples":[{"completion":"#### 7","correct":false},{"completion":"#### 6","correct":true},{"completion":"#### 7","correct":false}]}"#####,
            "\n"
        ),
    );
    let html = dir.path().join("labelled.html");
    let report = eval_json(
        dir.path(),
        &[
            "--spec",
            &gsm8k_spec(),
            "--bench",
            &bench,
            "--layout",
            "labelled",
            "--html",
            html.to_str().unwrap(),
        ],
    );
    let curve = &report["evaluation"]["best_of_n"];
    assert_eq!(curve["n"], serde_json::json!([1, 2, 3]));
    // A perfect verifier: its pick is right whenever some sample is.
    assert_eq!(curve["reward"], curve["oracle"]);
    // Majority at N = 3: prompt 1 votes 4 (right), prompt 2 votes 7 (wrong).
    assert_eq!(curve["majority"][2], 0.5);
    assert!(report["evaluation"]["balance"]["best_score"].is_number());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"plot-best-of-n\"") && page.contains("id=\"plot-balance\""));
}

#[test]
fn a_model_directory_is_evaluated_like_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let prefs: String = (0..16)
        .map(|i| {
            format!(
                "{{\"prompt\":\"What is {i}+{i}?\",\"chosen\":\"{i}+{i} = {}\\n#### {}\",\"rejected\":\"not sure, maybe {}\"}}\n",
                2 * i,
                2 * i,
                2 * i + 1
            )
        })
        .collect();
    let prefs = write(dir.path(), "prefs.jsonl", prefs);
    let model = dir.path().join("rm");
    let model_arg = model.to_str().unwrap();
    ok(&[
        "train",
        "--data",
        &prefs,
        "--val-last",
        "4",
        "--backbone",
        "hashed",
        "--epochs",
        "1",
        "--out",
        model_arg,
    ]);
    let cache = dir.path().join("cache");
    let html = dir.path().join("model.html");
    let report = eval_json(
        &cache,
        &[
            "--model",
            model_arg,
            "--bench",
            &tiny(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(report["reward"]["source"], "model");
    assert_eq!(report["reward"]["scored"], 36);
    let overall = report["evaluation"]["overall"]["value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&overall));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<figure class=\"plot\"").count(), 4);
    // Cached on the second run...
    let again = eval_json(&cache, &["--model", model_arg, "--bench", &tiny()]);
    assert_eq!(again["reward"]["cached"], 36);
    assert_eq!(
        again["evaluation"]["overall"],
        report["evaluation"]["overall"]
    );
    // ...until the model's files change (retrained in place): another fingerprint.
    let weights = std::fs::read_dir(&model)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .expect("a safetensors file");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let changed = eval_json(&cache, &["--model", model_arg, "--bench", &tiny()]);
    assert_eq!(changed["reward"]["cached"], 0);
    assert_ne!(
        changed["reward"]["fingerprint"],
        report["reward"]["fingerprint"]
    );
}
