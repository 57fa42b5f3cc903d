//! End-to-end tests of shaping in a spec through `rewardkit score` and `rewardkit spec check`:
//! transforms, combinations and advantages, batch mode over whole groups, clear errors.

use std::path::Path;

use serde_json::Value;

mod common;
use common::{fails_with, ok, repo, write};

fn score(spec: impl AsRef<Path>, input: impl AsRef<Path>, output: &Path, extra: &[&str]) -> String {
    let (spec, input) = (spec.as_ref(), input.as_ref());
    let mut args = vec![
        "score",
        "--spec",
        spec.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

#[test]
fn worked_example_matches_its_expected_output() {
    // examples/shaping-gate-grpo.toml; its header says how to regenerate the expected output.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scored.jsonl");
    let text = score(
        repo("examples/shaping-gate-grpo.toml"),
        repo("examples/rollouts.jsonl"),
        &out,
        &[],
    );
    assert!(
        text.contains("advantages (column `advantage`): 20 samples in 7 groups; masked 1"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(repo("examples/shaping-gate-grpo.expected.jsonl")).unwrap()
    );
    // Spot checks by hand. q1 rewards [1, 1, 0, −1] (the 4th has no <think>: gate fails → −1):
    // mean 0.25, sample std √(2.75/3); q3's 4th answer is right but overlong: 1 + 0.5·max(−0.925,
    // −0.5) = 0.75.
    let rows = common::json_lines(&out);
    let std = (2.75f64 / 3.0).sqrt() + 1e-6;
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-12;
    assert!(close(&rows[0]["advantage"], 0.75 / std), "{}", rows[0]);
    assert!(close(&rows[3]["reward"], -1.0) && close(&rows[3]["advantage"], -1.25 / std));
    assert!(close(&rows[11]["reward"], 0.75) && close(&rows[11]["overlong.shaped"], -0.5));
    // The sample without a reference: reward and advantage null.
    assert_eq!(rows[19]["reward"], Value::Null);
    assert_eq!(rows[19]["advantage"], Value::Null);
}

/// A spec with a pooled transform (normalise per group) on think_format.
const POOLED: &str = r#"
[[term]]
name = "format"
kind = "think_format"
transform = [{ kind = "normalize", scope = "group", std = "population", epsilon = 0 }]
[[term]]
name = "correct"
kind = "string_match"
weight = 0.5
[advantages]
estimator = "rloo"
column = "adv"
"#;

#[test]
fn groups_split_across_chunks_and_rows_are_pooled_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "s.toml", POOLED);
    // string_match compares the whole completion with the reference.
    // Group g's rows are interleaved with h's and spread over chunks of one row.
    let rows = [
        r#"{"prompt": "p", "completion": "<think>a</think> x", "reference": "<think>a</think> x", "group": "g"}"#,
        r#"{"prompt": "p", "completion": "no tags", "reference": "x", "group": "h"}"#,
        r#"{"prompt": "p", "completion": "no tags x", "reference": "y", "group": "g"}"#,
        r#"{"prompt": "p", "completion": "<think>b</think> y", "reference": "<think>b</think> y", "group": "h"}"#,
        r#"{"prompt": "p", "completion": "<think>c</think> z", "reference": "<think>c</think> z", "group": "g"}"#,
    ];
    let input = write(dir.path(), "in.jsonl", &(rows.join("\n") + "\n"));
    let whole = dir.path().join("whole.jsonl");
    let split = dir.path().join("split.jsonl");
    score(&spec, &input, &whole, &["--no-progress"]);
    score(
        &spec,
        &input,
        &split,
        &["--chunk-rows", "1", "--threads", "1"],
    );
    assert_eq!(
        std::fs::read_to_string(&whole).unwrap(),
        std::fs::read_to_string(&split).unwrap()
    );
    let out = common::json_lines(&whole);
    // g: format [1, 0, 1] → population-normalised [1/√2, −√2, 1/√2]; correct [1, 0, 1].
    // h: format [0, 1] → [−1, 1]; correct [0, 1].
    let s = 2f64.sqrt();
    let expected_rewards = [1.0 / s + 0.5, -1.0, -s, 1.5, 1.0 / s + 0.5];
    for (row, want) in out.iter().zip(expected_rewards) {
        let got = row["reward"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{row}: expected {want}");
    }
    // RLOO per group: g rewards r = [a, b, a] with a = 1/√2 + 0.5, b = −√2:
    // A_0 = a − (a + b)/2 = (a − b)/2.
    let (a, b) = (1.0 / s + 0.5, -s);
    let adv = out[0]["adv"].as_f64().unwrap();
    assert!((adv - (a - b) / 2.0).abs() < 1e-12, "{adv}");
    let adv = out[1]["adv"].as_f64().unwrap();
    assert!((adv - (-1.0 - 1.5)).abs() < 1e-12, "{adv}");
    assert!((out[2]["format.shaped"].as_f64().unwrap() + s).abs() < 1e-12);
}

#[test]
fn spec_check_prints_the_resolved_shaping() {
    let text = ok(&[
        "spec",
        "check",
        repo("examples/shaping-gate-grpo.toml").to_str().unwrap(),
    ]);
    for needle in [
        "reward = if format ≥ 1: 1 × correct + 0.5 × overlong′ else -1",
        "transform 1: clip to [-0.5, 0]",
        "advantages → column `advantage`: Grpo",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "s.toml", POOLED);
    let text = ok(&["spec", "check", &spec]);
    assert!(text.contains("pooled stages"), "{text}");
    assert!(
        text.contains("transform 1: (x − mean)/(population std + 0) per group [pooled]"),
        "{text}"
    );
}

#[test]
fn constrained_multipliers_are_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec_text = r#"
[[term]]
name = "task"
kind = "string_match"
[[term]]
name = "format"
kind = "think_format"
[combine]
method = "constrained"
base = "task"
thresholds = { format = 0.9 }
"#;
    let spec = write(dir.path(), "s.toml", spec_text);
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"prompt\": \"p\", \"completion\": \"x\", \"reference\": \"x\"}\n{\"prompt\": \"p\", \"completion\": \"<think>t</think> y\", \"reference\": \"x\"}\n",
    );
    let out = dir.path().join("out.jsonl");
    let state = dir.path().join("state.json");
    let text = score(
        &spec,
        &input,
        &out,
        &["--multipliers-out", state.to_str().unwrap()],
    );
    // λ = σ(0) = 0.5: reward = 0.5·task + 0.5·format; format mean 0.5 < 0.9, so μ rises:
    // μ = 0.1·(0.9 − 0.5)·σ'(0) = 0.01.
    assert!(
        text.contains("format: λ 0.500000, batch mean 0.500000"),
        "{text}"
    );
    let rows = common::json_lines(&out);
    assert_eq!(rows[0]["reward"], 0.5);
    assert_eq!(rows[1]["reward"], 0.5);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(
        (saved["mu"][0].as_f64().unwrap() - 0.01).abs() < 1e-15,
        "{saved}"
    );
    // The next run starts from the saved state.
    let spec = write(
        dir.path(),
        "s2.toml",
        format!("{spec_text}state_file = \"state.json\"\n"),
    );
    let text = score(&spec, &input, &out, &[]);
    let lambda = 1.0 / (1.0 + (-0.01f64).exp());
    assert!(text.contains(&format!("format: λ {lambda:.6}")), "{text}");
}

