//! The HelpSteer2-Preference recipe end to end on the bundled example data: regression on the
//! helpfulness ratings, scaled Bradley–Terry started from it (`train --init`), ExPO between the
//! two (`rewardkit expo`), and the result scoring through a spec; the training curves.

mod common;
use common::{fails_with, json_lines, ok, repo, write};

use std::collections::HashMap;
use std::path::Path;

use rewardkit_model::{Device, RewardModel};

/// Small and fast settings for the tests (a debug build).
const SMALL: &[&str] = &[
    "--buckets",
    "4096",
    "--width",
    "8",
    "--head",
    "linear",
    "--no-progress",
];

fn train(args: &[&str]) -> String {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    all.extend_from_slice(SMALL);
    ok(&all)
}

fn weights(dir: &Path) -> HashMap<String, Vec<f32>> {
    RewardModel::load(dir, &Device::Cpu)
        .unwrap()
        .named_tensors()
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn regression_then_scaled_bt_from_it_then_expo() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, sbt, expo) = (
        dir.path().join("reg"),
        dir.path().join("sbt"),
        dir.path().join("expo"),
    );
    let ratings = repo("examples/helpsteer-ratings.jsonl");
    let pairs = repo("examples/helpsteer-pairs.jsonl");

    // 1. Regression on the helpfulness ratings (one output, so that BT can continue from it).
    train(&[
        "--data",
        path(&ratings),
        "--objective",
        "regression",
        "--attributes",
        "helpfulness",
        "--val-last",
        "8",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--out",
        path(&reg),
    ]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["0"], "helpfulness");

    // `--init` starts from the regression weights: with a negligible learning rate they stay.
    let still = dir.path().join("still");
    train(&[
        "--data",
        path(&pairs),
        "--objective",
        "scaled-bt",
        "--init",
        path(&reg),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e-12",
        "--out",
        path(&still),
    ]);
    let (start, after) = (weights(&reg), weights(&still));
    assert_eq!(start.len(), after.len());
    for (name, values) in &start {
        let moved = values
            .iter()
            .zip(&after[name])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved < 1e-6, "{name} moved by {moved}");
    }

    // 2. Scaled BT (loss × preference strength) from the regression model.
    let stdout = train(&[
        "--data",
        path(&pairs),
        "--objective",
        "scaled-bt",
        "--init",
        path(&reg),
        "--val-last",
        "4",
        "--epochs",
        "6",
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--out",
        path(&sbt),
    ]);
    assert!(stdout.contains("validation: accuracy"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sbt.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["0"], "reward", "BT's output is a reward");
    // The training curve: losses and accuracy for BT, losses only for regression.
    let curve = std::fs::read_to_string(sbt.join("training-curve.svg")).unwrap();
    assert!(
        curve.starts_with("<svg") && curve.contains("validation accuracy"),
        "{curve}"
    );
    let curve = std::fs::read_to_string(reg.join("training-curve.svg")).unwrap();
    assert!(curve.contains("validation loss") && !curve.contains("validation accuracy"));
    assert!(
        !still.join("training-curve.svg").exists(),
        "no validation, no curve"
    );

    // 3. ExPO: θ = θ_reg + α(θ_sbt − θ_reg).
    let alpha = 1.5f32;
    let stdout = ok(&[
        "expo",
        "--from",
        path(&reg),
        "--to",
        path(&sbt),
        "--alpha",
        "1.5",
        "--out",
        path(&expo),
    ]);
    assert!(stdout.contains("wrote"), "{stdout}");
    let (a, b, c) = (weights(&reg), weights(&sbt), weights(&expo));
    for (name, xa) in &a {
        for i in 0..xa.len() {
            let expected = xa[i] + alpha * (b[name][i] - xa[i]);
            assert!(
                (c[name][i] - expected).abs() <= 1e-6 * expected.abs().max(1.0),
                "{name}[{i}]"
            );
        }
    }

    // The extrapolated model scores through a spec.
    let spec = write(
        dir.path(),
        "spec.toml",
        format!(
            "[[term]]\nname = \"rm\"\nkind = \"model\"\n[term.options]\npath = {:?}\n",
            path(&expo)
        ),
    );
    let scored = dir.path().join("scored.jsonl");
    ok(&[
        "score",
        "--spec",
        &spec,
        "--input",
        path(&repo("examples/model-rollouts.jsonl")),
        "--output",
        path(&scored),
    ]);
    let rows = json_lines(&scored);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["rm.outcome"] == "scored"), "{rows:?}");
}

#[test]
fn mismatched_models_and_outputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = repo("examples/helpsteer-ratings.jsonl");
    let pairs = repo("examples/helpsteer-pairs.jsonl");
    let (two, narrow, wide) = (
        dir.path().join("two"),
        dir.path().join("narrow"),
        dir.path().join("wide"),
    );
    train(&[
        "--data",
        path(&ratings),
        "--objective",
        "regression",
        "--attributes",
        "helpfulness,correctness",
        "--epochs",
        "1",
        "--out",
        path(&two),
    ]);
    // BT needs one output; a two-attribute model has two.
    fails_with(
        &[
            "train",
            "--data",
            path(&pairs),
            "--objective",
            "bt",
            "--init",
            path(&two),
            "--no-progress",
            "--out",
            path(&dir.path().join("x")),
        ],
        &[
            "--init",
            "2 output(s) (helpfulness, correctness)",
            "needs 1 (reward)",
        ],
    );
    fails_with(
        &[
            "train",
            "--data",
            path(&pairs),
            "--init",
            path(&dir.path().join("nowhere")),
            "--no-progress",
            "--out",
            path(&dir.path().join("y")),
        ],
        &["--init", "nowhere", "config.json"],
    );
    // ExPO between networks of different widths.
    for (out, width) in [(&narrow, "4"), (&wide, "8")] {
        ok(&[
            "train",
            "--data",
            path(&pairs),
            "--epochs",
            "1",
            "--buckets",
            "4096",
            "--width",
            width,
            "--no-progress",
            "--out",
            path(out),
        ]);
    }
    fails_with(
        &[
            "expo",
            "--from",
            path(&narrow),
            "--to",
            path(&wide),
            "--alpha",
            "1.5",
            "--out",
            path(&dir.path().join("z")),
        ],
        &["`backbone.width`", "same network"],
    );
    fails_with(
        &[
            "expo",
            "--from",
            path(&two),
            "--to",
            path(&wide),
            "--alpha",
            "1.5",
            "--out",
            path(&dir.path().join("z")),
        ],
        &["`num_labels`"],
    );
    assert!(
        !dir.path().join("z").exists(),
        "a refused expo writes nothing"
    );
}
