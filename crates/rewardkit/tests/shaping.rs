//! Shaping in a spec: per-term transforms, combination methods and advantages, each case a spec
//! fragment, a few samples and hand-computed expectations.

use rewardkit::{BuiltTerm, Pipeline, Registry, Spec};
use rewardkit_core::{Meter, Outcome, Reward, RewardOutput, Sample};
use serde_json::{json, Value};

/// Scores the number in the sample field named by its `field` option; unscorable when the field
/// is missing or null, failed when it is the string "fail".
struct Field(String);

impl Reward for Field {
    fn kind(&self) -> &str {
        "field"
    }

    fn score(&self, sample: &Sample, _meter: &mut Meter) -> RewardOutput {
        RewardOutput::new(match sample.metadata.get(&self.0) {
            Some(Value::Number(n)) => Outcome::scored(n.as_f64().unwrap()),
            Some(Value::String(s)) if s == "fail" => Outcome::failed("asked to fail"),
            _ => Outcome::unscorable("no value"),
        })
    }
}

fn registry() -> Registry {
    let mut registry = Registry::empty();
    registry.register("field", "a number from a sample field", |options| {
        let field = options
            .get("field")
            .and_then(|v| v.as_str())
            .ok_or("`field` is required")?;
        Ok(BuiltTerm {
            reward: Box::new(Field(field.to_owned())),
            resolved_options: format!("field = {field:?}"),
        })
    });
    registry
}

/// Terms `a`, `b` (and `c`) reading fields of the same names, then `rest` (more TOML).
fn spec(terms: &[(&str, &str)], rest: &str) -> String {
    let mut text = String::new();
    for (name, extra) in terms {
        text += &format!(
            "[[term]]\nname = \"{name}\"\nkind = \"field\"\n{extra}\noptions = {{ field = \"{name}\" }}\n"
        );
    }
    text + rest
}

fn build(text: &str) -> Result<Pipeline, String> {
    let spec = Spec::from_toml_str(text, "t.toml").map_err(|e| e.to_string())?;
    Pipeline::build_with(&spec, &registry()).map_err(|e| e.to_string())
}

/// Samples from `(group, fields)`; an empty group is none.
fn samples(rows: &[(&str, Value)]) -> Vec<Sample> {
    rows.iter()
        .map(|(group, fields)| {
            let mut sample = Sample::new("p", "c");
            if !group.is_empty() {
                sample = sample.with_group(*group);
            }
            sample.metadata = fields.as_object().unwrap().clone();
            sample
        })
        .collect()
}

fn close(got: f64, expected: f64) -> bool {
    (got - expected).abs() <= 1e-12 * expected.abs().max(1.0)
}

/// Scores `rows` with the spec and runs the batch pass; checks the rewards (a number, or `None`
/// for a non-score whose reason contains `reason`) and, when given, the advantages.
fn check(
    text: &str,
    rows: &[(&str, Value)],
    expected: &[Result<f64, &str>],
    advantages: Option<&[f64]>,
) {
    let pipeline = build(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let samples = samples(rows);
    let scored = pipeline.score_batch(&samples);
    let inputs: Vec<_> = samples.iter().map(|s| pipeline.shape_input(s)).collect();
    let shaped = pipeline.shape(&scored, &inputs).unwrap();
    assert_eq!(shaped.rewards.len(), expected.len());
    for (i, (got, want)) in shaped.rewards.iter().zip(expected).enumerate() {
        match (got.value(), want) {
            (Some(g), Ok(w)) if close(g, *w) => {}
            (None, Err(reason)) if got.reason().unwrap_or("").contains(reason) => {}
            _ => panic!("{text}\nsample {i}: got {got:?}, expected {want:?}"),
        }
        // Without pooled stages the per-sample reward is the batch pass's, and otherwise it says
        // it is pending.
        if pipeline.pooled_stages().is_empty() {
            assert_eq!(&scored[i].reward, got, "{text}");
        } else {
            assert!(
                scored[i].reward.reason().unwrap().starts_with("pending"),
                "{:?}",
                scored[i].reward
            );
        }
    }
    match (advantages, &shaped.advantages) {
        (None, _) => {}
        (Some(want), Some(got)) => {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g.is_nan() && w.is_nan()) || close(*g, *w),
                    "{text}\nadvantages {got:?}, expected {want:?}"
                );
            }
        }
        (Some(_), None) => panic!("no advantages from {text}"),
    }
}

fn error(text: &str, needles: &[&str]) {
    let e = build(text)
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{text}"));
    for needle in needles {
        assert!(e.contains(needle), "`{needle}` not in: {e}");
    }
}

const LN2: f64 = std::f64::consts::LN_2;

