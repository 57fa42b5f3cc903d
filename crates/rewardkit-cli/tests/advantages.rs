//! End-to-end tests of `rewardkit advantages`: scored file in, one row out per row in, in order,
//! with an `advantage` column; counts in the summary; clear errors for bad input.

use std::path::Path;

use serde_json::{json, Value};

mod common;
use common::{fails_with, ok, repo, write};

fn rows(path: &Path) -> Vec<Value> {
    common::json_lines(path)
}

#[test]
fn scored_quickstart_gets_grpo_advantages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let scored = dir.path().join("scored.jsonl");
    let spec = repo("examples/math-rl.toml");
    let input = repo("examples/rollouts.jsonl");
    ok(&[
        "score",
        "--spec",
        spec.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        scored.to_str().unwrap(),
    ]);
    let out = dir.path().join("advantages.jsonl");
    let summary = ok(&[
        "advantages",
        "--input",
        scored.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let scored = rows(&scored);
    let written = rows(&out);
    assert_eq!(written.len(), scored.len());
    assert_eq!(summary["rows"], scored.len());
    // Same rows, same order, every input column kept, one column added.
    for (a, b) in scored.iter().zip(&written) {
        for (key, value) in a.as_object().unwrap() {
            assert_eq!(&b[key], value, "column {key}");
        }
        assert_eq!(
            b.as_object().unwrap().len(),
            a.as_object().unwrap().len() + 1
        );
    }
    // Per group, finite GRPO advantages sum to 0; a null reward has a null advantage.
    let mut sums: std::collections::HashMap<String, f64> = Default::default();
    for row in &written {
        match (row["reward"].as_f64(), row["advantage"].as_f64()) {
            (Some(_), Some(a)) => *sums.entry(row["group"].to_string()).or_default() += a,
            (None, a) => assert_eq!(a, None, "{row}"),
            (Some(_), None) => panic!("finite reward, null advantage: {row}"),
        }
    }
    assert!(sums.values().all(|s| s.abs() < 1e-12), "{sums:?}");
    assert_eq!(summary["masked"], 1);
    assert_eq!(summary["estimator"], "grpo");
}

#[test]
fn rloo_on_interleaved_groups_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // Group 7 (a number) is interleaved with group "b"; one null reward; one row without group.
    let input = write(
        dir.path(),
        "scored.jsonl",
        r#"{"group": 7, "reward": 1.0, "id": "x"}
{"group": "b", "reward": 5.0}
{"group": 7, "reward": 0.0}
{"group": "b", "reward": null}
{"group": 7, "reward": 0.0}
{"reward": 3.0, "extra": [1, 2]}
{"group": "b", "reward": 1.0}
"#,
    );
    let out = dir.path().join("out.jsonl");
    let summary = ok(&[
        "advantages",
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--estimator",
        "rloo",
        "--json",
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let advantages: Vec<Option<f64>> = rows(&out).iter().map(|r| r["advantage"].as_f64()).collect();
    // Group 7: [1, 0, 0] → 1 − 0, 0 − 0.5, 0 − 0.5. Group b: [5, masked, 1] → ±4. Alone: 0.
    assert_eq!(
        advantages,
        [
            Some(1.0),
            Some(4.0),
            Some(-0.5),
            None,
            Some(-0.5),
            Some(0.0),
            Some(-4.0)
        ]
    );
    assert_eq!(summary["singleton_groups"], 1);
    assert_eq!(summary["rows_without_group"], 1);
    assert_eq!(summary["masked"], 1);
    assert_eq!(summary["groups"], 3);
    let written = rows(&out);
    // A column of number lists stays a list column (it could feed `--steps-field` again), of
    // integers while it holds only unsigned integers; rows without it are null there.
    assert_eq!(written[5]["extra"], serde_json::json!([1, 2]));
    assert_eq!(written[0]["extra"], Value::Null);
    assert_eq!(written[0]["id"], "x");
    assert_eq!(written[1]["id"], Value::Null);
    assert_eq!(written[0]["group"], "7"); // a column of strings and numbers is written as strings
}

#[test]
fn boolean_fields_stay_booleans_in_every_format() {
    // A pass-through `"correct": true` used to come out as the string "true". A column of
    // booleans (and nulls, or rows without it) is a boolean column; a column that mixes booleans
    // with another type keeps the mixed-type rule: it is written as text, no row lost.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "scored.jsonl",
        r#"{"group": "a", "reward": 1.0, "correct": true, "mixed": true}
{"group": "a", "reward": 0.0, "correct": false, "mixed": "no"}
{"group": "b", "reward": 1.0, "correct": null, "mixed": 1}
{"group": "b", "reward": 0.5}
"#,
    );
    let expected_correct = [json!(true), json!(false), Value::Null, Value::Null];
    let expected_mixed = [json!("true"), json!("no"), json!("1"), Value::Null];
    for extension in ["jsonl", "parquet"] {
        let out = dir.path().join(format!("out.{extension}"));
        ok(&[
            "advantages",
            "--input",
            &input,
            "--output",
            out.to_str().unwrap(),
        ]);
        let written: Vec<Value> = rewardkit_data::RecordReader::open(&out, None)
            .unwrap()
            .map(|record| Value::Object(record.unwrap().fields))
            .collect();
        assert_eq!(written.len(), 4, "{extension}");
        for (k, row) in written.iter().enumerate() {
            assert_eq!(row["correct"], expected_correct[k], "{extension} row {k}");
            assert_eq!(row["mixed"], expected_mixed[k], "{extension} row {k}");
        }
        // Booleans go through a second run unchanged (Parquet BOOLEAN in, boolean out).
        let again = dir.path().join(format!("again-from-{extension}.jsonl"));
        ok(&[
            "advantages",
            "--input",
            out.to_str().unwrap(),
            "--output",
            again.to_str().unwrap(),
            "--advantage-column",
            "again",
        ]);
        let again: Vec<Value> = rows(&again).iter().map(|r| r["correct"].clone()).collect();
        assert_eq!(again, expected_correct, "{extension}");
    }
}

#[test]
fn integer_list_fields_stay_integers_in_every_format() {
    // A pass-through `"ids": [1, 2]` used to come out as `[1.0, 2.0]` (a Parquet list of
    // doubles). A column whose lists hold only integers (null elements, null or missing rows
    // allowed) is a list of integers, signed once one is negative; a list with a float makes the
    // column a float list, as before; a column with only empty lists stays a float list.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "scored.jsonl",
        r#"{"group": "a", "reward": 1.0, "ids": [1, 2], "mixed": [1, 2.5], "neg": [3], "none": []}
{"group": "a", "reward": 0.0, "ids": [18446744073709551615, null], "mixed": [3], "neg": [-1], "none": null}
{"group": "b", "reward": 1.0, "ids": null, "mixed": null, "neg": [], "none": []}
{"group": "b", "reward": 0.5, "ids": []}
"#,
    );
    let expected = [
        r#"{"group":"a","ids":[1,2],"mixed":[1.0,2.5],"neg":[3],"none":[],"reward":1.0,"#,
        r#"{"group":"a","ids":[18446744073709551615,null],"mixed":[3.0],"neg":[-1],"none":null,"reward":0.0,"#,
        r#"{"group":"b","ids":null,"mixed":null,"neg":[],"none":[],"reward":1.0,"#,
        r#"{"group":"b","ids":[],"mixed":null,"neg":null,"none":null,"reward":0.5,"#,
    ];
    let integers = |row: &Value| {
        row["ids"]
            .as_array()
            .is_none_or(|ids| ids.iter().all(|x| x.is_null() || x.is_u64()))
    };
    for extension in ["jsonl", "parquet"] {
        let out = dir.path().join(format!("out.{extension}"));
        ok(&[
            "advantages",
            "--input",
            &input,
            "--output",
            out.to_str().unwrap(),
        ]);
        // A second run reads this output back (JSONL integers, or Parquet UINT64 lists) and
        // writes JSONL text: the same values, still integers.
        let again = dir.path().join(format!("again-from-{extension}.jsonl"));
        ok(&[
            "advantages",
            "--input",
            out.to_str().unwrap(),
            "--output",
            again.to_str().unwrap(),
            "--advantage-column",
            "again",
        ]);
        let text = std::fs::read_to_string(&again).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{extension}");
        for (line, expected) in lines.iter().zip(expected) {
            // Compare sorted keys, whatever the order of the columns.
            let line: Value = serde_json::from_str(line).unwrap();
            let mut fields: Vec<(String, String)> = line
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| !["advantage", "again"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            fields.sort();
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            assert_eq!(format!("{{{},", fields.join(",")), expected, "{extension}");
            assert!(integers(&line), "{extension}: {line}");
        }
        let written: Vec<Value> = rewardkit_data::RecordReader::open(&out, None)
            .unwrap()
            .map(|record| Value::Object(record.unwrap().fields))
            .collect();
        assert_eq!(written.len(), 4, "{extension}");
        assert_eq!(written[0]["ids"], json!([1, 2]), "{extension}");
        assert!(written.iter().all(integers), "{extension}");
        assert_eq!(written[0]["mixed"], json!([1.0, 2.5]), "{extension}");
        assert!(written[0]["mixed"][0].is_f64(), "{extension}");
    }
    // The JSONL output itself, as text.
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(
        text.starts_with(
            r#"{"group":"a","reward":1.0,"ids":[1,2],"mixed":[1.0,2.5],"neg":[3],"none":[],"#
        ),
        "{text}"
    );
}

/// The rows `rewardkit advantages` wrote to `path` (any format), read back.
fn read_back(path: &Path) -> Vec<Value> {
    rewardkit_data::RecordReader::open(path, None)
        .unwrap()
        .map(|record| Value::Object(record.unwrap().fields))
        .collect()
}

/// Runs `rewardkit advantages` from `input` to `out.<extension>`, then from that output to JSONL
/// (a second reading of what was written); returns both outputs read back.
fn advantages_twice(dir: &Path, input: &str, extension: &str) -> [Vec<Value>; 2] {
    let out = dir.join(format!("out.{extension}"));
    ok(&[
        "advantages",
        "--input",
        input,
        "--output",
        out.to_str().unwrap(),
    ]);
    let again = dir.join(format!("again-from-{extension}.jsonl"));
    ok(&[
        "advantages",
        "--input",
        out.to_str().unwrap(),
        "--output",
        again.to_str().unwrap(),
        "--advantage-column",
        "again",
    ]);
    [read_back(&out), read_back(&again)]
}

#[test]
fn negative_integers_stay_integers_in_every_format() {
    // `"offset": -3` and `"step": [-1, 2]` used to come out as -3.0 and [-1.0, 2.0] (only unsigned
    // integer columns existed). A column of integers with a negative one is a signed integer
    // column (a list of them likewise); without a negative one it stays unsigned, up to u64::MAX;
    // a column with both a negative integer and one above i64::MAX fits neither and is text.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "scored.jsonl",
        r#"{"group": "a", "reward": 1.0, "offset": -3, "step": [-1, 2], "big": 18446744073709551615, "both": -1, "edge": -9223372036854775808}
{"group": "a", "reward": 0.0, "offset": 4, "step": [3, null], "big": 0, "both": 18446744073709551615, "edge": 9223372036854775807}
{"group": "b", "reward": 1.0, "offset": 0, "step": null, "big": 9007199254740993, "both": 2, "edge": -1}
{"group": "b", "reward": 0.5, "offset": -1, "step": [], "big": 7, "both": 3, "edge": 0}
"#,
    );
    let offset = [json!(-3), json!(4), json!(0), json!(-1)];
    let step = [json!([-1, 2]), json!([3, null]), Value::Null, json!([])];
    let big = [
        json!(u64::MAX),
        json!(0),
        json!(9_007_199_254_740_993u64),
        json!(7),
    ];
    let both = [
        json!("-1"),
        json!("18446744073709551615"),
        json!("2"),
        json!("3"),
    ];
    let edge = [json!(i64::MIN), json!(i64::MAX), json!(-1), json!(0)];
    for extension in ["jsonl", "jsonl.gz", "parquet"] {
        for (run, written) in advantages_twice(dir.path(), &input, extension)
            .iter()
            .enumerate()
        {
            assert_eq!(written.len(), 4, "{extension} run {run}");
            for (k, row) in written.iter().enumerate() {
                let at = format!("{extension} run {run} row {k}: {row}");
                assert_eq!(row["offset"], offset[k], "{at}");
                assert!(row["offset"].is_i64(), "{at}");
                assert_eq!(row["step"], step[k], "{at}");
                assert!(row["step"]
                    .as_array()
                    .is_none_or(|items| items.iter().all(|x| x.is_null() || x.is_i64())));
                assert_eq!(row["big"], big[k], "{at}");
                assert!(row["big"].is_u64(), "{at}");
                assert_eq!(row["both"], both[k], "{at}");
                assert_eq!(row["edge"], edge[k], "{at}");
                assert!(row["edge"].is_i64(), "{at}");
            }
        }
    }
    // The JSONL output itself, as text.
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(
        text.starts_with(
            r#"{"group":"a","reward":1.0,"offset":-3,"step":[-1,2],"big":18446744073709551615,"both":"-1","edge":-9223372036854775808,"#
        ),
        "{text}"
    );
}

