//! Combinations of several reward terms into one reward per sample.
//!
//! Terms are columns: `terms[i][s]` is term `i`'s reward for sample `s`. A sample with any
//! non-finite term gets NaN (masked) from every combination here except [`gate`], which only looks
//! at the term it selects.

use crate::transform::{log_sigmoid_centred, normalize, Scope};
use crate::{ShapeError, StdKind};

fn check_terms(terms: &[&[f64]], weights: Option<&[f64]>) -> Result<usize, ShapeError> {
    let Some(first) = terms.first() else {
        return Err(ShapeError::invalid("terms", 0, "at least one term"));
    };
    for term in terms {
        ShapeError::check_len("term", term.len(), first.len(), "sample of the first term")?;
    }
    if let Some(weights) = weights {
        ShapeError::check_len("weights", weights.len(), terms.len(), "term")?;
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(ShapeError::invalid("weights", w, "finite weights"));
        }
    }
    Ok(first.len())
}

fn per_sample(
    terms: &[&[f64]],
    n: usize,
    f: impl Fn(&mut dyn Iterator<Item = f64>) -> f64,
) -> Vec<f64> {
    (0..n)
        .map(|s| {
            if terms.iter().any(|t| !t[s].is_finite()) {
                f64::NAN
            } else {
                f(&mut terms.iter().map(|t| t[s]))
            }
        })
        .collect()
}

/// `Σ_i w_i·r_i`.
pub fn weighted_sum(terms: &[&[f64]], weights: &[f64]) -> Result<Vec<f64>, ShapeError> {
    let n = check_terms(terms, Some(weights))?;
    Ok((0..n)
        .map(|s| {
            let mut sum = 0.0;
            for (term, w) in terms.iter().zip(weights) {
                if !term[s].is_finite() {
                    return f64::NAN;
                }
                sum += w * term[s];
            }
            sum
        })
        .collect())
}

/// Sum, then normalise: `normalize(Σ_i w_i·r_i)` (the scale of the total is fixed, the terms keep
/// their relative scales).
pub fn sum_then_normalize(
    terms: &[&[f64]],
    weights: &[f64],
    scope: Scope<'_>,
    std: StdKind,
    epsilon: f64,
) -> Result<Vec<f64>, ShapeError> {
    normalize(&weighted_sum(terms, weights)?, scope, std, epsilon)
}

/// Normalise, then sum: `Σ_i w_i·normalize(r_i)` (each term contributes on the same scale, so the
/// weights mean what they say; the GDPO-style decoupled normalisation).
pub fn normalize_then_sum(
    terms: &[&[f64]],
    weights: &[f64],
    scope: Scope<'_>,
    std: StdKind,
    epsilon: f64,
) -> Result<Vec<f64>, ShapeError> {
    check_terms(terms, Some(weights))?;
    let normalized = terms
        .iter()
        .map(|t| normalize(t, scope, std, epsilon))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<&[f64]> = normalized.iter().map(Vec::as_slice).collect();
    weighted_sum(&views, weights)
}

/// Conjunction (Wang et al. 2024, eq. 6): `u = Σ_i log σ(r_i − r_ref,i)`, the log of the product
/// of the per-property "good" probabilities, so one property far below its reference cannot be
/// bought back by another far above. `references[i][s]` is term `i`'s reference reward for
/// sample `s`'s prompt.
pub fn conjunction(terms: &[&[f64]], references: &[&[f64]]) -> Result<Vec<f64>, ShapeError> {
    let n = check_terms(terms, None)?;
    ShapeError::check_len("references", references.len(), terms.len(), "term")?;
    for reference in references {
        ShapeError::check_len("reference", reference.len(), n, "sample")?;
    }
    Ok((0..n)
        .map(|s| {
            terms
                .iter()
                .zip(references)
                .map(|(t, r)| log_sigmoid_centred(t[s], r[s]))
                .sum()
        })
        .collect())
}

/// The smallest term (the weakest property decides).
pub fn minimum(terms: &[&[f64]]) -> Result<Vec<f64>, ShapeError> {
    let n = check_terms(terms, None)?;
    Ok(per_sample(terms, n, |it| it.fold(f64::INFINITY, f64::min)))
}

/// The product of the terms (for terms in [0, 1]: the probability that all hold).
pub fn product(terms: &[&[f64]]) -> Result<Vec<f64>, ShapeError> {
    let n = check_terms(terms, None)?;
    Ok(per_sample(terms, n, |it| it.product()))
}

/// Hybrid rule-plus-model (HARMO's `R_hyb`, Gulhane & Indurthi 2025; methods.md §19): the rule
/// where it is confident, the model elsewhere: `w_rule·rule` where `rule_scored`, else
/// `w_model·model`. Confidence is the rule's own verdict (a verifier that found an answer to
/// judge), not the size of its value, so a scored rule value of 0 is kept. A non-finite value
/// masks the sample only when it is the one selected.
pub fn hybrid(
    rule: &[f64],
    rule_scored: &[bool],
    model: &[f64],
    w_rule: f64,
    w_model: f64,
) -> Result<Vec<f64>, ShapeError> {
    ShapeError::check_len(
        "rule_scored",
        rule_scored.len(),
        rule.len(),
        "sample of the rule",
    )?;
    ShapeError::check_len("model", model.len(), rule.len(), "sample of the rule")?;
    if !w_rule.is_finite() || !w_model.is_finite() {
        return Err(ShapeError::invalid(
            "weights",
            format!("rule {w_rule}, model {w_model}"),
            "finite weights",
        ));
    }
    Ok(rule
        .iter()
        .zip(rule_scored)
        .zip(model)
        .map(|((&r, &scored), &m)| {
            let (w, x) = if scored { (w_rule, r) } else { (w_model, m) };
            if x.is_finite() {
                w * x
            } else {
                f64::NAN
            }
        })
        .collect())
}