#[test]
fn per_sample_transforms() {
    let a = |x: f64| ("", json!({ "a": x }));
    let clip = r#"weight = 2.0
transform = [{ kind = "clip", low = -1, high = 1 }]"#;
    check(
        &spec(&[("a", clip)], ""),
        &[a(2.0), a(-3.0), a(0.5)],
        &[Ok(2.0), Ok(-2.0), Ok(1.0)],
        None,
    );
    let ceiling = r#"transform = [{ kind = "ceiling", max = 4.0 }]"#;
    check(
        &spec(&[("a", ceiling)], ""),
        &[a(3.0), a(5.0)],
        &[Ok(3.0), Ok(4.0)],
        None,
    );
    let lsc = r#"transform = [{ kind = "log_sigmoid", reference = 1.5 }]"#;
    check(
        &spec(&[("a", lsc)], ""),
        &[a(1.5), a(1.5 + 2.0)],
        // log σ(2) = −ln(1 + e^{−2})
        &[Ok(-LN2), Ok(-(1.0 + (-2.0f64).exp()).ln())],
        None,
    );
    // The reference from a field: a number, or a list reduced by a quantile.
    let lsc_field = r#"transform = [{ kind = "log_sigmoid", reference_field = "ref" }]"#;
    check(
        &spec(&[("a", lsc_field)], ""),
        &[
            ("", json!({"a": 2.0, "ref": 2.0})),
            ("", json!({"a": 2.0})),
            ("", json!({"a": 2.0, "ref": [1.0, 2.0]})),
            ("", json!({"a": 2.0, "ref": "x"})),
        ],
        &[
            Ok(-LN2),
            Err("a: log_sigmoid: field `ref` is missing"),
            Err("set `reference_quantile`"),
            Err("expected a number or a list of numbers"),
        ],
        None,
    );
    let lsc_list = r#"transform = [{ kind = "log_sigmoid", reference_field = "m.ref", reference_quantile = { method = "empirical", q = 0.5 } }]"#;
    check(
        &spec(&[("a", lsc_list)], ""),
        &[
            ("", json!({"a": 2.0, "m": {"ref": [0.0, 4.0]}})),
            ("", json!({"a": 2.0, "m": {"ref": [3.0]}})),
        ],
        &[Ok(-LN2), Ok(-(1.0 + 1f64.exp()).ln())],
        None,
    );
    // PAR: fixed references, and references from a field; r = r_ref gives 0.5.
    let par = r#"transform = [{ kind = "par", references = [1.0, 3.0], k = 2.0 }]"#;
    check(&spec(&[("a", par)], ""), &[a(2.0)], &[Ok(0.5)], None);
    let par_field = r#"transform = [{ kind = "par", reference_field = "refs" }]"#;
    let s1 = 1.0 / (1.0 + (-1.0f64).exp());
    check(
        &spec(&[("a", par_field)], ""),
        &[
            ("", json!({"a": 1.0, "refs": [0.0, 1.0]})),
            ("", json!({"a": 1.0, "refs": []})),
            ("", json!({"a": 1.0})),
        ],
        &[
            Ok((s1 + 0.5) / 2.0),
            Err("a: par: the reference list is empty"),
            Err("field `refs` is missing"),
        ],
        None,
    );
    // Transforms chain in order: clip then ceiling, and a term without transforms unchanged.
    let chain =
        r#"transform = [{ kind = "clip", low = 0, high = 10 }, { kind = "ceiling", max = 3 }]"#;
    check(
        &spec(&[("a", chain), ("b", "weight = 0.5")], ""),
        &[
            ("", json!({"a": -5.0, "b": 4.0})),
            ("", json!({"a": 7.0, "b": 0.0})),
        ],
        &[Ok(2.0), Ok(3.0)],
        None,
    );
}

#[test]
fn pooled_transforms() {
    let norm =
        r#"transform = [{ kind = "normalize", scope = "group", std = "population", epsilon = 0 }]"#;
    check(
        &spec(&[("a", norm)], ""),
        &[
            ("g1", json!({"a": 1.0})),
            ("g2", json!({"a": 2.0})),
            ("g1", json!({"a": 3.0})),
            ("g2", json!({"a": 2.0})),
            ("", json!({"a": 9.0})), // alone in its group
        ],
        &[Ok(-1.0), Ok(0.0), Ok(1.0), Ok(0.0), Ok(0.0)],
        None,
    );
    // An excluded sample is left out of its group's statistics.
    let norm_exclude = r#"non_score = { policy = "exclude" }
transform = [{ kind = "normalize", std = "population", epsilon = 0 }]"#;
    check(
        &spec(&[("a", norm_exclude)], ""),
        &[
            ("g", json!({"a": 1.0})),
            ("g", json!({})),
            ("g", json!({"a": 3.0})),
        ],
        &[Ok(-1.0), Err("excluded: a: no value"), Ok(1.0)],
        None,
    );
    // A substituted value takes part like a score.
    let norm_value = r#"non_score = { policy = "value", value = 5.0 }
transform = [{ kind = "normalize", std = "population", epsilon = 0, scope = "batch" }]"#;
    check(
        &spec(&[("a", norm_value)], ""),
        &[("", json!({"a": 1.0})), ("", json!({}))],
        &[Ok(-1.0), Ok(1.0)],
        None,
    );
    let min_max = r#"transform = [{ kind = "min_max", scope = "batch" }]"#;
    check(
        &spec(&[("a", min_max)], ""),
        &[
            ("x", json!({"a": 2.0})),
            ("y", json!({"a": 4.0})),
            ("z", json!({"a": 3.0})),
        ],
        &[Ok(0.0), Ok(1.0), Ok(0.5)],
        None,
    );
    // Sample std (the default) and ε = 1e-6 (the default): [1, 3] → ±1/(√2 + 1e-6).
    let default_norm = r#"transform = [{ kind = "normalize" }]"#;
    let d = 2f64.sqrt() + 1e-6;
    check(
        &spec(&[("a", default_norm)], ""),
        &[("g", json!({"a": 1.0})), ("g", json!({"a": 3.0}))],
        &[Ok(-1.0 / d), Ok(1.0 / d)],
        None,
    );
}