#[test]
fn integer_columns_with_null_or_missing_rows_stay_integers_in_every_format() {
    // `{"id": 1}`, `{}`, `{"id": 3}` used to come out as 1.0, null, 3.0: integer columns could
    // not hold a null. Now every integer column is nullable (JSON null, Parquet OPTIONAL INT64),
    // whether the row has a null or lacks the field, signed or not, in any position.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "scored.jsonl",
        r#"{"group": "a", "reward": 1.0, "id": 1, "offset": null, "last": 5}
{"group": "a", "reward": 0.0, "offset": -2, "last": 6}
{"group": "b", "reward": 1.0, "id": 3, "offset": 5, "last": 18446744073709551615}
{"group": "b", "reward": 0.5, "id": null}
"#,
    );
    let id = [json!(1), Value::Null, json!(3), Value::Null];
    let offset = [Value::Null, json!(-2), json!(5), Value::Null];
    let last = [json!(5), json!(6), json!(u64::MAX), Value::Null];
    for extension in ["jsonl", "jsonl.gz", "parquet"] {
        for (run, written) in advantages_twice(dir.path(), &input, extension)
            .iter()
            .enumerate()
        {
            assert_eq!(written.len(), 4, "{extension} run {run}");
            for (k, row) in written.iter().enumerate() {
                let at = format!("{extension} run {run} row {k}: {row}");
                assert_eq!(row["id"], id[k], "{at}");
                assert!(row["id"].is_null() || row["id"].is_u64(), "{at}");
                assert_eq!(row["offset"], offset[k], "{at}");
                assert!(row["offset"].is_null() || row["offset"].is_i64(), "{at}");
                assert_eq!(row["last"], last[k], "{at}");
                assert!(row["last"].is_null() || row["last"].is_u64(), "{at}");
            }
        }
    }
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(r#"{"group":"a","reward":1.0,"id":1,"offset":null,"last":5,"#),
        "{text}"
    );
    assert!(
        lines[1].starts_with(r#"{"group":"a","reward":0.0,"id":null,"offset":-2,"last":6,"#),
        "{text}"
    );
}

