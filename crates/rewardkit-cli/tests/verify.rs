//! `rewardkit verify` and the `math` kind through `rewardkit score`.

mod common;
use common::run;

/// Runs `rewardkit verify --gold G --pred P` and checks the verdict line and that every `needle`
/// is printed.
#[track_caller]
fn check(gold: &str, pred: &str, verdict: &str, needles: &[&str]) {
    let out = run(&["verify", "--gold", gold, "--pred", pred]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().next() == Some(&format!("verdict: {verdict}")),
        "{gold:?} vs {pred:?}: {text}"
    );
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing: {text}");
    }
}

#[test]
fn verify_prints_the_verdict_and_the_normal_forms() {
    check(
        "\\frac{1}{2}",
        "0.5",
        "equal",
        &["gold:    (1 / 2)", "pred:    1/2~", "exactly equal (1/2)"],
    );
    check("\\pi/2", "\\dfrac{\\pi}{2}", "equal", &["(pi / 2)"]);
    check(
        "\\frac{1}{2004!}",
        "\\frac{1}{2006!}",
        "not equal",
        &["exactly different"],
    );
    check("2021", "\\pm 2021", "not equal", &["anti-hacking"]);
    check(
        "5",
        "so the answer is \\boxed{5}",
        "equal",
        &["found by boxed"],
    );
    check(
        "5",
        "10^{10^{10^{10}}}",
        "stopped (number too large: exponent too large)",
        &[],
    );
    check("5", "no idea", "no answer", &[]);
}

#[test]
fn verify_json_and_bad_options() {
    let out = run(&[
        "verify",
        "--gold",
        "x^2-1",
        "--pred",
        "(x-1)(x+1)",
        "--json",
    ]);
    assert!(out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["verdict"], "equal");
    assert_eq!(value["reward"]["value"], 1.0);
    assert_eq!(value["strategy"], "whole");

    let out = run(&["verify", "--gold", "1", "--pred", "1", "--rel-tol=-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rel_tol"));
}

#[test]
fn math_kind_scores_from_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[[term]]\nname = \"math\"\nkind = \"math\"\n[term.options]\nrel_tol = 1e-4\n",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"prompt": "q", "completion": "so \\boxed{\\frac{1}{2}}", "reference": "0.5"}"#,
            "\n",
            r#"{"prompt": "q", "completion": "the answer is 3", "reference": "\\pm 3"}"#,
            "\n",
        ),
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let out = run(&[
        "score",
        "--spec",
        spec.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    // 1/2 matches 0.5; a single 3 does not match the two values of ±3.
    assert_eq!(rows[0]["math"], 1.0);
    assert_eq!(rows[1]["math"], 0.0);
    assert_eq!(rows[1]["math.outcome"], "scored");

    // Unknown option keys are refused with the key's name.
    std::fs::write(
        &spec,
        "[[term]]\nname = \"math\"\nkind = \"math\"\n[term.options]\nrel_tolerance = 1\n",
    )
    .unwrap();
    let out = run(&["spec", "check", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rel_tolerance"));
}