#[test]
fn shaping_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"prompt\": \"p\", \"completion\": \"x\"}\n",
    );
    // A group-based stage with no group ids anywhere.
    let spec = write(dir.path(), "s.toml", POOLED);
    fails_with(
        &["score", "--spec", &spec, "--input", &input],
        &["s.toml", "no sample has a group id"],
    );
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[term]]\nname = \"a\"\nkind = \"think_format\"\ntransform = [{ kind = \"clip\", low = 1, high = 0 }]\n",
    );
    fails_with(
        &["spec", "check", &bad],
        &["bad.toml", "term[0].transform[0]"],
    );
    let ok_spec = repo("examples/math-rl.toml");
    fails_with(
        &[
            "score",
            "--spec",
            ok_spec.to_str().unwrap(),
            "--input",
            &input,
            "--multipliers-out",
            "/tmp/x.json",
        ],
        &["--multipliers-out needs", "constrained"],
    );
}

/// Scores `examples/<spec>` on `examples/<input>` and compares with `examples/<expected>`
/// byte for byte; returns the rows.
fn example(spec: &str, input: &str, expected: &str, extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scored.jsonl");
    score(repo(spec), repo(input), &out, extra);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(repo(expected)).unwrap(),
        "{spec} on {input} differs from {expected}"
    );
    common::json_lines(&out)
}