#[test]
fn parquet_round_trip_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "scored.jsonl",
        "{\"line\": 1, \"group\": \"a\", \"reward\": 1.0}\n{\"line\": 2, \"group\": \"a\", \"reward\": 3.0}\n\
         {\"line\": 3, \"group\": \"c\", \"reward\": 2.0}\n{\"line\": 4, \"group\": \"c\", \"reward\": 2.0}\n",
    );
    let parquet = dir.path().join("out.parquet");
    let args = [
        "advantages",
        "--input",
        &input,
        "--output",
        parquet.to_str().unwrap(),
        "--scale",
        "none",
        "--filter-zero-variance",
        "--json",
    ];
    let summary: Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(summary["zero_variance_groups"], 1);
    assert_eq!(summary["filtered"], 2);
    // Read the Parquet back through the command itself (a second advantage column name).
    let back = dir.path().join("back.jsonl");
    ok(&[
        "advantages",
        "--input",
        parquet.to_str().unwrap(),
        "--output",
        back.to_str().unwrap(),
        "--advantage-column",
        "again",
    ]);
    let back = rows(&back);
    let first: Vec<Option<f64>> = back.iter().map(|r| r["advantage"].as_f64()).collect();
    assert_eq!(first, [Some(-1.0), Some(1.0), None, None]);
    assert_eq!(back[3]["line"], 4);
}

