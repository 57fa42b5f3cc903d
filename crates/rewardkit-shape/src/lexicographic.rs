//! HERON's lexicographic comparator (Bukharin et al., "Hierarchical Reward Modeling";
//! abukharin3/HERON `rm_mountain.py`).

use std::cmp::Ordering;

use crate::stats::Centre;
use crate::{Groups, ShapeError, StdKind};

/// Reward factors ranked by importance, compared level by level with margins.
///
/// To compare trajectories `a` and `b`, walk the levels `k = 1..K` in order: if `z_k(a) > z_k(b) +
/// δ_k`, `a` is preferred; if `z_k(b) > z_k(a) + δ_k`, `b` is; otherwise the next level decides.
/// If no level decides, the pair is skipped (`None`). A factor where lower is better has its sign
/// flipped before comparing.
#[derive(Clone, Debug, PartialEq)]
pub struct Lexicographic {
    margins: Vec<f64>,
    higher_is_better: Vec<bool>,
}

impl Lexicographic {
    /// A comparator with explicit margins `δ_k ≥ 0`, one per level, most important first.
    pub fn new(
        margins: Vec<f64>,
        higher_is_better: Vec<bool>,
    ) -> Result<Lexicographic, ShapeError> {
        ShapeError::check_len(
            "higher_is_better",
            higher_is_better.len(),
            margins.len(),
            "level",
        )?;
        if margins.is_empty() {
            return Err(ShapeError::invalid("margins", "[]", "at least one level"));
        }
        if let Some(m) = margins.iter().find(|m| !(m.is_finite() && **m >= 0.0)) {
            return Err(ShapeError::invalid("margins", m, "finite margins ≥ 0"));
        }
        Ok(Lexicographic {
            margins,
            higher_is_better,
        })
    }

    /// HERON's margins from a buffer of factor values: `δ_k = sigma_mult·std(z_k)` (population
    /// std of the finite values, as `np.std`), and no margin at the first level, as in the
    /// authors' code. `factors[k]` holds level `k`'s values over the buffer.
    pub fn from_buffer(
        factors: &[&[f64]],
        sigma_mult: f64,
        higher_is_better: Vec<bool>,
    ) -> Result<Lexicographic, ShapeError> {
        if !(sigma_mult.is_finite() && sigma_mult >= 0.0) {
            return Err(ShapeError::invalid(
                "sigma_mult",
                sigma_mult,
                "a finite number ≥ 0",
            ));
        }
        let margins = factors
            .iter()
            .enumerate()
            .map(|(k, z)| {
                if k == 0 {
                    0.0
                } else {
                    let std = Centre::of(z.iter().copied()).std(StdKind::Population);
                    sigma_mult * std.unwrap_or(0.0)
                }
            })
            .collect();
        Lexicographic::new(margins, higher_is_better)
    }

    /// The margins, most important level first.
    pub fn margins(&self) -> &[f64] {
        &self.margins
    }

    /// Compares two factor vectors: `Some(Greater)` if `a` is preferred, `Some(Less)` if `b` is,
    /// `None` if no level decides or a factor is not finite (the pair is skipped). Antisymmetric:
    /// `compare(a, b) == compare(b, a).map(Ordering::reverse)`.
    pub fn compare(&self, a: &[f64], b: &[f64]) -> Result<Option<Ordering>, ShapeError> {
        ShapeError::check_len("a", a.len(), self.margins.len(), "level")?;
        ShapeError::check_len("b", b.len(), self.margins.len(), "level")?;
        if a.iter().chain(b).any(|x| !x.is_finite()) {
            return Ok(None);
        }
        for k in 0..self.margins.len() {
            let sign = if self.higher_is_better[k] { 1.0 } else { -1.0 };
            let (za, zb) = (sign * a[k], sign * b[k]);
            if za > zb + self.margins[k] {
                return Ok(Some(Ordering::Greater));
            }
            if zb > za + self.margins[k] {
                return Ok(Some(Ordering::Less));
            }
        }
        Ok(None)
    }

    /// Preference labels for index pairs into `rows` (each row one trajectory's factor vector):
    /// `Some(true)` when the first of the pair is preferred, `Some(false)` when the second is,
    /// `None` when the pair is skipped.
    pub fn labels(
        &self,
        rows: &[&[f64]],
        pairs: &[(usize, usize)],
    ) -> Result<Vec<Option<bool>>, ShapeError> {
        pairs
            .iter()
            .map(|&(i, j)| {
                let (Some(a), Some(b)) = (rows.get(i), rows.get(j)) else {
                    return Err(ShapeError::invalid(
                        "pairs",
                        format!("({i}, {j})"),
                        "indices of existing rows",
                    ));
                };
                Ok(self.compare(a, b)?.map(|o| o == Ordering::Greater))
            })
            .collect()
    }
}