fn close(v: &Value, x: f64) -> bool {
    (v.as_f64().unwrap() - x).abs() <= 1e-12 * x.abs().max(1.0)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn reference_relative_examples_match_their_expected_output() {
    let rows = example(
        "examples/shaping-par-reference.toml",
        "examples/shaping-rm-rollouts.jsonl",
        "examples/shaping-par-reference.expected.jsonl",
        &[],
    );
    // Row 1: rm 1.8 against the egg references {0.8, 1.3, 0.4} (from the file), k = 1.
    let par = (sigmoid(1.0) + sigmoid(0.5) + sigmoid(1.4)) / 3.0;
    assert!(close(&rows[0]["rm.shaped"], par), "{}", rows[0]);
    // The haiku's references are one list line: {1.5, 1.7, 1.1}; alone in its group: RLOO 0.
    let par = (sigmoid(0.5) + sigmoid(0.3) + sigmoid(0.9)) / 3.0;
    assert!(close(&rows[7]["rm.shaped"], par) && close(&rows[7]["advantage"], 0.0));

    let rows = example(
        "examples/shaping-conjunction.toml",
        "examples/shaping-rm-rollouts.jsonl",
        "examples/shaping-conjunction.expected.jsonl",
        &[],
    );
    // France, row 5: helpful refs {1.5, 1.6} → 1.55 + 0.05·Φ⁻¹(0.85); harmless {1.6, 1.8} → 1.7 +
    // 0.1·Φ⁻¹(0.85).
    let z = 1.0364333894937894;
    let ls = |x: f64| -(1.0 + (-x).exp()).ln();
    let want = ls(1.6 - (1.55 + 0.05 * z)) + ls(1.7 - (1.7 + 0.1 * z));
    assert!(close(&rows[4]["reward"], want), "{}", rows[4]);
    // The off-topic answer (row 4) is the most helpful and ends last: harmlessness −2.
    let reward = |r: &Value| r["reward"].as_f64().unwrap();
    assert!(rows[..4].iter().all(|r| reward(r) >= reward(&rows[3])));
}

#[test]
fn constrained_example_matches_and_saves_its_multipliers() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("m.json");
    let rows = example(
        "examples/shaping-constrained.toml",
        "examples/shaping-rm-rollouts.jsonl",
        "examples/shaping-constrained.expected.jsonl",
        &["--multipliers-out", state.to_str().unwrap()],
    );
    // λ = sigmoid(0) = 0.5: reward = 0.5·rm + 0.5·harmless.
    assert!(
        close(&rows[0]["reward"], 0.5 * 1.8 + 0.5 * 1.5),
        "{}",
        rows[0]
    );
    // Mean harmlessness (1.5 + 1.4 + 0.2 − 2 + 1.7 + 1.7 + 1.6 + 1.9)/8 = 1.0 < 1.5: μ rises.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(saved["mu"][0].as_f64().unwrap() > 0.0, "{saved}");
}

#[test]
fn stateful_example_continues_from_its_saved_state() {
    // The example's state files are relative to the spec: run a copy in a scratch directory.
    let dir = tempfile::tempdir().unwrap();
    for name in ["shaping-stateful.toml", "shaping-rm-rollouts.jsonl"] {
        std::fs::copy(repo(&format!("examples/{name}")), dir.path().join(name)).unwrap();
    }
    let spec = dir.path().join("shaping-stateful.toml");
    let input = dir.path().join("shaping-rm-rollouts.jsonl");
    let (first, second) = (dir.path().join("1.jsonl"), dir.path().join("2.jsonl"));
    let check = ok(&["spec", "check", spec.to_str().unwrap()]);
    assert!(
        check.contains("not there yet, starts empty") && check.contains("[stateful]"),
        "{check}"
    );
    score(&spec, &input, &first, &["--save-state"]);
    assert_eq!(
        std::fs::read_to_string(&first).unwrap(),
        std::fs::read_to_string(repo("examples/shaping-stateful.expected.jsonl")).unwrap()
    );
    let counts: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("shaping-stateful-counts.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(counts["counts"]["boiled egg"], 2);
    // Run 2 sees the same file again: the running mean and population std do not change, every
    // caption's count doubles, so the novelty bonus is divided by 2³.
    score(&spec, &input, &second, &["--save-state"]);
    let (a, b) = (common::json_lines(&first), common::json_lines(&second));
    for (x, y) in a.iter().zip(&b) {
        assert!(
            close(&y["task.shaped"], x["task.shaped"].as_f64().unwrap()),
            "{x} {y}"
        );
        let novelty = x["novelty.shaped"].as_f64().unwrap() / 8.0;
        assert!(close(&y["novelty.shaped"], novelty), "{x} {y}");
    }
    // Row 1 of run 1: "boiled egg" seen twice → 0.4 × 1/2³.
    assert!(close(&a[0]["novelty.shaped"], 1.0 / 8.0) && close(&a[4]["novelty.shaped"], 1.0 / 8.0));
    // --save-state without a state file is refused.
    fails_with(
        &[
            "score",
            "--spec",
            repo("examples/shaping-par-reference.toml")
                .to_str()
                .unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--save-state",
        ],
        &["--save-state needs a spec with a stateful transform"],
    );
}

#[test]
fn a_bad_reference_file_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "refs.jsonl",
        "{\"group\": \"a\", \"reward\": 1}\n{\"group\": \"a\", \"reward\": [1, \"x\"]}\n",
    );
    let spec = write(
        dir.path(),
        "s.toml",
        "[[term]]\nname = \"rm\"\nkind = \"field\"\noptions = { field = \"rm\" }\ntransform = [{ kind = \"par\", reference_file = \"refs.jsonl\" }]\n",
    );
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"completion\": \"c\", \"group\": \"a\", \"rm\": 1}\n",
    );
    fails_with(
        &["score", "--spec", &spec, "--input", &input],
        &[
            "term[0].transform[0].reference_file",
            "refs.jsonl:2",
            "`reward`",
        ],
    );
}