#[test]
fn bad_input_and_options_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.jsonl",
        "{\"group\": \"a\", \"reward\": 1.0}\n",
    );
    let missing = write(
        dir.path(),
        "missing.jsonl",
        "{\"group\": \"a\", \"reward\": 1.0}\n{\"group\": \"a\"}\n",
    );
    fails_with(
        &["advantages", "--input", &missing],
        &["missing.jsonl:2", "`reward`", "missing"],
    );
    let text = write(
        dir.path(),
        "text.jsonl",
        "{\"group\": \"a\", \"reward\": \"high\"}\n",
    );
    fails_with(
        &["advantages", "--input", &text],
        &["text.jsonl:1", "`reward`", "expected a number"],
    );
    let list = write(
        dir.path(),
        "list.jsonl",
        "{\"group\": [1], \"reward\": 1}\n",
    );
    fails_with(
        &["advantages", "--input", &list],
        &["list.jsonl:1", "`group`", "group id"],
    );
    let ungrouped = write(
        dir.path(),
        "ungrouped.jsonl",
        "{\"reward\": 1.0}\n{\"reward\": 2.0}\n",
    );
    fails_with(
        &["advantages", "--input", &ungrouped],
        &["no row has a `group` field", "--group-field"],
    );
    ok(&[
        "advantages",
        "--input",
        &ungrouped,
        "--estimator",
        "reinforce_pp",
    ]);
    let taken = write(
        dir.path(),
        "taken.jsonl",
        "{\"group\": \"a\", \"reward\": 1.0, \"advantage\": 0}\n",
    );
    fails_with(
        &["advantages", "--input", &taken],
        &["already has a column `advantage`"],
    );
    let empty = write(dir.path(), "empty.jsonl", "\n");
    fails_with(&["advantages", "--input", &empty], &["no rows"]);
    fails_with(
        &["advantages", "--input", "-"],
        &["--input", "give a file name"],
    );
    fails_with(
        &[
            "advantages",
            "--input",
            &good,
            "--estimator",
            "rloo",
            "--scale",
            "batch",
        ],
        &["--scale applies to --estimator grpo only"],
    );
    fails_with(
        &[
            "advantages",
            "--input",
            &good,
            "--estimator",
            "dr_grpo",
            "--epsilon",
            "1e-4",
        ],
        &["dr_grpo does not divide by a std"],
    );
    fails_with(
        &["advantages", "--input", &good, "--epsilon=-1"],
        &["--epsilon -1"],
    );
    fails_with(
        &["advantages", "--input", "/nonexistent/scored.jsonl"],
        &["/nonexistent/scored.jsonl"],
    );
}