#[test]
fn combinations() {
    let ab = |a: f64, b: f64| ("g", json!({"a": a, "b": b}));
    let two = [("a", ""), ("b", "")];
    check(
        &spec(&two, "[combine]\nmethod = \"min\"\n"),
        &[ab(1.0, 2.0), ab(3.0, 0.0)],
        &[Ok(1.0), Ok(0.0)],
        None,
    );
    check(
        &spec(
            &[("a", "weight = 2.0"), ("b", "")],
            "[combine]\nmethod = \"product\"\n",
        ),
        &[ab(1.5, 2.0), ab(0.5, 0.5)],
        &[Ok(6.0), Ok(0.5)],
        None,
    );
    // Gate: b counts only where a ≥ 1.
    check(
        &spec(
            &[("a", ""), ("b", "weight = 3.0")],
            "[combine]\nmethod = \"gate\"\ngate = \"a\"\nthreshold = 1\notherwise = -1\n",
        ),
        &[ab(1.0, 0.5), ab(0.0, 0.5)],
        &[Ok(1.5), Ok(-1.0)],
        None,
    );
    // Hybrid: the rule where it scored, the model elsewhere, plus the other terms.
    let hybrid = spec(
        &[("a", ""), ("b", "weight = 0.5"), ("c", "weight = 0.1")],
        "[combine]\nmethod = \"hybrid\"\nrule = \"a\"\nmodel = \"b\"\n",
    );
    check(
        &hybrid,
        &[
            ("", json!({"a": 1.0, "b": 0.4, "c": 1.0})),
            ("", json!({"b": 0.4, "c": 0.0})),
            ("", json!({"a": 0.0, "c": 0.0})), // the rule decides; the model's non-score is unused
            ("", json!({"c": 0.0})),           // neither: the model's non-score propagates
        ],
        &[Ok(1.1), Ok(0.2), Ok(0.0), Err("b: no value")],
        None,
    );
    let pooled = "std = \"population\"\nepsilon = 0\nscope = \"batch\"\n";
    check(
        &spec(
            &two,
            &format!("[combine]\nmethod = \"sum_then_normalize\"\n{pooled}"),
        ),
        &[ab(1.0, 10.0), ab(3.0, 30.0)],
        &[Ok(-1.0), Ok(1.0)],
        None,
    );
    check(
        &spec(
            &two,
            &format!("[combine]\nmethod = \"normalize_then_sum\"\n{pooled}"),
        ),
        &[ab(1.0, 10.0), ab(3.0, 30.0)],
        &[Ok(-2.0), Ok(2.0)],
        None,
    );
    // Constrained, μ = 0: λ = σ(0) = 0.5, reward = (1 − 0.5)·a + 0.5·b.
    check(
        &spec(
            &two,
            "[combine]\nmethod = \"constrained\"\nbase = \"a\"\nthresholds = { b = 0.5 }\n",
        ),
        &[ab(2.0, 4.0)],
        &[Ok(3.0)],
        None,
    );
    // Conjunction (Wang et al. eq. 6) is log-sigmoid centring per term, then the sum.
    let lsc = |r: f64| format!("transform = [{{ kind = \"log_sigmoid\", reference = {r:?} }}]");
    check(
        &spec(&[("a", &lsc(1.0)), ("b", &lsc(-1.0))], ""),
        &[ab(1.0, -1.0)],
        &[Ok(-2.0 * LN2)],
        None,
    );
}