#[test]
fn prefer_labels_pairs_lexicographically() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "rows.jsonl",
        concat!(
            "{\"prompt\": \"p\", \"completion\": \"long right\", \"group\": \"g\", \"correct\": 1, \"length\": 100}\n",
            "{\"prompt\": \"p\", \"completion\": \"short right\", \"group\": \"g\", \"correct\": 1, \"length\": 50}\n",
            "{\"prompt\": \"p\", \"completion\": \"wrong\", \"group\": \"g\", \"correct\": 0, \"length\": 10}\n",
            "{\"prompt\": \"p\", \"completion\": \"almost as short\", \"group\": \"g\", \"correct\": 1, \"length\": 55}\n",
            "{\"prompt\": \"q\", \"completion\": \"alone\", \"group\": \"h\", \"correct\": 1, \"length\": 5}\n",
            "{\"prompt\": \"q\", \"completion\": \"no group\", \"correct\": 1, \"length\": 5}\n",
        ),
    );
    let out = dir.path().join("pairs.jsonl");
    let text = ok(&[
        "prefer",
        "--input",
        &input,
        "--order",
        "correct,length",
        "--lower-is-better",
        "length",
        "--margins",
        "0,10",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_str(&text).unwrap();
    // Group g: 6 pairs; (2, 4) differ by 5 in length, within the margin: skipped.
    assert_eq!(report["pairs_compared"], 6);
    assert_eq!(report["pairs_decided"], 5);
    assert_eq!(report["rows_without_group"], 1);
    let pairs = common::json_lines(&out);
    let has = |chosen: &str, rejected: &str| {
        pairs
            .iter()
            .any(|p| p["chosen"] == chosen && p["rejected"] == rejected && p["prompt"] == "p")
    };
    assert!(has("short right", "long right") && has("long right", "wrong"));
    assert!(has("almost as short", "long right") && has("short right", "wrong"));
    assert!(!pairs.iter().any(|p| p["chosen"] == "wrong"));
    assert_eq!(pairs[0]["chosen_line"], 2);
    // Errors name the file, line and field.
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"group\": \"g\", \"correct\": 1}\n",
    );
    fails_with(
        &["prefer", "--input", &bad, "--order", "correct,length"],
        &["bad.jsonl:1: field `length`: missing"],
    );
    fails_with(
        &[
            "prefer",
            "--input",
            &input,
            "--order",
            "correct",
            "--lower-is-better",
            "length",
        ],
        &["--lower-is-better length: not a factor in --order"],
    );
    fails_with(
        &[
            "prefer",
            "--input",
            &input,
            "--order",
            "correct,length",
            "--margins",
            "1",
        ],
        &["--margins: 1 values for 2 factors"],
    );
}