#[test]
fn worked_example_matches_its_expected_output() {
    // The README's worked example: regenerate with the command in the README if it changes.
    let dir = tempfile::tempdir().unwrap();
    let input = repo("examples/advantages-scored.jsonl");
    for estimator in ["grpo", "rloo"] {
        let out = dir.path().join(format!("{estimator}.jsonl"));
        ok(&[
            "advantages",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--estimator",
            estimator,
        ]);
        let expected = repo(&format!("examples/advantages-{estimator}.expected.jsonl"));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            std::fs::read_to_string(&expected).unwrap(),
            "{estimator}"
        );
    }
}

#[test]
fn oprl_step_advantages_by_hand() {
    // Group g: outcomes 1 and 0 (population std 0.5 → A^E = ±1); steps [1, 3] and [2] pooled:
    // mean 2, population std √(2/3). Group h has no finite outcome: every step masked.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "trajectories.jsonl",
        "{\"group\": \"g\", \"reward\": 1.0, \"steps\": [1.0, 3.0]}\n\
         {\"group\": \"g\", \"reward\": 0.0, \"steps\": [2.0]}\n\
         {\"group\": \"h\", \"reward\": null, \"steps\": [5.0, null]}\n",
    );
    let out = dir.path().join("out.jsonl");
    let summary = ok(&[
        "advantages",
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--estimator",
        "oprl",
        "--std",
        "population",
        "--epsilon",
        "0",
        "--json",
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["estimator"], "oprl");
    let s = (2.0f64 / 3.0).sqrt();
    let lists: Vec<Vec<Option<f64>>> = rows(&out)
        .iter()
        .map(|row| {
            let list = row["advantage"].as_array().expect("a list column");
            list.iter().map(Value::as_f64).collect()
        })
        .collect();
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
    assert!(close(lists[0][0], 1.0 - 1.0 / s) && close(lists[0][1], 1.0 + 1.0 / s));
    assert!(close(lists[1][0], -1.0));
    assert_eq!(lists[2], [None, None]);
    // α scales the step part: α = 0 is GRPO at every step.
    ok(&[
        "advantages",
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--estimator",
        "oprl",
        "--std",
        "population",
        "--epsilon",
        "0",
        "--alpha",
        "0",
    ]);
    assert_eq!(rows(&out)[0]["advantage"], serde_json::json!([1.0, 1.0]));
    // Bad input is named.
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"group\": \"g\", \"reward\": 1.0, \"steps\": \"x\"}\n",
    );
    fails_with(
        &["advantages", "--input", &bad, "--estimator", "oprl"],
        &["bad.jsonl:1", "`steps`", "list of step rewards"],
    );
    let missing = write(
        dir.path(),
        "missing.jsonl",
        "{\"group\": \"g\", \"reward\": 1.0}\n",
    );
    fails_with(
        &["advantages", "--input", &missing, "--estimator", "oprl"],
        &["missing.jsonl:1", "--steps-field"],
    );
    fails_with(
        &[
            "advantages",
            "--input",
            &input,
            "--estimator",
            "grpo",
            "--alpha",
            "1",
        ],
        &["--alpha applies to --estimator oprl only"],
    );
}