#[test]
fn lexicographic_scalarisation() {
    // Order a (higher better) > b (lower better, margin 1): net win rate within each group.
    let text = spec(
        &[("a", ""), ("b", "")],
        "[combine]\nmethod = \"lexicographic\"\norder = [\"a\", \"b\"]\nmargins = [0, 1]\nlower_is_better = [\"b\"]\n",
    );
    let ab = |g: &'static str, a: f64, b: f64| (g, json!({"a": a, "b": b}));
    check(
        &text,
        &[
            ab("g", 1.0, 5.0), // beats s2 (a) and s1 (b shorter by 2): 2/3, ties s3
            ab("g", 1.0, 7.0), // loses to s0 and s3, beats s2: −1/3
            ab("g", 0.0, 1.0), // loses to all: −1
            ab("g", 1.0, 5.5), // like s0: 2/3
            ab("h", 3.0, 0.0), // alone: 0
        ],
        &[
            Ok(2.0 / 3.0),
            Ok(-1.0 / 3.0),
            Ok(-1.0),
            Ok(2.0 / 3.0),
            Ok(0.0),
        ],
        None,
    );
    // Across the batch, with HERON's margins (σ_mult × population std, none at level 1): a
    // decides nothing (all equal); b = [0, 4, 1, 3] has std √2.5 ≈ 1.58, so differences of 1
    // are ties and differences of 2 or more decide.
    let text = spec(
        &[("a", ""), ("b", "")],
        "[combine]\nmethod = \"lexicographic\"\norder = [\"a\", \"b\"]\nsigma_mult = 1.0\nscope = \"batch\"\n",
    );
    check(
        &text,
        &[
            ab("", 1.0, 0.0),
            ab("", 1.0, 4.0),
            ab("", 1.0, 1.0),
            ab("", 1.0, 3.0),
        ],
        // s1 (4) beats s0, s2; s3 (3) beats s0, s2; s0 and s2 tie and lose to both.
        &[Ok(-2.0 / 3.0), Ok(2.0 / 3.0), Ok(-2.0 / 3.0), Ok(2.0 / 3.0)],
        None,
    );
    error(
        &spec(
            &[("a", ""), ("b", "")],
            "[combine]\nmethod = \"lexicographic\"\norder = [\"a\"]\n",
        ),
        &["combine.order", "`b` is missing"],
    );
    error(
        &spec(
            &[("a", "weight = 2.0"), ("b", "")],
            "[combine]\nmethod = \"lexicographic\"\norder = [\"a\", \"b\"]\n",
        ),
        &["term[0].weight"],
    );
    error(
        &spec(
            &[("a", ""), ("b", "")],
            "[combine]\nmethod = \"lexicographic\"\norder = [\"a\", \"b\"]\nmargins = [0.0]\n",
        ),
        &["combine.margins"],
    );
    error(
        &spec(
            &[("a", ""), ("b", "")],
            "[combine]\nmethod = \"lexicographic\"\norder = [\"a\", \"a\"]\n",
        ),
        &["combine.order[1]", "twice"],
    );
}

#[test]
fn advantages_per_group() {
    let a = |g: &'static str, x: f64| (g, json!({ "a": x }));
    let grpo = "[advantages]\nestimator = \"grpo\"\nstd = \"population\"\nepsilon = 0\n";
    check(
        &spec(&[("a", "")], grpo),
        &[
            a("g1", 1.0),
            a("g2", 3.0),
            a("g1", 0.0),
            a("g2", 5.0),
            a("g3", 7.0),
        ],
        &[Ok(1.0), Ok(3.0), Ok(0.0), Ok(5.0), Ok(7.0)],
        Some(&[1.0, -1.0, -1.0, 1.0, 0.0]),
    );
    check(
        &spec(&[("a", "")], "[advantages]\nestimator = \"rloo\"\n"),
        &[a("g", 1.0), a("g", 0.0), a("g", 0.0), a("g", 0.0)],
        &[Ok(1.0), Ok(0.0), Ok(0.0), Ok(0.0)],
        Some(&[1.0, -1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0]),
    );
    // A non-score reward is masked (NaN advantage) and left out of the group mean.
    check(
        &spec(&[("a", "")], "[advantages]\nestimator = \"dr_grpo\"\n"),
        &[a("g", 1.0), ("g", json!({})), a("g", 3.0)],
        &[Ok(1.0), Err("a: no value"), Ok(3.0)],
        Some(&[-1.0, f64::NAN, 1.0]),
    );
    // Advantages of a transformed, combined reward.
    check(
        &spec(
            &[("a", "transform = [{ kind = \"clip\", low = 0, high = 1 }]")],
            "[advantages]\nestimator = \"dr_grpo\"\n",
        ),
        &[a("g", 5.0), a("g", 0.0)],
        &[Ok(1.0), Ok(0.0)],
        Some(&[0.5, -0.5]),
    );
}

#[test]
fn batch_pass_refuses_what_does_not_fit() {
    let p = build(&spec(&[("a", "")], "[advantages]\nestimator = \"grpo\"\n")).unwrap();
    let samples = samples(&[("", json!({"a": 1.0}))]);
    let scored = p.score_batch(&samples);
    let inputs: Vec<_> = samples.iter().map(|s| p.shape_input(s)).collect();
    let e = p.shape(&scored, &inputs).unwrap_err().to_string();
    assert!(e.contains("no sample has a group id"), "{e}");
    let e = p.shape(&scored, &[]).unwrap_err().to_string();
    assert!(e.contains("0 shape inputs for 1"), "{e}");
    // REINFORCE++ without a baseline needs no groups.
    let p = build(&spec(
        &[("a", "")],
        "[advantages]\nestimator = \"reinforce_pp\"\n",
    ))
    .unwrap();
    let shaped = p.shape(&scored, &inputs).unwrap();
    assert_eq!(shaped.advantages.unwrap(), [0.0]);
}

