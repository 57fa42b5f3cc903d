//! End-to-end tests of the `rewardkit` binary: the quickstart, output files, exit codes, and every
//! kind of bad input (each gets a clear error or a typed outcome; nothing panics, no row is lost).

use std::io::Write as _;
use std::path::Path;

mod common;
use common::{fails_with, json_lines, repo, run, stderr, stdout, write};

const SPEC: &str = r#"
[[term]]
name = "correct"
kind = "gsm8k"
[[term]]
name = "format"
kind = "think_format"
weight = 0.5
"#;

fn spec(dir: &Path) -> String {
    write(dir, "spec.toml", SPEC.as_bytes())
}

#[test]
fn quickstart_prints_the_summary() {
    let spec = repo("examples/math-rl.toml");
    let input = repo("examples/rollouts.jsonl");
    let out = run(&[
        "score",
        "--spec",
        spec.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("scored 20 samples from 17 rows"), "{text}");
    for column in ["reward", "correct", "format", "overlong"] {
        assert!(
            text.lines().any(|l| l.starts_with(column)),
            "{column} missing: {text}"
        );
    }
    assert!(
        text.contains("1 × unscorable (missing reference)"),
        "{text}"
    );
}

#[test]
fn json_summary_and_output_rows_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path());
    let mut rows = String::new();
    for i in 0..300 {
        let answer = if i % 3 == 0 { i + 1 } else { i };
        rows.push_str(&format!(
            "{{\"prompt\":\"q{i}\",\"completion\":\"<think>t</think> #### {answer}\",\"reference\":\"{i}\"}}\n"
        ));
    }
    // A row with a list of completions becomes a group of three samples.
    rows.push_str(r#####"{"prompt":"g","completion":["#### 1","#### 2","x"],"reference":"2"}"#####);
    rows.push('\n');
    let input = write(dir.path(), "in.jsonl", rows.as_bytes());
    let output = dir.path().join("out.jsonl");
    let out = run(&[
        "score",
        "--spec",
        &spec,
        "--input",
        &input,
        "--output",
        output.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["rows"], 301);
    assert_eq!(report["samples"], 303);
    assert_eq!(report["skipped_rows"], 0);
    let correct = &report["columns"][1];
    assert_eq!(correct["name"], "correct");
    assert_eq!(correct["scored"], 303);
    // 200 of the 300 plain rows are right, and one of the group.
    let mean = correct["mean"].as_f64().unwrap();
    assert!((mean - 201.0 / 303.0).abs() < 1e-12, "{mean}");

    let lines = json_lines(output.to_str().unwrap());
    assert_eq!(lines.len(), 303);
    for (i, row) in lines.iter().take(300).enumerate() {
        assert_eq!(row["line"], i as u64 + 1);
        let expected = if i % 3 == 0 { 0.0 } else { 1.0 };
        assert_eq!(row["correct"], expected, "row {i}");
        assert_eq!(row["format"], 1.0);
        assert_eq!(row["reward"], expected + 0.5);
        assert_eq!(row["outcome"], "scored");
    }
    let group: Vec<_> = lines[300..]
        .iter()
        .map(|r| (r["index"].clone(), r["correct"].clone()))
        .collect();
    assert_eq!(
        group,
        vec![
            (0.into(), 0.0.into()),
            (1.into(), 1.0.into()),
            (2.into(), 0.0.into())
        ]
    );
    assert_eq!(lines[300]["group"], "301");
}

#[test]
fn batched_equals_single_across_chunking_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "spec.toml",
        std::fs::read(repo("examples/math-rl.toml"))
            .unwrap()
            .as_slice(),
    );
    let input = repo("examples/rollouts.jsonl");
    let mut outputs = Vec::new();
    for (chunk, threads, name) in [
        ("1", "1", "a.jsonl"),
        ("4096", "2", "b.jsonl"),
        ("3", "2", "c.jsonl"),
    ] {
        let path = dir.path().join(name);
        let out = run(&[
            "score",
            "--spec",
            &spec,
            "--input",
            input.to_str().unwrap(),
            "--output",
            path.to_str().unwrap(),
            "--chunk-rows",
            chunk,
            "--threads",
            threads,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        outputs.push(std::fs::read(path).unwrap());
    }
    assert!(!outputs[0].is_empty());
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn parquet_and_gzip_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path());
    let input = repo("examples/rollouts.jsonl");
    for name in ["out.parquet", "out.jsonl.gz"] {
        let path = dir.path().join(name);
        let out = run(&[
            "score",
            "--spec",
            &spec,
            "--input",
            input.to_str().unwrap(),
            "--output",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        // Read the output back as input: every row is there.
        let back = run(&[
            "score",
            "--spec",
            &spec,
            "--input",
            path.to_str().unwrap(),
            "--completion-field",
            "outcome",
            "--prompt-field",
            "none",
            "--reference-field",
            "reason",
            "--json",
        ]);
        assert!(back.status.success(), "{}", stderr(&back));
        let report: serde_json::Value = serde_json::from_str(&stdout(&back)).unwrap();
        assert_eq!(report["rows"], 20, "{name}");
    }
}

#[test]
fn spec_check_and_kinds() {
    let out = run(&[
        "spec",
        "check",
        repo("examples/math-rl.toml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("reward = 1 × correct + 0.2 × format + 0.5 × overlong"),
        "{text}"
    );
    assert!(text.contains("ok: the spec is valid"));

    let out = run(&["spec", "kinds"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for kind in [
        "gsm8k",
        "multiple_choice",
        "string_match",
        "regex_match",
        "think_format",
        "tool_call",
        "soft_overlong",
        "length_cap",
        "repetition",
    ] {
        assert!(text.contains(kind), "{kind} missing from {text}");
    }
}

#[test]
fn bad_specs_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = write(d, "in.jsonl", b"{\"prompt\":\"p\",\"completion\":\"c\"}\n");
    let cases: &[(&str, &[&str])] = &[
        (
            "[[term]]\nname = \"a\"\nkind = \"gsm8k\"\nweight = nan\n",
            &["term[0].weight", "finite"],
        ),
        (
            "[[term]]\nname = \"a\"\nkind = \"gsm8k\"\nweight = -inf\n",
            &["term[0].weight"],
        ),
        (
            "[[term]]\nname = \"a\"\nkind = \"gsm8k\"\ncolour = 1\n",
            &["colour"],
        ),
        (
            "[[term]]\nname = \"a\"\nkind = \"gsm9k\"\n",
            &["term[0].kind", "gsm9k", "gsm8k"],
        ),
        (
            "[[term]]\nname = \"a\"\nkind = \"gsm8k\"\n[term.options]\ncorrectt = 1.0\n",
            &["term[0].options", "correctt"],
        ),
        (
            "[[term]]\nname = \"a\"\nkind = \"gsm8k\"\n[term.options]\ncorrect = nan\n",
            &["term[0].options", "correct"],
        ),
        (
            "[[term]]\nname = \"a\"\nkind = \"soft_overlong\"\n[term.options]\nunit = \"words\"\n",
            &["term[0].options", "max_length"],
        ),
        (
            "[budget]\ntimeout = 3\n[[term]]\nname = \"a\"\nkind = \"gsm8k\"\n",
            &["timeout"],
        ),
        ("", &["at least one [[term]]"]),
        ("[[term]\n", &["spec.toml"]),
    ];
    for (text, needles) in cases {
        let spec = write(d, "spec.toml", text.as_bytes());
        let mut all = needles.to_vec();
        all.push("spec.toml");
        fails_with(&["score", "--spec", &spec, "--input", &input], &all);
        fails_with(&["spec", "check", &spec], &all);
    }
    fails_with(
        &["spec", "check", d.join("absent.toml").to_str().unwrap()],
        &["absent.toml"],
    );
    let spec = write(d, "spec.toml", [0xff, 0xfe, 0x00]);
    fails_with(&["spec", "check", &spec], &["UTF-8"]);
}

#[test]
fn bad_input_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = spec(d);
    let good = "{\"prompt\":\"p\",\"completion\":\"#### 1\",\"reference\":\"1\"}\n";
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "malformed.jsonl",
            format!("{good}{{\"prompt\": \"p\", \"completion\": \n{good}").into_bytes(),
            vec!["malformed.jsonl:2"],
        ),
        (
            "missing.jsonl",
            format!("{good}{{\"prompt\":\"p\"}}\n").into_bytes(),
            vec!["missing.jsonl:2", "completion"],
        ),
        (
            "wrongtype.jsonl",
            format!("{good}{good}{{\"prompt\":\"p\",\"completion\":42}}\n").into_bytes(),
            vec!["wrongtype.jsonl:3", "completion"],
        ),
        ("empty.jsonl", Vec::new(), vec!["empty.jsonl", "no rows"]),
        ("array.jsonl", b"[1,2,3]\n".to_vec(), vec!["array.jsonl:1"]),
        (
            "utf8.jsonl",
            [
                good.as_bytes(),
                b"{\"prompt\":\"p\",\"completion\":\"\xff\xfe\"}\n",
            ]
            .concat(),
            vec!["utf8.jsonl:2", "UTF-8"],
        ),
        (
            "garbage.jsonl",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            vec!["garbage.jsonl"],
        ),
    ];
    for (name, bytes, needles) in &cases {
        let input = write(d, name, bytes);
        let output = d.join(format!("{name}.out.jsonl"));
        fails_with(
            &[
                "score",
                "--spec",
                &spec,
                "--input",
                &input,
                "--output",
                output.to_str().unwrap(),
            ],
            needles,
        );
        // A failed run leaves no partial output behind.
        assert!(!output.exists(), "{name}: partial output left behind");
    }
    fails_with(
        &[
            "score",
            "--spec",
            &spec,
            "--input",
            d.join("nope.jsonl").to_str().unwrap(),
        ],
        &["nope.jsonl"],
    );
}

#[test]
fn skip_bad_rows_counts_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = spec(d);
    let good = "{\"prompt\":\"p\",\"completion\":\"#### 1\",\"reference\":\"1\"}";
    let input = write(
        d,
        "mixed.jsonl",
        format!("{good}\nnot json\n{good}\n{{\"prompt\":\"p\"}}\n{good}\n").as_bytes(),
    );
    let output = d.join("out.jsonl");
    let out = run(&[
        "score",
        "--spec",
        &spec,
        "--input",
        &input,
        "--skip-bad-rows",
        "--json",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["rows"], 3);
    assert_eq!(report["skipped_rows"], 2);
    assert_eq!(report["skipped"][0]["line"], 2);
    assert_eq!(report["skipped"][1]["line"], 4);
    let lines: Vec<u64> = json_lines(output.to_str().unwrap())
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![1, 3, 5]);

    let out = run(&[
        "score",
        "--spec",
        &spec,
        "--input",
        &input,
        "--skip-bad-rows",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("skipped 2 bad rows") && text.contains("line 2:"),
        "{text}"
    );
}

#[test]
fn a_gigantic_completion_is_unscorable_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = spec(d);
    let path = d.join("huge.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(
        file,
        "{{\"prompt\":\"p\",\"completion\":\"#### 7\",\"reference\":\"7\"}}"
    )
    .unwrap();
    write!(
        file,
        "{{\"prompt\":\"p\",\"reference\":\"7\",\"completion\":\""
    )
    .unwrap();
    let block = "12345 6789 ".repeat(1000);
    for _ in 0..(100 * 1024 * 1024 / block.len()) {
        file.write_all(block.as_bytes()).unwrap();
    }
    writeln!(file, "#### 7\"}}").unwrap();
    drop(file);
    let output = d.join("out.jsonl");
    let out = run(&[
        "score",
        "--spec",
        &spec,
        "--input",
        path.to_str().unwrap(),
        "--json",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(output.to_str().unwrap());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["reward"], 1.0);
    assert_eq!(rows[1]["outcome"], "unscorable");
    assert_eq!(rows[1]["correct.reason"], "input too large");
    assert_eq!(rows[1]["reward"], serde_json::Value::Null);
}

#[test]
fn usage_errors_exit_with_2() {
    let out = run(&["score", "--input", "x.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--spec"));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