#[test]
fn gae_per_episode_by_hand() {
    // γ = λ = 0.5. Episode 1 ends: δ1 = 1 + 0 − 2 = −1, δ0 = 0 + 0.5·2 − 1 = 0, A = [−0.25, −1],
    // returns A + V = [0.75, 1]. Episode 2 is truncated with bootstrap 4: δ1 = 1 + 2 − 2 = 1,
    // A = [0.25, 1]. Episode 3 has a null reward: masked whole.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "episodes.jsonl",
        "{\"steps\": [0.0, 1.0], \"values\": [1.0, 2.0]}\n\
         {\"steps\": [0.0, 1.0], \"values\": [1.0, 2.0], \"boot\": 4.0}\n\
         {\"steps\": [1.0, null], \"values\": [0.0, 0.0]}\n",
    );
    let out = dir.path().join("out.jsonl");
    let summary = ok(&[
        "advantages",
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--estimator",
        "gae",
        "--gamma",
        "0.5",
        "--lambda",
        "0.5",
        "--bootstrap-field",
        "boot",
        "--json",
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["masked_episodes"], 1);
    assert_eq!(summary["steps"], 6);
    let written = rows(&out);
    let expected = [
        (
            serde_json::json!([-0.25, -1.0]),
            serde_json::json!([0.75, 1.0]),
        ),
        (
            serde_json::json!([0.25, 1.0]),
            serde_json::json!([1.25, 3.0]),
        ),
        (
            serde_json::json!([null, null]),
            serde_json::json!([null, null]),
        ),
    ];
    for (row, (advantage, returns)) in written.iter().zip(expected) {
        assert_eq!(row["advantage"], advantage, "{row}");
        assert_eq!(row["returns"], returns, "{row}");
    }
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"steps\": [1.0], \"values\": [1.0, 2.0]}\n",
    );
    fails_with(
        &["advantages", "--input", &bad, "--estimator", "gae"],
        &["bad.jsonl:1", "`values`", "2 values for 1 step rewards"],
    );
    fails_with(
        &[
            "advantages",
            "--input",
            &input,
            "--estimator",
            "gae",
            "--gamma",
            "1.5",
        ],
        &["--gamma 1.5", "[0, 1]"],
    );
    fails_with(
        &[
            "advantages",
            "--input",
            &input,
            "--estimator",
            "rloo",
            "--lambda",
            "0.9",
        ],
        &["apply to --estimator gae only"],
    );
}

