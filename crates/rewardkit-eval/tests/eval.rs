//! End-to-end tests of rewardkit-eval: benchmark readers, protocols on hand-computed cases,
//! bootstrap and paired comparisons, diagnostics, score files and the cache.

use std::path::{Path, PathBuf};

use rewardkit_core::Outcome;
use rewardkit_eval::{
    compare, evaluate, read_scores, write_scores, BenchOptions, Benchmark, EvalError, EvalOptions,
    Layout, NonScores, Protocol, ScoreCache, SpecReward, Vote,
};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn bench(text: &str, options: &BenchOptions) -> Result<Benchmark, EvalError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bench.jsonl", text);
    Benchmark::read(&path, options)
}

fn pairwise() -> BenchOptions {
    BenchOptions::default()
}

fn best_of_n() -> BenchOptions {
    BenchOptions {
        layout: Layout::BestOfN,
        ..BenchOptions::default()
    }
}

fn labelled() -> BenchOptions {
    BenchOptions {
        layout: Layout::Labelled,
        ..BenchOptions::default()
    }
}

fn scored(rows: &[&[f64]]) -> Vec<Vec<Outcome>> {
    rows.iter()
        .map(|r| r.iter().map(|&v| Outcome::scored(v)).collect())
        .collect()
}

fn quick() -> EvalOptions {
    EvalOptions {
        bootstrap: 200,
        ..EvalOptions::default()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A benchmark file that must be refused with every needle in the error message.
fn check_error(text: &str, options: &BenchOptions, needles: &[&str]) {
    let error = bench(text, options).expect_err(text).to_string();
    for needle in needles {
        assert!(
            error.contains(needle),
            "`{needle}` not in `{error}` for {text}"
        );
    }
}

#[test]
fn bad_benchmarks_are_refused_naming_line_and_field() {
    let p = pairwise();
    check_error(r#"{"prompt":"q","chosen":"a"}"#, &p, &[":1:", "rejected"]);
    check_error(
        "{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":[\"b\",\"c\"]}",
        &p,
        &[":2:", "`rejected`", "one completion"],
    );
    check_error(
        r#"{"prompt":"q","chosen":"a","rejected":"b","subset":3.5e400}"#,
        &p,
        &[":1:"],
    );
    check_error(
        r#"{"prompt":"q","chosen":"a","rejected":"b","subset":["x"]}"#,
        &p,
        &[":1:", "`subset`", "a string or a number"],
    );
    check_error(
        "{\"id\":\"x\",\"chosen\":\"a\",\"rejected\":\"b\",\"prompt\":\"q\"}\n{\"id\":\"x\",\"chosen\":\"a\",\"rejected\":\"b\",\"prompt\":\"q\"}",
        &p,
        &["line 2", "duplicate id `x`"],
    );
    check_error("\n\n", &p, &["no rows"]);
    let b = best_of_n();
    check_error(
        r#"{"prompt":"q","chosen":[],"rejected":["b"]}"#,
        &b,
        &[":1:", "chosen", "empty list"],
    );
    check_error(
        r#"{"prompt":"q","chosen":["a"],"rejected":["b"],"subset":"Ties","id":"7"}"#,
        &b,
        &[":1:", "`id`", "ref:K"],
    );
    let l = labelled();
    check_error(
        r#"{"prompt":"q","samples":[{"completion":"a","correct":"yes"}]}"#,
        &l,
        &[":1:", "samples.0.correct", "true/false"],
    );
    check_error(
        r#"{"prompt":"q","samples":[{"completion":"a"}]}"#,
        &l,
        &[":1:", "samples.0.correct"],
    );
    check_error(r#"{"prompt":"q","samples":[]}"#, &l, &["non-empty list"]);
    check_error(r#"{"prompt":"q"}"#, &l, &["`samples`", "available: prompt"]);
    // Scored as pairs, rows without both labels are left out; none left is an error.
    let as_pairs = BenchOptions {
        protocol: Some(Protocol::Pairwise),
        ..labelled()
    };
    check_error(
        r#"{"prompt":"q","samples":[{"completion":"a","correct":true}]}"#,
        &as_pairs,
        &["all 1 rows were left out", "no incorrect sample"],
    );
    // Split marker must be present and the dialogue before it shared.
    let split = BenchOptions {
        prompt: None,
        split_marker: Some("\n\nAssistant:".to_owned()),
        ..pairwise()
    };
    check_error(
        r#"{"chosen":"\n\nHuman: hi\n\nAssistant: a","rejected":"no marker"}"#,
        &split,
        &[":1:", "`rejected`", "split marker"],
    );
    check_error(
        r#"{"chosen":"\n\nHuman: hi\n\nAssistant: a","rejected":"\n\nHuman: yo\n\nAssistant: b"}"#,
        &split,
        &[":1:", "same dialogue"],
    );
}

#[test]
fn readers_build_items_in_every_layout() {
    let b = bench(
        r#"{"prompt":"q","chosen":"good","rejected":"bad","subset":"s1","reference":"42"}"#,
        &pairwise(),
    )
    .unwrap();
    let item = &b.items[0];
    assert_eq!((item.subset.as_str(), item.id.as_str()), ("s1", "1"));
    assert_eq!(item.candidates.len(), 2);
    assert!(item.candidates[0].correct && !item.candidates[1].correct);
    let samples = item.samples();
    assert_eq!(samples[1].completion.text(), "bad");
    assert_eq!(samples[1].reference.as_ref().unwrap().text().unwrap(), "42");

    let b = bench(
        r#"{"prompt":"q","chosen":["a","b"],"rejected":["c","d","e"],"subset":"Ties","id":"tied:3"}
{"prompt":"q","chosen":["a"],"rejected":["c","d","e"],"subset":"Ties","id":"ref:3"}"#,
        &best_of_n(),
    )
    .unwrap();
    assert_eq!(b.items[0].candidates.len(), 5);
    assert_eq!(b.items[0].correct_count(), 2);
    assert_eq!(
        b.items[1].ties,
        Some((rewardkit_eval::TiesRole::Ref, "3".to_owned()))
    );

    // GSM8K's layout: one sample object per field.
    let options = BenchOptions {
        prompt: Some("question".to_owned()),
        samples: vec!["m1".to_owned(), "m2".to_owned()],
        sample_text: "solution".to_owned(),
        sample_label: "is_correct".to_owned(),
        reference: Some("ground_truth".to_owned()),
        ..labelled()
    };
    let text = r#"{"question":"q","ground_truth":"A: 3","m1":{"solution":"x","is_correct":false},"m2":{"solution":"y","is_correct":true}}"#;
    let b = bench(text, &options).unwrap();
    assert_eq!(b.items[0].candidates.len(), 2);
    assert!(!b.items[0].candidates[0].correct && b.items[0].candidates[1].correct);
    let as_pairs = BenchOptions {
        protocol: Some(Protocol::Pairwise),
        ..options
    };
    let b = bench(text, &as_pairs).unwrap();
    let texts: Vec<String> = b.items[0]
        .candidates
        .iter()
        .map(|c| c.completion.text().into_owned())
        .collect();
    assert_eq!(
        texts,
        ["y", "x"],
        "chosen = first correct, rejected = first incorrect"
    );

    // HH-RLHF style: full dialogues split at the last assistant turn.
    let split = BenchOptions {
        prompt: None,
        split_marker: Some("\n\nAssistant:".to_owned()),
        ..pairwise()
    };
    let b = bench(
        r#"{"chosen":"\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant: sure","rejected":"\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant: no"}"#,
        &split,
    )
    .unwrap();
    let item = &b.items[0];
    assert_eq!(
        item.prompt.text(),
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant:"
    );
    assert_eq!(item.candidates[0].completion.text(), "sure");
    assert_eq!(item.candidates[1].completion.text(), "no");

    // first / last select rows.
    let rows: String = (0..10)
        .map(|i| format!("{{\"prompt\":\"q{i}\",\"chosen\":\"a\",\"rejected\":\"b\"}}\n"))
        .collect();
    let last = BenchOptions {
        last: Some(3),
        ..pairwise()
    };
    let b = bench(&rows, &last).unwrap();
    let lines: Vec<u64> = b.items.iter().map(|i| i.line).collect();
    assert_eq!(lines, [8, 9, 10]);
    assert_eq!((b.rows, b.selected_rows), (10, 3));
}

#[test]
fn bad_rows_can_be_skipped_and_are_listed() {
    let text = "{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"q\",\"chosen\":\"a\"}\nnot json\n{\"prompt\":\"q\",\"chosen\":\"c\",\"rejected\":\"d\"}\n";
    assert!(bench(text, &pairwise()).is_err());
    let skip = BenchOptions {
        skip_bad_rows: true,
        ..pairwise()
    };
    let b = bench(text, &skip).unwrap();
    let lines: Vec<u64> = b.items.iter().map(|i| i.line).collect();
    assert_eq!(lines, [1, 4]);
    let skipped: Vec<u64> = b.skipped.iter().map(|(line, _)| *line).collect();
    assert_eq!(skipped, [2, 3]);
    assert!(b.skipped[0].1.contains("rejected") && b.skipped[1].1.contains("malformed JSON"));
    // Skipped rows still count for `last`.
    let last = BenchOptions {
        last: Some(2),
        ..skip
    };
    let b = bench(text, &last).unwrap();
    assert_eq!(b.items.len(), 1);
    assert_eq!(b.skipped.len(), 1);
}

/// Pairwise data: subset name and (chosen, rejected) scores per row.
fn pairwise_case(rows: &[(&str, f64, f64)]) -> (Benchmark, Vec<Vec<Outcome>>) {
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (subset, _, _))| {
            format!("{{\"prompt\":\"q{i}\",\"chosen\":\"c{i}\",\"rejected\":\"r{i}\",\"subset\":\"{subset}\"}}\n")
        })
        .collect();
    let b = bench(&text, &pairwise()).unwrap();
    let scores: Vec<Vec<Outcome>> = rows
        .iter()
        .map(|(_, c, r)| vec![Outcome::scored(*c), Outcome::scored(*r)])
        .collect();
    (b, scores)
}

#[test]
fn rewardbench_v1_sections_are_prompt_weighted_and_overall_is_their_mean() {
    // Chat: alpacaeval-easy 2/2 right, mt-bench-med 1/2 (one tie) → (2 + 1) / 4 = 0.75.
    // Safety: donotanswer 0/1 → 0. Overall = (0.75 + 0) / 2 = 0.375.
    let (b, s) = pairwise_case(&[
        ("alpacaeval-easy", 1.0, 0.0),
        ("alpacaeval-easy", 2.0, 1.0),
        ("mt-bench-med", 1.0, 1.0),
        ("mt-bench-med", 3.0, 2.0),
        ("donotanswer", 0.0, 1.0),
        ("custom", 1.0, 0.0),
    ]);
    let e = evaluate(&b, &s, &quick()).unwrap();
    let subset = |name: &str| e.subsets.iter().find(|x| x.name == name).unwrap();
    assert!(close(subset("alpacaeval-easy").score.value, 1.0));
    assert!(
        close(subset("mt-bench-med").score.value, 0.5),
        "a tie is wrong"
    );
    assert_eq!(subset("custom").section, None);
    let names: Vec<&str> = e.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Chat", "Safety"]);
    assert!(close(e.sections[0].score.value, 0.75));
    assert!(close(e.sections[1].score.value, 0.0));
    assert!(close(e.overall.value, 0.375));
    assert!(e.overall_rule.contains("not in the overall: custom"));
    // The text report's overall row counts only the sections' 5 prompts, not `custom`'s.
    let overall_row = |e: &rewardkit_eval::Evaluation| {
        let report = rewardkit_eval::report::Report {
            benchmark: rewardkit_eval::report::BenchInfo::of(&b),
            reward: rewardkit_eval::report::RewardInfo {
                source: "scores".to_owned(),
                path: "s.jsonl".to_owned(),
                fingerprint: None,
                cache_file: None,
                cached: 0,
                scored: 0,
            },
            evaluation: e.clone(),
            compared_with: None,
            compared_evaluation: None,
            comparison: None,
        };
        let text = report.to_text();
        let row = text.lines().find(|l| l.starts_with("overall ")).unwrap();
        row.split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(overall_row(&e), "5");

    // Without known sections the overall is the plain pair accuracy: 4 right of 6.
    let no_sections = EvalOptions {
        sections: Vec::new(),
        ..quick()
    };
    let e = evaluate(&b, &s, &no_sections).unwrap();
    assert!(close(e.overall.value, 4.0 / 6.0));
    assert_eq!(overall_row(&e), "6");
}

#[test]
fn rewardbench_2_overall_is_the_unweighted_subset_mean_with_the_ties_rule() {
    let text = r#"{"prompt":"q","chosen":["a"],"rejected":["b","c","d"],"subset":"Math","id":"m1"}
{"prompt":"q","chosen":["a"],"rejected":["b","c","d"],"subset":"Math","id":"m2"}
{"prompt":"q","chosen":["a"],"rejected":["b","c","d"],"subset":"Focus","id":"f1"}
{"prompt":"q","chosen":["a"],"rejected":["b"],"subset":"Ties","id":"ref:1"}
{"prompt":"q","chosen":["a","b"],"rejected":["c"],"subset":"Ties","id":"tied:1"}"#;
    let b = bench(text, &best_of_n()).unwrap();
    // Math: 1 (top) and 0.5 (2-way tie at top) → 0.75. Focus: 1/4 (4-way tie) → 0.25.
    // Ties: ref [3, 1] (margin 2, accurate); tied [5, 4 | 1] (spread 1, margin 3, accurate):
    //   0.3 + 0.3 + 0.2·[3 > 1] + 0.2·[min(2, 3) > 1] + 0.01·tanh(2/1 − 1).
    let s = scored(&[
        &[4.0, 1.0, 2.0, 3.0],
        &[4.0, 4.0, 2.0, 3.0],
        &[1.0, 1.0, 1.0, 1.0],
        &[3.0, 1.0],
        &[5.0, 4.0, 1.0],
    ]);
    let e = evaluate(&b, &s, &quick()).unwrap();
    let ties = 0.3 + 0.3 + 0.2 + 0.2 + 0.01 * 1.0f64.tanh();
    let got: Vec<(String, f64, usize, &str)> = e
        .subsets
        .iter()
        .map(|x| (x.name.clone(), x.score.value, x.prompts, x.rule))
        .collect();
    assert_eq!(got.len(), 3);
    assert!(close(got[0].1, 0.75) && got[0].3 == "best_of_n");
    assert!(close(got[1].1, 0.25));
    assert!(close(got[2].1, ties) && got[2].2 == 1 && got[2].3 == "ties");
    assert!(close(e.overall.value, (0.75 + 0.25 + ties) / 3.0));
    assert!(e.sections.is_empty());
    assert!(e.ties.is_some());

    // A Ties prompt missing its other version is an error naming it.
    let half = r#"{"prompt":"q","chosen":["a"],"rejected":["b"],"subset":"Ties","id":"ref:9"}"#;
    let b = bench(half, &best_of_n()).unwrap();
    let error = evaluate(&b, &scored(&[&[1.0, 0.0]]), &quick())
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing: tied:9"), "{error}");
}

#[test]
fn non_score_policies() {
    let (b, _) = pairwise_case(&[("s", 0.0, 0.0), ("s", 0.0, 0.0), ("s", 0.0, 0.0)]);
    let outcomes = vec![
        vec![Outcome::scored(1.0), Outcome::scored(0.0)],
        vec![Outcome::unscorable("no answer"), Outcome::scored(0.0)],
        vec![Outcome::scored(2.0), Outcome::scored(1.0)],
    ];
    let e = evaluate(&b, &outcomes, &quick()).unwrap();
    assert!(close(e.overall.value, 2.0 / 3.0), "wrong by default");
    assert_eq!((e.non_scores, e.wrong_for_non_score), (1, 1));
    let exclude = EvalOptions {
        non_scores: NonScores::Exclude,
        ..quick()
    };
    let e = evaluate(&b, &outcomes, &exclude).unwrap();
    assert!(close(e.overall.value, 1.0));
    assert_eq!(e.items, 2);
    assert_eq!(e.left_out.len(), 1);
    assert_eq!(e.left_out[0].line, 2);
    assert!(e.emptied_subsets.is_empty());
    // A subset whose every item is left out has no score, and the report says so.
    let (b2, _) = pairwise_case(&[("a", 0.0, 0.0), ("b", 0.0, 0.0)]);
    let only_b = vec![
        vec![Outcome::TimedOut, Outcome::scored(0.0)],
        vec![Outcome::scored(1.0), Outcome::scored(0.0)],
    ];
    let e = evaluate(&b2, &only_b, &exclude).unwrap();
    assert_eq!(e.emptied_subsets, ["a"]);
    assert_eq!(e.subsets.len(), 1);
    let error = EvalOptions {
        non_scores: NonScores::Error,
        ..quick()
    };
    let message = evaluate(&b, &outcomes, &error).unwrap_err().to_string();
    assert!(
        message.contains("line 2") && message.contains("no answer"),
        "{message}"
    );
}

#[test]
fn bootstrap_intervals_are_seeded_and_contain_the_estimate() {
    let rows: Vec<(&str, f64, f64)> = (0..200)
        .map(|i| ("s", if i % 4 == 0 { 0.0 } else { 1.0 }, 0.5))
        .collect();
    let (b, s) = pairwise_case(&rows);
    let e1 = evaluate(&b, &s, &quick()).unwrap();
    let e2 = evaluate(&b, &s, &quick()).unwrap();
    let ci = e1.overall.interval.unwrap();
    assert_eq!(Some(ci), e2.overall.interval, "same seed, same interval");
    assert!(close(e1.overall.value, 0.75));
    assert!(ci.low < 0.75 && 0.75 < ci.high, "{ci:?}");
    // Binomial standard error sqrt(.75 · .25 / 200) ≈ 0.031: a 95% interval is about ±0.06.
    assert!(ci.high - ci.low > 0.08 && ci.high - ci.low < 0.16, "{ci:?}");
    let other_seed = EvalOptions { seed: 1, ..quick() };
    assert_ne!(
        evaluate(&b, &s, &other_seed).unwrap().overall.interval,
        Some(ci)
    );
    let none = EvalOptions {
        bootstrap: 0,
        ..quick()
    };
    assert_eq!(evaluate(&b, &s, &none).unwrap().overall.interval, None);
}

#[test]
fn paired_comparison_tells_noise_from_a_difference() {
    let rows: Vec<(&str, f64, f64)> = (0..300).map(|_| ("s", 0.0, 0.0)).collect();
    let (b, _) = pairwise_case(&rows);
    // A: right on 80%; B: the same items plus nothing else → equal.
    let a: Vec<Vec<Outcome>> = (0..300)
        .map(|i| {
            vec![
                Outcome::scored(f64::from(u8::from(i % 5 != 0))),
                Outcome::scored(0.5),
            ]
        })
        .collect();
    let same = compare(&b, &a, &a, &quick()).unwrap();
    assert!(close(same.difference.value, 0.0));
    assert!(!same.significant);
    assert_eq!(same.mcnemar.p_exact, 1.0);
    assert_eq!((same.mcnemar.both, same.mcnemar.neither), (240, 60));
    // C: right on 60% (a subset of A's right items) → A better by 0.2, very significant.
    let c: Vec<Vec<Outcome>> = (0..300)
        .map(|i| {
            vec![
                Outcome::scored(f64::from(u8::from(i % 5 > 1))),
                Outcome::scored(0.5),
            ]
        })
        .collect();
    let cmp = compare(&b, &a, &c, &quick()).unwrap();
    assert!(close(cmp.difference.value, 0.2));
    assert!(cmp.significant, "{}", cmp.verdict);
    assert_eq!((cmp.mcnemar.first_only, cmp.mcnemar.second_only), (60, 0));
    assert!(cmp.mcnemar.p_exact < 1e-15);
    assert!(
        cmp.verdict.starts_with("the first reward is better"),
        "{}",
        cmp.verdict
    );
    // D: differs from A on 4 items, 3 to 1: not significant.
    let d: Vec<Vec<Outcome>> = (0..300)
        .map(|i| {
            let right = match i {
                5 | 10 | 15 => true,
                1 => false,
                _ => i % 5 != 0,
            };
            vec![
                Outcome::scored(f64::from(u8::from(right))),
                Outcome::scored(0.5),
            ]
        })
        .collect();
    let cmp = compare(&b, &d, &a, &quick()).unwrap();
    assert!(!cmp.significant, "{}", cmp.verdict);
    assert_eq!((cmp.mcnemar.first_only, cmp.mcnemar.second_only), (3, 1));
    // Exact: 2 · P(X ≤ 1 | n = 4) = 2 · 5/16.
    assert!(close(cmp.mcnemar.p_exact, 0.625));
}

#[test]
fn calibration_length_and_distributions_hand_computed() {
    // Pair 1: Δ = 0 → points (0.5, 1) and (0.5, 0): bin [0.5, 0.6), accuracy 0.5, no error.
    // Pair 2: Δ = 10 → σ ≈ 0.99995: bins [0.9, 1] (label 1) and [0, 0.1) (label 0).
    let text = r#"{"prompt":"q","chosen":"aaaa","rejected":"bb"}
{"prompt":"q","chosen":"a","rejected":"bbbbbb"}"#;
    let b = bench(text, &pairwise()).unwrap();
    let s = scored(&[&[1.0, 1.0], &[10.0, 0.0]]);
    let e = evaluate(&b, &s, &quick()).unwrap();
    let c = &e.calibration;
    assert_eq!(c.pairs, 2);
    assert_eq!(c.bins[5].count, 2);
    assert!(close(c.bins[5].accuracy, 0.5) && close(c.bins[5].confidence, 0.5));
    assert_eq!((c.bins[9].count, c.bins[0].count), (1, 1));
    let p = 1.0 / (1.0 + (-10.0f64).exp());
    // ECE = (2/4)·0 + (1/4)·|1 − p| + (1/4)·|0 − (1 − p)| = (1 − p) / 2.
    assert!((c.ece - (1.0 - p) / 2.0).abs() < 1e-12, "{}", c.ece);
    // BT loss = (log 2 + log(1 + e^−10)) / 2.
    let loss = (2f64.ln() + (-10f64).exp().ln_1p()) / 2.0;
    assert!((c.bt_loss - loss).abs() < 1e-12);
    // Length: chosen longer in pair 1 (a tie: wrong), shorter in pair 2 (right).
    let l = &e.length;
    assert_eq!((l.chosen_longer.pairs, l.chosen_shorter.pairs), (1, 1));
    assert!(close(l.chosen_longer.accuracy.value, 0.0));
    assert!(close(l.chosen_shorter.accuracy.value, 1.0));
    assert!(close(l.mean_length_correct, 2.5) && close(l.mean_length_incorrect, 4.0));
    // Reward vs length over the 4 candidates: (1, 4), (1, 2), (10, 1), (0, 6).
    assert!(l.spearman < 0.0 && l.pearson < 0.0);
    let d = &e.distributions;
    assert_eq!(d.correct.iter().sum::<usize>(), 2);
    assert_eq!(d.incorrect.iter().sum::<usize>(), 2);
    assert!(close(d.correct_summary.mean, 5.5));
}

#[test]
fn labelled_best_of_n_curve_and_balance_hand_computed() {
    // Prompt 1: answers 5 (right), 5 (right), 7 (wrong); scores 0.9, 0.1, 0.5.
    // Prompt 2: answers 3 (wrong), 4 (right), 3 (wrong); scores 0.2, 0.2, 0.8.
    let text = r#####"{"prompt":"p1","samples":[{"completion":"#### 5","correct":true},{"completion":"so 5","correct":true},{"completion":"#### 7","correct":false}]}
{"prompt":"p2","samples":[{"completion":"#### 3","correct":false},{"completion":"#### 4","correct":true},{"completion":"it is 3","correct":false}]}"#####;
    let b = bench(text, &labelled()).unwrap();
    let s = scored(&[&[0.9, 0.1, 0.5], &[0.2, 0.2, 0.8]]);
    let e = evaluate(&b, &s, &quick()).unwrap();
    // Overall (N = 3): prompt 1 picks the right 0.9, prompt 2 the wrong 0.8 → 0.5.
    assert!(close(e.overall.value, 0.5));
    let curve = e.best_of_n.as_ref().unwrap();
    assert_eq!(curve.n, [1, 2, 3]);
    // N = 1: mean label = (2/3 + 1/3) / 2 = 0.5; oracle the same.
    assert!(close(curve.reward[0], 0.5) && close(curve.oracle[0], 0.5));
    // N = 2, prompt 1: {0,1} → 1, {0,2} → 1, {1,2} → 0 (0.5 > 0.1): 2/3.
    //        prompt 2: {0,1} → tie 0.2/0.2 → 1/2, {0,2} → 0, {1,2} → 0: 1/6. Mean 5/12.
    assert!(close(curve.reward[1], 5.0 / 12.0), "{}", curve.reward[1]);
    // Oracle N = 2: prompt 1 always 1; prompt 2: 2 of 3 subsets contain sample 1 → (1 + 2/3)/2.
    assert!(close(curve.oracle[1], 5.0 / 6.0));
    let majority = curve.majority.as_ref().unwrap();
    // Majority N = 3: prompt 1: 5 ×2 → right; prompt 2: 3 ×2 → wrong → 0.5.
    assert!(close(majority[2], 0.5));
    // N = 2, prompt 1: {5,5} right, {5,7} tie → 1/2, {5,7} → 1/2: 2/3.
    //        prompt 2: {3,4} → 1/2, {3,3} → 0, {4,3} → 1/2: 1/3. Mean 1/2.
    assert!(close(majority[1], 0.5), "{}", majority[1]);
    assert_eq!(curve.vote, Vote::Number);

    // Balance, n* = min(8, 3) = 3. Select all: prompt 1: 2 distinct right of 3 → (2/3)(2/3);
    // prompt 2: (1/3)(1/3). Threshold 0.2 (select > 0.2): p1 {0.9, 0.5}: (1/3)(1/2);
    // p2 {0.8}: 0. Threshold 0.5: p1 {0.9}: (1/3)(1) = 1/3; p2 {0.8}: 0 → 1/6.
    let balance = e.balance.as_ref().unwrap();
    assert_eq!(balance.n_star, 3);
    assert!(close(balance.curve[0].score, (4.0 / 9.0 + 1.0 / 9.0) / 2.0));
    assert!(balance.curve[0].threshold.is_none());
    assert!(close(balance.best_score, 5.0 / 18.0));
    assert_eq!(balance.best_threshold, None);
    let at = |t: f64| {
        balance
            .curve
            .iter()
            .find(|p| p.threshold == Some(t))
            .unwrap()
    };
    assert!(close(at(0.2).score, 1.0 / 12.0));
    assert!(close(at(0.5).score, 1.0 / 6.0));
    assert!(close(at(0.5).selected, 2.0 / 6.0));
}

#[test]
fn score_files_line_up_or_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let (b, s) = pairwise_case(&[("s", 1.0, 0.0), ("s", 0.0, 1.0)]);
    let path = dir.path().join("scores.jsonl");
    write_scores(&path, &b, &s).unwrap();
    assert_eq!(read_scores(&path, &b, None).unwrap(), s);
    let check = |text: &str, needles: &[&str]| {
        let path = write(dir.path(), "bad.jsonl", text);
        let error = read_scores(&path, &b, None).expect_err(text).to_string();
        for needle in needles {
            assert!(error.contains(needle), "`{needle}` not in `{error}`");
        }
    };
    // By order, by index, by id.
    let ok = |text: &str| {
        let path = write(dir.path(), "ok.jsonl", text);
        read_scores(&path, &b, None).unwrap()
    };
    assert_eq!(ok("{\"scores\":[1,0]}\n{\"scores\":[0,1]}"), s);
    assert_eq!(
        ok("{\"index\":1,\"scores\":[0,1]}\n{\"index\":0,\"scores\":[1,0]}"),
        s
    );
    assert_eq!(
        ok("{\"id\":2,\"scores\":[0,1]}\n{\"id\":\"1\",\"scores\":[1,0]}"),
        s
    );
    let with_null = ok("{\"scores\":[null,0]}\n{\"scores\":[0,1]}");
    assert_eq!(
        with_null[0][0].kind(),
        rewardkit_core::OutcomeKind::Unscorable
    );
    check(
        "{\"scores\":[1,0]}",
        &["1 score rows for 2 benchmark items", "ids 2"],
    );
    check(
        "{\"scores\":[1,0]}\n{\"scores\":[0,1]}\n{\"scores\":[0,1]}",
        &[":3:", "more score rows"],
    );
    check(
        "{\"id\":\"9\",\"scores\":[1,0]}",
        &[":1:", "id `9` is not in the benchmark"],
    );
    check(
        "{\"index\":5,\"scores\":[1,0]}",
        &[":1:", "index 5 is past"],
    );
    check(
        "{\"scores\":[1,0,2]}",
        &[":1:", "3 scores for benchmark id `1`", "2 candidates"],
    );
    check(
        "{\"scores\":[1,\"NaN\"]}",
        &[":1:", "`scores.1`", "finite number"],
    );
    check("{\"scores\":[1,NaN]}", &[":1:", "malformed JSON"]);
    check("{\"score\":[1,0]}", &[":1:", "missing field `scores`"]);
    check(
        "{\"id\":1,\"scores\":[1,0]}\n{\"id\":1,\"scores\":[1,0]}",
        &[":2:", "second score row", "line 1"],
    );
    check(
        "{\"id\":1,\"scores\":[1,0]}\n{\"scores\":[1,0]}",
        &[":2:", "matched by id before"],
    );
}

#[test]
fn spec_scores_are_cached_per_reward_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "spec.toml",
        "[[term]]\nname = \"correct\"\nkind = \"gsm8k\"\n",
    );
    let text = r#####"{"prompt":"2+2?","chosen":"#### 4","rejected":"#### 5","reference":"4"}
{"prompt":"3+3?","chosen":"#### 6","rejected":"no idea","reference":"6"}"#####;
    let b = bench(text, &pairwise()).unwrap();
    let reward = SpecReward::from_path(&spec).unwrap();
    let cache_dir = dir.path().join("cache");
    let mut cache = ScoreCache::open(&cache_dir, reward.fingerprint()).unwrap();
    let mut calls = Vec::new();
    let (outcomes, cached) = reward
        .score(&b, Some(&mut cache), &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap();
    assert_eq!(cached, 0);
    assert_eq!(calls.first(), Some(&(0, 4)));
    assert_eq!(calls.last(), Some(&(4, 4)));
    let values: Vec<Vec<Option<f64>>> = outcomes
        .iter()
        .map(|r| r.iter().map(Outcome::value).collect())
        .collect();
    assert_eq!(values, [[Some(1.0), Some(0.0)], [Some(1.0), Some(0.0)]]);
    let e = evaluate(&b, &outcomes, &quick()).unwrap();
    assert!(close(e.overall.value, 1.0));

    // A second run takes everything from the file.
    let mut again = ScoreCache::open(&cache_dir, reward.fingerprint()).unwrap();
    assert_eq!(again.loaded, 4);
    let (second, cached) = reward.score(&b, Some(&mut again), &mut |_, _| {}).unwrap();
    assert_eq!((cached, second), (4, outcomes.clone()));
    // A corrupt line (a run killed mid-write) is ignored, not trusted.
    let file = again.file().to_path_buf();
    let mut content = std::fs::read_to_string(&file).unwrap();
    content.push_str("{\"sample\": \"zz\", \"outc");
    std::fs::write(&file, content).unwrap();
    let reopened = ScoreCache::open(&cache_dir, reward.fingerprint()).unwrap();
    assert_eq!((reopened.loaded, reopened.ignored_lines), (4, 1));

    // Another spec has another fingerprint (the weight changed).
    let other = write(
        dir.path(),
        "other.toml",
        "[[term]]\nname = \"correct\"\nkind = \"gsm8k\"\nweight = 2.0\n",
    );
    let other = SpecReward::from_path(&other).unwrap();
    assert_ne!(other.fingerprint(), reward.fingerprint());
    // The same content under another file name has the same one.
    let copy = write(
        dir.path(),
        "copy.toml",
        "[[term]]\nname = \"correct\"\nkind = \"gsm8k\"\n",
    );
    assert_eq!(
        SpecReward::from_path(&copy).unwrap().fingerprint(),
        reward.fingerprint()
    );
}

#[test]
fn the_html_report_holds_every_plot() {
    let text = r#####"{"prompt":"p1","samples":[{"completion":"#### 5","correct":true},{"completion":"#### 7","correct":false}]}
{"prompt":"p2","samples":[{"completion":"#### 3","correct":false},{"completion":"#### 4","correct":true}]}"#####;
    let b = bench(text, &labelled()).unwrap();
    let s = scored(&[&[0.9, 0.1], &[0.2, 0.4]]);
    let e = evaluate(&b, &s, &quick()).unwrap();
    let report = rewardkit_eval::report::Report {
        benchmark: rewardkit_eval::report::BenchInfo::of(&b),
        reward: rewardkit_eval::report::RewardInfo {
            source: "scores".to_owned(),
            path: "<s>.jsonl".to_owned(),
            fingerprint: None,
            cache_file: None,
            cached: 0,
            scored: 0,
        },
        evaluation: e,
        compared_with: None,
        compared_evaluation: None,
        comparison: None,
    };
    let html = report.to_html();
    for id in [
        "subsets",
        "reliability",
        "distributions",
        "length",
        "best-of-n",
        "balance",
    ] {
        assert!(html.contains(&format!("id=\"plot-{id}\"")), "{id}");
    }
    assert_eq!(html.matches("<svg").count(), 6);
    assert!(html.contains("&lt;s&gt;.jsonl") && !html.contains("<s>.jsonl"));
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no network"
    );
    assert!(!html.contains("NaN"));
    let text = report.to_text();
    assert!(
        text.contains("best-of-N") && text.contains("overall"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["evaluation"]["protocol"], "labelled");
    assert!(json["evaluation"]["overall"]["interval"]["low"].is_number());
}

/// The GSM8K example solutions, as pairs and as labelled best-of-4, with the `gsm8k` verifier.
#[test]
fn gsm8k_example_solutions() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/gsm8k/example_model_solutions.jsonl"
    );
    if !Path::new(path).exists() {
        eprintln!("skipping: {path} is absent");
        return;
    }
    let options = BenchOptions {
        layout: Layout::Labelled,
        prompt: Some("question".to_owned()),
        samples: [
            "6b_finetuning",
            "6b_verification",
            "175b_finetuning",
            "175b_verification",
        ]
        .map(str::to_owned)
        .to_vec(),
        sample_text: "solution".to_owned(),
        sample_label: "is_correct".to_owned(),
        reference: Some("ground_truth".to_owned()),
        ..BenchOptions::default()
    };
    let labelled = Benchmark::read(path, &options).unwrap();
    assert_eq!(labelled.items.len(), 1319);
    let correct: usize = labelled.items.iter().map(|i| i.correct_count()).sum();
    assert_eq!(correct, 2001);
    let pairs = Benchmark::read(
        path,
        &BenchOptions {
            protocol: Some(Protocol::Pairwise),
            ..options
        },
    )
    .unwrap();
    assert_eq!(pairs.items.len(), 731);
    assert_eq!(pairs.left_out.len(), 1319 - 731);

    let spec = rewardkit::Spec::from_toml_str(
        "[[term]]\nname = \"correct\"\nkind = \"gsm8k\"\n",
        "inline.toml",
    )
    .unwrap();
    let reward = SpecReward::new(&spec).unwrap();
    let (outcomes, _) = reward.score(&pairs, None, &mut |_, _| {}).unwrap();
    let e = evaluate(&pairs, &outcomes, &quick()).unwrap();
    // The verifier agrees with every label (README benchmark: 100% agreement), so every pair
    // is right.
    assert!(close(e.overall.value, 1.0), "{}", e.overall.value);
    let (outcomes, _) = reward.score(&labelled, None, &mut |_, _| {}).unwrap();
    let e = evaluate(&labelled, &outcomes, &quick()).unwrap();
    let curve = e.best_of_n.as_ref().unwrap();
    // With a perfect verifier the reward's pick is the oracle at every N.
    for (r, o) in curve.reward.iter().zip(&curve.oracle) {
        assert!((r - o).abs() < 1e-12, "{r} vs {o}");
    }
    assert!(curve.majority.as_ref().unwrap()[3] < curve.oracle[3]);
}

/// The last 300 HH-RLHF harmless-base rows as pairs split at the last assistant turn, with the
/// "shorter is better" spec: its accuracy is the share of pairs whose chosen answer is shorter.
#[test]
fn hh_rlhf_last_300_pairs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/hh-rlhf/harmless-base-test.dev.jsonl.gz"
    );
    if !Path::new(path).exists() {
        eprintln!("skipping: {path} is absent");
        return;
    }
    let options = BenchOptions {
        prompt: None,
        split_marker: Some("\n\nAssistant:".to_owned()),
        last: Some(300),
        skip_bad_rows: true,
        ..BenchOptions::default()
    };
    let b = Benchmark::read(path, &options).unwrap();
    assert_eq!((b.rows, b.selected_rows, b.items.len()), (1800, 300, 299));
    // Row 1689's two dialogues differ before the last turn ("  Human:" without a line break).
    assert_eq!(b.skipped.len(), 1);
    assert_eq!(b.skipped[0].0, 1689);
    assert!(b
        .items
        .iter()
        .all(|i| i.prompt.text().ends_with("Assistant:")));
    let shorter = b
        .items
        .iter()
        .filter(|i| {
            i.candidates[0].completion.text().chars().count()
                < i.candidates[1].completion.text().chars().count()
        })
        .count();
    let spec = rewardkit::Spec::from_toml_str(
        "[[term]]\nname = \"shorter\"\nkind = \"soft_overlong\"\n[term.options]\nmax_length = 4000\ncache = 4000\nunit = \"chars\"\n",
        "inline.toml",
    )
    .unwrap();
    let (outcomes, _) = SpecReward::new(&spec)
        .unwrap()
        .score(&b, None, &mut |_, _| {})
        .unwrap();
    let e = evaluate(&b, &outcomes, &quick()).unwrap();
    assert!(
        close(e.overall.value, shorter as f64 / 299.0),
        "{}",
        e.overall.value
    );
    assert_eq!(shorter, 155);
    assert!(close(e.length.spearman, -1.0));
}