/// A gate: `value` where `gate ≥ threshold`, else `otherwise` (e.g. correctness counts only with a
/// valid format). A non-finite gate masks the sample; a non-finite value masks it only when the
/// gate selects it.
pub fn gate(
    gate: &[f64],
    threshold: f64,
    value: &[f64],
    otherwise: f64,
) -> Result<Vec<f64>, ShapeError> {
    ShapeError::check_len("value", value.len(), gate.len(), "sample of the gate")?;
    if threshold.is_nan() || !otherwise.is_finite() {
        return Err(ShapeError::invalid(
            "gate",
            format!("threshold {threshold}, otherwise {otherwise}"),
            "a threshold that is not NaN and a finite `otherwise`",
        ));
    }
    Ok(gate
        .iter()
        .zip(value)
        .map(|(&g, &v)| match (g.is_finite(), g >= threshold) {
            (false, _) => f64::NAN,
            (true, true) if v.is_finite() => v,
            (true, true) => f64::NAN,
            (true, false) => otherwise,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::log_sigmoid;

    const NAN: f64 = f64::NAN;

    fn same(got: &[f64], expected: &[f64]) {
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for (g, e) in got.iter().zip(expected) {
            let ok = (g.is_nan() && e.is_nan()) || (g - e).abs() <= 1e-12 * e.abs().max(1.0);
            assert!(ok, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn combination_cases() {
        let a = [1.0, 2.0, NAN, 0.0];
        let b = [0.5, -1.0, 1.0, 4.0];
        same(
            &weighted_sum(&[&a, &b], &[1.0, 2.0]).unwrap(),
            &[2.0, 0.0, NAN, 8.0],
        );
        same(&minimum(&[&a, &b]).unwrap(), &[0.5, -1.0, NAN, 0.0]);
        same(&product(&[&a, &b]).unwrap(), &[0.5, -2.0, NAN, 0.0]);
        same(&gate(&a, 1.0, &b, -1.0).unwrap(), &[0.5, -1.0, NAN, -1.0]);
        same(&gate(&b, 1.0, &a, 0.0).unwrap(), &[0.0, 0.0, NAN, 0.0]);
        let zero = [0.0; 4];
        let ls = log_sigmoid;
        same(
            &conjunction(&[&a, &b], &[&zero, &zero]).unwrap(),
            &[
                ls(1.0) + ls(0.5),
                ls(2.0) + ls(-1.0),
                NAN,
                ls(0.0) + ls(4.0),
            ],
        );
        let x = [1.0, 3.0];
        let y = [10.0, 30.0];
        // Normalise-then-sum: both terms become [-1, 1] (population std).
        same(
            &normalize_then_sum(
                &[&x, &y],
                &[1.0, 1.0],
                Scope::Batch,
                StdKind::Population,
                0.0,
            )
            .unwrap(),
            &[-2.0, 2.0],
        );
        same(
            &sum_then_normalize(
                &[&x, &y],
                &[1.0, 1.0],
                Scope::Batch,
                StdKind::Population,
                0.0,
            )
            .unwrap(),
            &[-1.0, 1.0],
        );
    }

    #[test]
    fn hybrid_takes_the_rule_where_it_scored() {
        // Scored rule values (0 included) win; elsewhere the model; a non-finite value masks
        // the sample only where it is the one chosen.
        let rule = [1.0, 0.0, NAN, 5.0, NAN];
        let scored = [true, true, false, false, true];
        let model = [0.3, 0.7, 0.2, NAN, 0.9];
        same(
            &hybrid(&rule, &scored, &model, 2.0, 0.5).unwrap(),
            &[2.0, 0.0, 0.1, NAN, NAN],
        );
    }

    #[test]
    fn bad_requests() {
        assert!(weighted_sum(&[], &[]).is_err());
        assert!(weighted_sum(&[&[1.0], &[1.0, 2.0]], &[1.0, 1.0]).is_err());
        assert!(weighted_sum(&[&[1.0]], &[1.0, 2.0]).is_err());
        assert!(weighted_sum(&[&[1.0]], &[NAN]).is_err());
        assert!(conjunction(&[&[1.0]], &[]).is_err());
        assert!(gate(&[1.0], NAN, &[1.0], 0.0).is_err());
        assert!(gate(&[1.0], 0.0, &[1.0, 2.0], 0.0).is_err());
        assert!(hybrid(&[1.0], &[true, false], &[1.0], 1.0, 1.0).is_err());
        assert!(hybrid(&[1.0], &[true], &[], 1.0, 1.0).is_err());
        assert!(hybrid(&[1.0], &[true], &[1.0], f64::INFINITY, 1.0).is_err());
    }
}
