//! OPRL's episode-plus-step advantages (Liu et al. 2025, "iStar"/OPRL, arXiv 2509.19199 v2;
//! methods.md §13).

use crate::error::check_finite_at_least;
use crate::stats::Centre;
use crate::{advantages, Estimator, Groups, ShapeError, StdKind, StdScope};

/// OPRL advantages, one per step: `A_t = A^E(τ) + α·A^S_t`, where
///
/// * `A^E(τ) = (r_o(τ) − mean_g)/(std_g + ε)` is GRPO's advantage of the trajectory's outcome
///   reward within its group of trajectories, and
/// * `A^S_t = (r_φ(a_t) − mean(R_s))/(std(R_s) + ε)` normalises the step reward (OPRL's implicit
///   PRM reward `β·log π_φ/π_old`, supplied by the caller) over `R_s`, every step of every
///   trajectory of the same group pooled together.
///
/// `outcomes[i]` is trajectory `i`'s outcome reward, `groups` groups the trajectories,
/// `lengths[i]` is its number of steps and `step_rewards` holds the steps of trajectory 0, then
/// 1, and so on. The paper uses α = 1.
///
/// Masking follows the rest of the crate: a trajectory with a non-finite outcome has NaN at every
/// step; a non-finite step reward is NaN at that step and left out of `R_s`. A trajectory alone in
/// its group has `A^E = 0`; a pool with fewer than two finite step rewards, or all equal, gives
/// `A^S = 0`.
#[allow(clippy::too_many_arguments)]
pub fn oprl_advantages(
    outcomes: &[f64],
    groups: &Groups,
    step_rewards: &[f64],
    lengths: &[usize],
    alpha: f64,
    std: StdKind,
    epsilon: f64,
) -> Result<Vec<f64>, ShapeError> {
    groups.check("outcomes", outcomes.len())?;
    ShapeError::check_len("lengths", lengths.len(), outcomes.len(), "trajectory")?;
    let total: usize = lengths.iter().sum();
    ShapeError::check_len(
        "step_rewards",
        step_rewards.len(),
        total,
        "step of the trajectory lengths",
    )?;
    if !alpha.is_finite() {
        return Err(ShapeError::invalid("alpha", alpha, "a finite number"));
    }
    check_finite_at_least("epsilon", epsilon, 0.0, "a finite number ≥ 0")?;
    let episode = advantages(
        outcomes,
        groups,
        &Estimator::Grpo {
            scale: StdScope::Group,
            std,
            epsilon,
        },
        false,
    )?
    .values;
    let mut starts = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &length in lengths {
        starts.push(start);
        start += length;
    }
    let mut out = vec![f64::NAN; total];
    let mut pool: Vec<usize> = Vec::new();
    for members in groups.iter() {
        pool.clear();
        for &i in members {
            pool.extend(starts[i]..starts[i] + lengths[i]);
        }
        let centre = Centre::of_indices(step_rewards, &pool);
        let divisor = centre.std(std).map(|s| s + epsilon);
        for &i in members {
            if !episode[i].is_finite() {
                continue;
            }
            for t in starts[i]..starts[i] + lengths[i] {
                let x = step_rewards[t];
                if !x.is_finite() {
                    continue;
                }
                let step = match divisor {
                    Some(d) if centre.count >= 2 && !centre.constant && d > 0.0 => {
                        centre.centred(x) / d
                    }
                    _ => 0.0,
                };
                out[t] = episode[i] + alpha * step;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oprl_by_hand() {
        // One group of two trajectories: outcomes 1 and 0 (population std 0.5 → A^E = ±1), steps
        // [1, 3] and [2]: pooled mean 2, population std √(2/3).
        let groups = Groups::from_sizes(&[2]);
        let out = oprl_advantages(
            &[1.0, 0.0],
            &groups,
            &[1.0, 3.0, 2.0],
            &[2, 1],
            1.0,
            StdKind::Population,
            0.0,
        )
        .unwrap();
        let s = (2.0f64 / 3.0).sqrt();
        let expected = [1.0 - 1.0 / s, 1.0 + 1.0 / s, -1.0];
        for (g, e) in out.iter().zip(expected) {
            assert!((g - e).abs() < 1e-15, "{out:?}");
        }
        // α = 0 is GRPO at every step; a NaN outcome masks its steps; a NaN step only itself.
        let out = oprl_advantages(
            &[1.0, 0.0, f64::NAN],
            &Groups::from_sizes(&[3]),
            &[1.0, f64::NAN, 2.0, 5.0],
            &[2, 1, 1],
            0.0,
            StdKind::Population,
            0.0,
        )
        .unwrap();
        assert_eq!(out[0], 1.0);
        assert!(out[1].is_nan());
        assert_eq!(out[2], -1.0);
        assert!(out[3].is_nan());
        // A trajectory alone, with one step: A^E = 0, A^S = 0.
        let out = oprl_advantages(
            &[4.0],
            &Groups::single(1),
            &[7.0],
            &[1],
            1.0,
            StdKind::Sample,
            1e-6,
        )
        .unwrap();
        assert_eq!(out, [0.0]);
    }

    #[test]
    fn oprl_bad_requests() {
        let g = Groups::single(1);
        let sample = StdKind::Sample;
        assert!(oprl_advantages(&[1.0], &g, &[1.0], &[2], 1.0, sample, 0.0).is_err());
        assert!(oprl_advantages(&[1.0], &g, &[1.0], &[1, 0], 1.0, sample, 0.0).is_err());
        assert!(oprl_advantages(&[1.0], &g, &[1.0], &[1], f64::NAN, sample, 0.0).is_err());
        assert!(oprl_advantages(&[1.0], &g, &[1.0], &[1], 1.0, sample, -1.0).is_err());
        assert!(oprl_advantages(&[1.0, 2.0], &g, &[1.0], &[1], 1.0, sample, 0.0).is_err());
    }
}