#[test]
fn multipliers_are_reported_and_restored() {
    let text = spec(
        &[("a", ""), ("b", "")],
        "[combine]\nmethod = \"constrained\"\nbase = \"a\"\nthresholds = { b = 0.5 }\n",
    );
    let p = build(&text).unwrap();
    let samples = samples(&[
        ("", json!({"a": 1.0, "b": 0.0})),
        ("", json!({"a": 1.0, "b": 0.4})),
    ]);
    let scored = p.score_batch(&samples);
    let inputs: Vec<_> = samples.iter().map(|s| p.shape_input(s)).collect();
    let report = p.shape(&scored, &inputs).unwrap().multipliers.unwrap();
    assert_eq!(report.used, [0.5]);
    assert!(close(report.means[0], 0.2));
    // Violated (0.2 < 0.5): μ rises by lr·(0.5 − 0.2)·σ'(0) = 0.1·0.3·0.25.
    let next = report.next.unwrap();
    assert!(close(next.mu[0], 0.0075), "{next:?}");
    // A spec pointing at the saved state starts from it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        serde_json::to_string(&next).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        format!("{text}state_file = \"state.json\"\n"),
    )
    .unwrap();
    let spec = Spec::from_path(dir.path().join("s.toml")).unwrap();
    let p = Pipeline::build_with(&spec, &registry()).unwrap();
    let report = p.shape(&scored, &inputs).unwrap().multipliers.unwrap();
    assert!(close(report.used[0], 1.0 / (1.0 + (-0.0075f64).exp())));
    // The spec's learning rate and momentum drive the next step from the restored state (the
    // file's are those it was saved with): lr 1, momentum 0 → μ = 0.0075 + 1·0.3·σ'(μ).
    let retuned = format!("{text}learning_rate = 1.0\nmomentum = 0.0\n");
    std::fs::write(
        dir.path().join("s.toml"),
        format!("{retuned}state_file = \"state.json\"\n"),
    )
    .unwrap();
    let spec = Spec::from_path(dir.path().join("s.toml")).unwrap();
    let p = Pipeline::build_with(&spec, &registry()).unwrap();
    let next = p
        .shape(&scored, &inputs)
        .unwrap()
        .multipliers
        .unwrap()
        .next
        .unwrap();
    let lambda = 1.0 / (1.0 + (-0.0075f64).exp());
    assert!(
        close(next.mu[0], 0.0075 + 0.3 * lambda * (1.0 - lambda)),
        "{next:?}"
    );
    assert_eq!((next.learning_rate, next.momentum), (1.0, 0.0));
    // A state saved under another squash is refused (μ would mean another λ).
    std::fs::write(
        dir.path().join("s.toml"),
        format!("{}squash = \"tanh\"\nstate_file = \"state.json\"\n", text),
    )
    .unwrap();
    let spec = Spec::from_path(dir.path().join("s.toml")).unwrap();
    let e = Pipeline::build_with(&spec, &registry())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("combine.state_file") && e.contains("squash"),
        "{e}"
    );
    // A state for other thresholds is refused.
    std::fs::write(
        dir.path().join("s.toml"),
        format!(
            "{}state_file = \"state.json\"\n",
            text.replace("b = 0.5", "b = 0.7")
        ),
    )
    .unwrap();
    let spec = Spec::from_path(dir.path().join("s.toml")).unwrap();
    let e = Pipeline::build_with(&spec, &registry())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("combine.state_file") && e.contains("thresholds"),
        "{e}"
    );
}

#[test]
fn bad_shaping_is_refused_with_the_key() {
    let one = |extra: &str| spec(&[("a", extra)], "");
    error(
        &one("transform = [{ kind = \"squash\" }]"),
        &["t.toml", "squash"],
    );
    error(
        &one("transform = [{ kind = \"clip\", low = 0, high = 1, hgh = 2 }]"),
        &["t.toml", "hgh"],
    );
    error(
        &one("transform = [{ kind = \"clip\", low = 2, high = 1 }]"),
        &["term[0].transform[0]", "above"],
    );
    error(
        &one("transform = [{ kind = \"ceiling\", max = 1 }, { kind = \"clip\", low = nan, high = 1 }]"),
        &["term[0].transform[1]", "finite"],
    );
    error(
        &one("transform = [{ kind = \"par\", references = [1.0], reference_field = \"r\" }]"),
        &["term[0].transform[0]", "exactly one"],
    );
    error(
        &one("transform = [{ kind = \"par\", references = [1.0], k = 0 }]"),
        &["term[0].transform[0]", "`k`"],
    );
    error(
        &one("transform = [{ kind = \"log_sigmoid\", reference_field = \"r\", reference_quantile = { method = \"normal\", q = 1.0 } }]"),
        &["term[0].transform[0]", "reference_quantile"],
    );
    error(
        &one("transform = [{ kind = \"log_sigmoid\", reference_field = \"a..b\" }]"),
        &["term[0].transform[0]", "dotted"],
    );
    error(
        &one("transform = [{ kind = \"normalize\", scope = \"prompt\" }]"),
        &["t.toml", "prompt"],
    );
    error(
        &spec(
            &[("a", ""), ("b", "")],
            "[combine]\nmethod = \"gate\"\ngate = \"c\"\nthreshold = 1\n",
        ),
        &["combine.gate", "terms: a, b"],
    );
    error(
        &spec(&[("a", "")], "[combine]\nmethod = \"median\"\n"),
        &["t.toml", "median"],
    );
    error(
        &spec(
            &[("a", ""), ("b", "")],
            "[combine]\nmethod = \"hybrid\"\nrule = \"a\"\nmodel = \"a\"\n",
        ),
        &["combine.model"],
    );
    error(
        &spec(
            &[("a", ""), ("b", ""), ("c", "")],
            "[combine]\nmethod = \"constrained\"\nbase = \"a\"\nthresholds = { b = 0.5 }\n",
        ),
        &["combine.thresholds", "`c` has none"],
    );
    error(
        &spec(
            &[("a", ""), ("b", "")],
            "[combine]\nmethod = \"constrained\"\nbase = \"a\"\nthresholds = { b = 0.5 }\nmomentum = 1.5\n",
        ),
        &["`combine`", "momentum"],
    );
    error(
        &spec(
            &[("a", "")],
            "[advantages]\nestimator = \"rloo\"\nscale = \"batch\"\n",
        ),
        &["advantages.scale"],
    );
    error(
        &spec(
            &[("a", "")],
            "[advantages]\nestimator = \"dr_grpo\"\nepsilon = 1e-6\n",
        ),
        &["advantages.epsilon", "does not divide by a std"],
    );
    error(
        &spec(
            &[("a", "")],
            "[advantages]\nestimator = \"rloo\"\nstd = \"population\"\n",
        ),
        &["advantages.std", "grpo, oprl, reinforce_pp"],
    );
    error(
        &spec(
            &[("a", "")],
            "[advantages]\nestimator = \"grpo\"\nepsilon = -1\n",
        ),
        &["advantages.epsilon"],
    );
    error(
        &spec(&[("a", "")], "[advantages]\nestimator = \"ppo\"\n"),
        &["t.toml", "ppo"],
    );
    error(
        &spec(
            &[("a", "")],
            "[advantages]\nestimator = \"grpo\"\ncolumn = \"a b\"\n",
        ),
        &["advantages.column"],
    );
}