#[test]
fn per_step_output_feeds_another_run_in_every_format() {
    // GAE writes its advantages and returns as list columns, and the input's step lists stay
    // lists: the output is valid input for the next run (JSONL and Parquet alike).
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "episodes.jsonl",
        "{\"steps\": [1.0, 0.0, 2.0], \"values\": [0.5, 0.25, 1.0]}\n\
         {\"steps\": [0.0], \"values\": [0.0]}\n",
    );
    for extension in ["jsonl", "parquet"] {
        let first = dir.path().join(format!("first.{extension}"));
        let second = dir.path().join(format!("second-from-{extension}.jsonl"));
        let run = |input: &str, steps: &str, out: &std::path::Path, names: [&str; 2]| {
            ok(&[
                "advantages",
                "--input",
                input,
                "--output",
                out.to_str().unwrap(),
                "--estimator",
                "gae",
                "--steps-field",
                steps,
                "--values-field",
                "values",
                "--gamma",
                "1",
                "--lambda",
                "1",
                "--advantage-column",
                names[0],
                "--returns-column",
                names[1],
            ]);
        };
        run(&input, "steps", &first, ["a1", "r1"]);
        run(first.to_str().unwrap(), "a1", &second, ["a2", "r2"]);
        let written = rows(&second);
        // γ = λ = 1: A_t = Σ_{k≥t} r_k − V_t. Run 1: [3 − 0.5, 2 − 0.25, 2 − 1] = [2.5, 1.75, 1].
        // Run 2 on those: [5.25 − 0.5, 2.75 − 0.25, 1 − 1] = [4.75, 2.5, 0].
        assert_eq!(
            written[0]["steps"],
            serde_json::json!([1.0, 0.0, 2.0]),
            "{extension}"
        );
        assert_eq!(
            written[0]["a1"],
            serde_json::json!([2.5, 1.75, 1.0]),
            "{extension}"
        );
        assert_eq!(
            written[0]["r1"],
            serde_json::json!([3.0, 2.0, 2.0]),
            "{extension}"
        );
        assert_eq!(
            written[0]["a2"],
            serde_json::json!([4.75, 2.5, 0.0]),
            "{extension}"
        );
        assert_eq!(written[1]["a2"], serde_json::json!([0.0]), "{extension}");
    }
}