impl Lexicographic {
    /// A scalarisation of the comparator within each group: a sample's score is its net win
    /// rate against the other members, `(wins − losses)/(K − 1)` ∈ [−1, 1], with `K` the members
    /// whose factors are all finite. This is a Borda count of HERON's pairwise labels
    /// **\[recon\]** (HERON itself fits a Bradley–Terry reward model to the labels; the net win
    /// rate is the model-free score with the same ordering on a lexicographically ordered group,
    /// usable directly as a reward). A sample with a non-finite factor gets NaN (masked); a
    /// group with one usable member gives it 0. `factors[k][s]` is level `k`'s value for sample
    /// `s`. Costs `K²` comparisons per group.
    pub fn group_scores(
        &self,
        factors: &[&[f64]],
        groups: &Groups,
    ) -> Result<Vec<f64>, ShapeError> {
        ShapeError::check_len("factors", factors.len(), self.margins.len(), "level")?;
        for column in factors {
            groups.check("factor", column.len())?;
        }
        let mut scores = vec![f64::NAN; groups.len()];
        let mut a = vec![0.0; self.margins.len()];
        let mut b = vec![0.0; self.margins.len()];
        for members in groups.iter() {
            let usable: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&s| factors.iter().all(|f| f[s].is_finite()))
                .collect();
            for &i in &usable {
                let mut net = 0i64;
                for &j in usable.iter().filter(|&&j| j != i) {
                    for (k, column) in factors.iter().enumerate() {
                        a[k] = column[i];
                        b[k] = column[j];
                    }
                    net += match self.compare(&a, &b)? {
                        Some(Ordering::Greater) => 1,
                        Some(Ordering::Less) => -1,
                        _ => 0,
                    };
                }
                scores[i] = if usable.len() > 1 {
                    net as f64 / (usable.len() - 1) as f64
                } else {
                    0.0
                };
            }
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn comparator_cases() {
        let lex = Lexicographic::new(vec![0.0, 0.5], vec![true, false]).unwrap();
        let check = |a: [f64; 2], b: [f64; 2], expected: Option<Ordering>| {
            assert_eq!(lex.compare(&a, &b).unwrap(), expected, "{a:?} vs {b:?}");
            assert_eq!(
                lex.compare(&b, &a).unwrap(),
                expected.map(Ordering::reverse)
            );
        };
        check([1.0, 9.0], [0.0, 0.0], Some(Greater)); // level 1 decides
        check([1.0, 0.0], [1.0, 1.0], Some(Greater)); // level 2: lower is better, beyond margin
        check([1.0, 0.0], [1.0, 0.4], None); // within the margin: skipped
        check([1.0, 0.0], [1.0, 0.0], None);
        check([f64::NAN, 0.0], [1.0, 0.0], None);
        assert!(lex.compare(&[1.0], &[1.0, 2.0]).is_err());
        let labels = lex
            .labels(
                &[&[1.0, 0.0], &[0.0, 0.0], &[1.0, 0.1]],
                &[(0, 1), (1, 0), (0, 2)],
            )
            .unwrap();
        assert_eq!(labels, [Some(true), Some(false), None]);
        assert!(lex.labels(&[&[1.0, 0.0]], &[(0, 3)]).is_err());
    }

    #[test]
    fn group_scores_by_hand() {
        // Levels: correctness (higher better, no margin), length (lower better, margin 10).
        let lex = Lexicographic::new(vec![0.0, 10.0], vec![true, false]).unwrap();
        let correct = [1.0, 1.0, 0.0, 1.0, 5.0, f64::NAN];
        let length = [100.0, 150.0, 50.0, 105.0, 1.0, 1.0];
        let groups = Groups::from_sizes(&[4, 1, 1]);
        let scores = lex.group_scores(&[&correct, &length], &groups).unwrap();
        // Group 0: s0 beats s1 (shorter by 50) and s2 (correct), ties s3 (within 10): 2/3.
        // s1 loses to s0 and s3, beats s2: −1/3. s2 loses to all: −1. s3 = s0: 2/3.
        let expected = [2.0 / 3.0, -1.0 / 3.0, -1.0, 2.0 / 3.0, 0.0];
        for (got, want) in scores.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{scores:?}");
        }
        assert!(scores[5].is_nan());
        assert!(lex.group_scores(&[&correct], &groups).is_err());
        assert!(lex
            .group_scores(&[&correct, &length[..2]], &groups)
            .is_err());
    }

    #[test]
    fn margins_from_buffer() {
        let lex = Lexicographic::from_buffer(&[&[0.0, 10.0], &[1.0, 3.0]], 2.0, vec![true, true])
            .unwrap();
        assert_eq!(lex.margins(), &[0.0, 2.0]);
        assert!(Lexicographic::new(vec![-1.0], vec![true]).is_err());
        assert!(Lexicographic::new(vec![], vec![]).is_err());
        assert!(Lexicographic::from_buffer(&[&[0.0]], f64::NAN, vec![true]).is_err());
    }
}