#[test]
fn describe_shows_the_resolved_transforms() {
    let p = build(&spec(
        &[
            (
                "a",
                "transform = [{ kind = \"clip\", low = -1, high = 1 }, { kind = \"normalize\" }]",
            ),
            ("b", "weight = 0.5"),
        ],
        "[combine]\nmethod = \"gate\"\ngate = \"a\"\nthreshold = 0\n[advantages]\nestimator = \"rloo\"\n",
    ))
    .unwrap();
    let text = p.describe();
    for needle in [
        "reward = if a′ ≥ 0: 0.5 × b else 0",
        "transform 1: clip to [-1, 1]",
        "transform 2: (x − mean)/(sample std + 0.000001) per group [pooled]",
        "pooled stages",
        "advantages → column `advantage`: Rloo",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
}

#[test]
fn per_sample_shaping_is_batched_equal_single() {
    let p = build(&spec(
        &[
            (
                "a",
                "transform = [{ kind = \"par\", reference_field = \"refs\", k = 3 }]",
            ),
            (
                "b",
                "non_score = { policy = \"value\", value = -1 }\nweight = 0.25",
            ),
        ],
        "",
    ))
    .unwrap();
    let rows: Vec<(&str, Value)> = (0..200)
        .map(|i| {
            let x = i as f64 * 0.37 - 30.0;
            let fields = if i % 7 == 0 {
                json!({"a": x, "refs": [1.0, x / 2.0]})
            } else {
                json!({"a": x, "b": x * x, "refs": [0.5]})
            };
            ("", fields)
        })
        .collect();
    let samples = samples(&rows);
    let batched = p.score_batch(&samples);
    let single: Vec<_> = samples.iter().map(|s| p.score_one(s)).collect();
    assert_eq!(batched, single);
}

/// Scores `rows` with the pipeline and runs one batch pass; the rewards, with NaN for non-scores.
fn pass(p: &Pipeline, rows: &[(&str, Value)]) -> (Vec<f64>, rewardkit::Shaped) {
    let samples = samples(rows);
    let scored = p.score_batch(&samples);
    let inputs: Vec<_> = samples.iter().map(|s| p.shape_input(s)).collect();
    let shaped = p.shape(&scored, &inputs).unwrap();
    let values = shaped
        .rewards
        .iter()
        .map(|o| o.value().unwrap_or(f64::NAN))
        .collect();
    (values, shaped)
}

fn all_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.is_nan() && w.is_nan()) || close(*g, *w),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn running_transforms_carry_state_across_batches_and_files() {
    let a = |x: f64| ("", json!({ "a": x }));
    let dir = tempfile::tempdir().unwrap();
    let text = spec(
        &[(
            "a",
            "transform = [{ kind = \"normalize_running\", std = \"population\", epsilon = 0.0, state_file = \"run.json\" }]",
        )],
        "",
    );
    std::fs::write(dir.path().join("s.toml"), &text).unwrap();
    let spec_path = dir.path().join("s.toml");
    let p = Pipeline::build_with(&Spec::from_path(&spec_path).unwrap(), &registry()).unwrap();
    // Batch 1: {1, 3}: μ 2, σ 1. Batch 2 adds 5: μ 3, σ √(8/3).
    let (first, _) = pass(&p, &[a(1.0), a(3.0)]);
    all_close(&first, &[-1.0, 1.0]);
    assert!(
        p.pooled_stages()[0].contains("stateful"),
        "{:?}",
        p.pooled_stages()
    );
    // Saved after batch 1.
    assert_eq!(p.save_state().unwrap().len(), 1);
    assert_eq!(p.transform_states()[0].state["count"], 2);
    let (second, _) = pass(&p, &[a(5.0)]);
    all_close(&second, &[2.0 / (8.0f64 / 3.0).sqrt()]);
    // A fresh pipeline built from the file saved after batch 1 continues the same way.
    let fresh = Pipeline::build_with(&Spec::from_path(&spec_path).unwrap(), &registry()).unwrap();
    let (again, _) = pass(&fresh, &[a(5.0)]);
    assert_eq!(again, second);
    // A corrupt state file is refused with the key and the file.
    std::fs::write(dir.path().join("run.json"), "{\"count\": 2}").unwrap();
    let e = Pipeline::build_with(&Spec::from_path(&spec_path).unwrap(), &registry())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("term[0].transform[0].state_file") && e.contains("run.json"),
        "{e}"
    );

    // Clip and min-max with running statistics (state in the pipeline only).
    let clip = build(&spec(
        &[(
            "a",
            "transform = [{ kind = \"clip_running\", std = \"population\" }]",
        )],
        "",
    ))
    .unwrap();
    all_close(&pass(&clip, &[a(0.0), a(2.0)]).0, &[0.0, 2.0]);
    all_close(&pass(&clip, &[a(10.0)]).0, &[4.0 + (56.0f64 / 3.0).sqrt()]);
    let mm = build(&spec(
        &[("a", "transform = [{ kind = \"min_max_running\" }]")],
        "",
    ))
    .unwrap();
    all_close(&pass(&mm, &[a(1.0), a(3.0)]).0, &[0.0, 1.0]);
    all_close(
        &pass(&mm, &[a(2.0), a(5.0), a(f64::NAN)]).0,
        &[0.25, 1.0, f64::NAN],
    );
}