#[test]
fn step_reward_examples_match_their_expected_output() {
    // examples/steps-episodes.jsonl: four episodes; e4 has a null turn score (masked).
    let dir = tempfile::tempdir().unwrap();
    let episodes = repo("examples/steps-episodes.jsonl");
    let episodes = episodes.to_str().unwrap();
    let run_to = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--output", out.to_str().unwrap()]);
        ok(&all);
        let expected = repo(&format!("examples/{name}"));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            std::fs::read_to_string(&expected).unwrap(),
            "{name}"
        );
        common::json_lines(&out)
    };
    let dense = run_to(
        "steps-dense.expected.jsonl",
        &[
            "steps",
            "--input",
            episodes,
            "--method",
            "dense_turn",
            "--max-total",
            "4",
        ],
    );
    // e1 won with increments 0, 1, 0, 1: over P = 2 they sum to 1; e2 lost at 3 of 4.
    assert_eq!(
        dense[0]["step_rewards"],
        serde_json::json!([0.0, 0.5, 0.0, 0.5])
    );
    assert_eq!(
        dense[1]["step_rewards"],
        serde_json::json!([0.25, 0.0, 0.25, 0.0, 0.25])
    );
    assert_eq!(
        dense[3]["step_rewards"],
        serde_json::json!([null, null, null])
    );
    let dense_path = dir.path().join("steps-dense.expected.jsonl");
    let gae = run_to(
        "steps-dense-gae.expected.jsonl",
        &[
            "advantages",
            "--input",
            dense_path.to_str().unwrap(),
            "--estimator",
            "gae",
            "--steps-field",
            "step_rewards",
            "--values-field",
            "values",
            "--gamma",
            "0.99",
            "--lambda",
            "0.95",
        ],
    );
    // e3: δ1 = 1 − 0.7 = 0.3; δ0 = 0.5 + 0.99·0.7 − 0.5 = 0.693; A0 = 0.693 + 0.99·0.95·0.3.
    let a: Vec<f64> = serde_json::from_value(gae[2]["advantage"].clone()).unwrap();
    assert!((a[0] - (0.693 + 0.99 * 0.95 * 0.3)).abs() < 1e-12 && (a[1] - 0.3).abs() < 1e-12);
    let mixed = run_to(
        "steps-mixed.expected.jsonl",
        &[
            "steps",
            "--input",
            episodes,
            "--method",
            "mixed_grained",
            "--w-item",
            "0.5",
        ],
    );
    // e1: 0.5 × items, + 1 × reward 1.0 on the last item.
    assert_eq!(
        mixed[0]["step_rewards"],
        serde_json::json!([0.25, 0.0, 0.5, 1.5])
    );
    run_to(
        "advantages-oprl.expected.jsonl",
        &[
            "advantages",
            "--input",
            episodes,
            "--estimator",
            "oprl",
            "--steps-field",
            "items",
        ],
    );
    // Potential shaping: r + γΦ(s') − Φ(s), Φ(terminal) = 0.
    let input = write(
        dir.path(),
        "p.jsonl",
        "{\"steps\": [1.0, 0.0], \"potentials\": [0.5, 2.0]}\n",
    );
    let out = dir.path().join("p.out.jsonl");
    ok(&[
        "steps",
        "--input",
        &input,
        "--method",
        "potential",
        "--gamma",
        "0.5",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        common::json_lines(&out)[0]["step_rewards"],
        serde_json::json!([1.5, -2.0])
    );
    // Errors name the flag, or the file, line and field.
    fails_with(
        &[
            "steps",
            "--input",
            episodes,
            "--method",
            "dense_turn",
            "--output",
            "-",
        ],
        &["--max-total"],
    );
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"turn_scores\": [1], \"won\": \"yes\"}\n",
    );
    fails_with(
        &[
            "steps",
            "--input",
            &bad,
            "--method",
            "dense_turn",
            "--max-total",
            "1",
            "--output",
            "-",
        ],
        &["bad.jsonl:1: field `won`: expected a boolean"],
    );
    fails_with(
        &[
            "steps",
            "--input",
            &input,
            "--method",
            "potential",
            "--potentials-field",
            "steps",
            "--steps-field",
            "nope",
            "--output",
            "-",
        ],
        &["p.jsonl:1: field `nope`: missing"],
    );
}

#[test]
fn prefer_example_matches_its_expected_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pairs.jsonl");
    let text = ok(&[
        "prefer",
        "--input",
        repo("examples/prefer-rows.jsonl").to_str().unwrap(),
        "--order",
        "correct,format,length",
        "--lower-is-better",
        "length",
        "--margins",
        "0,0,5",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        text.contains("12 pairs compared: 9 decided, 3 skipped"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(repo("examples/prefer-pairs.expected.jsonl")).unwrap()
    );
    // Correct beats incorrect whatever the format; among correct ones a valid format wins; then
    // the shorter answer, if shorter by more than 5 words (5 vs 21 yes, 3 vs 10 yes).
    let pairs = common::json_lines(&out);
    assert!(pairs
        .iter()
        .any(|p| p["chosen_line"] == 3 && p["rejected_line"] == 4));
    assert!(pairs
        .iter()
        .any(|p| p["chosen_line"] == 5 && p["rejected_line"] == 6));
    // Line 8 has a null factor: never in a pair.
    assert!(pairs
        .iter()
        .all(|p| p["chosen_line"] != 8 && p["rejected_line"] != 8));
}