#[test]
fn oni_count_decay_and_mm_rlhf_scaling() {
    // ONI: r = 10·ext + 0.4·int/N³, N counted over batches by the `msg` field.
    let text = spec(
        &[
            ("ext", "weight = 10.0"),
            (
                "int",
                "weight = 0.4\ntransform = [{ kind = \"count_decay\", key_field = \"msg\" }]",
            ),
        ],
        "",
    );
    let p = build(&text).unwrap();
    let row = |ext: f64, int: f64, msg: &str| ("", json!({"ext": ext, "int": int, "msg": msg}));
    let (r, _) = pass(
        &p,
        &[
            row(0.0, 1.0, "hi"),
            row(1.0, 1.0, "hi"),
            row(0.0, 1.0, "new"),
        ],
    );
    all_close(&r, &[0.4 / 8.0, 10.0 + 0.4 / 8.0, 0.4]);
    let (r, _) = pass(&p, &[row(0.0, 1.0, "hi")]);
    all_close(&r, &[0.4 / 27.0]);
    assert_eq!(p.transform_states()[0].state["counts"]["hi"], 3);
    // A sample without the key does not score, and says why.
    let (r, shaped) = pass(&p, &[("", json!({"ext": 0.0, "int": 1.0}))]);
    assert!(r[0].is_nan());
    let reason = shaped.rewards[0].reason().unwrap();
    assert!(
        reason.contains("count_decay") && reason.contains("msg"),
        "{reason}"
    );

    // MM-RLHF: β(δ) = 0.1·(1 + 0.1·(1 − e^{−δ})), per sample.
    check(
        &spec(&[("a", "transform = [{ kind = \"dynamic_beta\" }]")], ""),
        &[("", json!({"a": 0.0})), ("", json!({"a": 2.0}))],
        &[Ok(0.1), Ok(0.1 * (1.0 + 0.1 * (1.0 - (-2.0f64).exp())))],
        None,
    );
}

#[test]
fn reference_rewards_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("refs.jsonl"),
        "{\"group\": \"p1\", \"reward\": 0.0}\n{\"group\": \"p1\", \"reward\": 2.0}\n\n{\"group\": \"p2\", \"reward\": [1.0]}\n{\"group\": \"p2\", \"reward\": null}\n",
    )
    .unwrap();
    let build_in = |extra: &str| {
        let path = dir.path().join("s.toml");
        std::fs::write(&path, spec(&[("a", extra)], "")).unwrap();
        Spec::from_path(&path)
            .map_err(|e| e.to_string())
            .and_then(|s| Pipeline::build_with(&s, &registry()).map_err(|e| e.to_string()))
    };
    // PAR over the file's references of the sample's group: p1 → {0, 2}, p2 → {1}.
    let p = build_in("transform = [{ kind = \"par\", reference_file = \"refs.jsonl\" }]").unwrap();
    let (r, shaped) = pass(
        &p,
        &[
            ("p1", json!({"a": 1.0})),
            ("p2", json!({"a": 1.0})),
            ("p9", json!({"a": 1.0})),
        ],
    );
    all_close(&r[..2], &[0.5, 0.5]);
    assert!(shaped.rewards[2]
        .reason()
        .unwrap()
        .contains("no reference rewards for `group` = \"p9\""));
    // Log-sigmoid with the normal-fit quantile, keyed by a sample field instead.
    std::fs::write(
        dir.path().join("by_id.jsonl"),
        "{\"id\": 7, \"reward\": [1.0, 3.0]}\n",
    )
    .unwrap();
    let p = build_in(
        "transform = [{ kind = \"log_sigmoid\", reference_file = \"by_id.jsonl\", reference_key = \"id\", reference_quantile = { method = \"normal\", q = 0.5 } }]",
    )
    .unwrap();
    let (r, _) = pass(&p, &[("", json!({"a": 2.0, "id": 7}))]);
    all_close(&r, &[-LN2]);
    // Bad files are refused with file:line and the field.
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"group\": \"p\", \"reward\": 1}\n{\"group\": \"p\", \"reward\": \"x\"}\n",
    )
    .unwrap();
    let e = build_in("transform = [{ kind = \"par\", reference_file = \"bad.jsonl\" }]")
        .err()
        .unwrap();
    assert!(
        e.contains("term[0].transform[0].reference_file")
            && e.contains("bad.jsonl:2")
            && e.contains("`reward`"),
        "{e}"
    );
    std::fs::write(dir.path().join("bad.jsonl"), "{\"reward\": 1}\n").unwrap();
    let e = build_in("transform = [{ kind = \"par\", reference_file = \"bad.jsonl\" }]")
        .err()
        .unwrap();
    assert!(
        e.contains("bad.jsonl:1") && e.contains("`group` is missing"),
        "{e}"
    );
    let e = build_in("transform = [{ kind = \"par\", reference_file = \"none.jsonl\" }]")
        .err()
        .unwrap();
    assert!(e.contains("none.jsonl"), "{e}");
    let e = build_in(
        "transform = [{ kind = \"par\", reference_file = \"refs.jsonl\", references = [1.0] }]",
    )
    .err()
    .unwrap();
    assert!(e.contains("exactly one of"), "{e}");
    let e =
        build_in("transform = [{ kind = \"par\", references = [1.0], reference_key = \"id\" }]")
            .err()
            .unwrap();
    assert!(
        e.contains("`reference_key` applies to a `reference_file` only"),
        "{e}"
    );
}

#[test]
fn conjunction_sums_log_sigmoid_centred_terms() {
    let ls = |x: f64| -(1.0 + (-x).exp()).ln();
    let centred = |r: f64| format!("transform = [{{ kind = \"log_sigmoid\", reference = {r:?} }}]");
    let text = spec(
        &[("a", &centred(1.0)), ("b", &centred(-1.0))],
        "[combine]\nmethod = \"conjunction\"\n",
    );
    check(
        &text,
        &[
            ("", json!({"a": 1.0, "b": 1.0})),
            ("", json!({"a": 4.0, "b": -3.0})),
        ],
        &[Ok(-LN2 + ls(2.0)), Ok(ls(3.0) + ls(-2.0))],
        None,
    );
    error(
        &spec(
            &[("a", &centred(1.0)), ("b", "")],
            "[combine]\nmethod = \"conjunction\"\n",
        ),
        &["term[1].transform", "log_sigmoid"],
    );
    error(
        &spec(
            &[("a", &format!("weight = 2.0\n{}", centred(1.0)))],
            "[combine]\nmethod = \"conjunction\"\n",
        ),
        &["term[0].weight", "unweighted"],
    );
}

#[test]
fn field_and_self_aligned_terms_from_the_default_registry() {
    let text = "[[term]]\nname = \"task\"\nkind = \"field\"\noptions = { field = \"score\" }\n\
        [[term]]\nname = \"sar\"\nkind = \"self_aligned_reward\"\nweight = 0.2\n\
        options = { logprobs_without_query = \"lp.alone\", logprobs_with_query = \"lp.given\" }\n";
    let spec = Spec::from_toml_str(text, "t.toml").unwrap();
    let p = Pipeline::build(&spec).unwrap();
    let half = std::f64::consts::LN_2;
    let mut s = Sample::new("q", "a");
    s.metadata =
        json!({"score": 1, "lp": {"alone": [-1.0, -1.0], "given": [-1.0 + half, -1.0 + half]}})
            .as_object()
            .unwrap()
            .clone();
    // The query halves the perplexity: R_SA = 0.5; total 1 + 0.2·0.5.
    let scored = p.score_one(&s);
    assert!(close(scored.reward.value().unwrap(), 1.1), "{scored:?}");
    s.metadata["lp"]["given"] = json!([]);
    let scored = p.score_one(&s);
    assert!(scored.terms[1]
        .outcome
        .reason()
        .unwrap()
        .contains("`lp.given` is an empty list"));
    s.metadata["lp"]["given"] = json!([-1.0, "x"]);
    let scored = p.score_one(&s);
    assert!(scored.terms[1]
        .outcome
        .reason()
        .unwrap()
        .contains("`lp.given`[1]"));
    s.metadata.remove("score");
    assert!(p.score_one(&s).terms[0]
        .outcome
        .reason()
        .unwrap()
        .contains("`score` is missing"));
    let bad = "[[term]]\nname = \"x\"\nkind = \"self_aligned_reward\"\noptions = { logprobs_with_query = \"a\" }\n";
    let e = Pipeline::build(&Spec::from_toml_str(bad, "t.toml").unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("logprobs_without_query"), "{e}");
}
