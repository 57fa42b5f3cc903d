//! Per-step rewards built from episode-level signals, for estimators that use reward timing
//! ([`crate::gae`]): dense turn-level rewards for multi-turn agents and mixed-grained
//! sequence-plus-item rewards.
//!
//! Both take episodes laid out like [`crate::gae`]: `lengths[e]` steps (turns, items) of episode
//! `e`, the steps of episode 0 first. Both return one reward per step; GRPO and RLOO sum a
//! trajectory's rewards, so only a per-step estimator such as GAE sees the difference in timing
//! (methods.md §16 **\[recon\]**).

use crate::{ShapeError, StdKind};

fn check_lengths(lengths: &[usize], steps: usize, what: &'static str) -> Result<(), ShapeError> {
    let total: usize = lengths.iter().sum();
    ShapeError::check_len(what, steps, total, "step of the episodes in `lengths`")
}

/// Dense turn rewards of the Practitioner's Guide to Multi-turn Agentic RL (pearls-lab/
/// meow-tea-taro `agentic_verified.py`; methods.md §16), from the environment's score after each
/// turn, `s_1..s_T` (`scores`, episode after episode; `s_0 = 0`):
///
/// * `Δ_k = s_k − s_{k−1}`, the turn's increment, placed on turn `k`;
/// * on a win (`won[e]`), `r_k = Δ_k / P` with `P` the number of positive increments (1 if there
///   are none), so binary sub-goal increments sum to exactly 1;
/// * on a loss, `r_k = Δ_k / max_total` (the environment's largest total score), so they sum to
///   `s_T / max_total ≤ 1`.
///
/// With `sparse`, the final outcome (1 for a win, 0 for a loss) is put on the last turn instead
/// and every other turn gets 0. The source describes the division but not negative increments;
/// they are divided like positive ones here **\[recon\]**. An episode with a non-finite score is
/// masked: NaN at every turn.
pub fn dense_turn_rewards(
    scores: &[f64],
    lengths: &[usize],
    won: &[bool],
    max_total: f64,
    sparse: bool,
) -> Result<Vec<f64>, ShapeError> {
    check_lengths(lengths, scores.len(), "scores")?;
    ShapeError::check_len("won", won.len(), lengths.len(), "episode")?;
    if !(max_total.is_finite() && max_total > 0.0) {
        return Err(ShapeError::invalid(
            "max_total",
            max_total,
            "a finite total score > 0",
        ));
    }
    let mut out = Vec::with_capacity(scores.len());
    let mut start = 0;
    for (&length, &win) in lengths.iter().zip(won) {
        let turns = &scores[start..start + length];
        start += length;
        if turns.iter().any(|s| !s.is_finite()) {
            out.resize(out.len() + length, f64::NAN);
            continue;
        }
        if sparse {
            out.resize(out.len() + length.saturating_sub(1), 0.0);
            if length > 0 {
                out.push(if win { 1.0 } else { 0.0 });
            }
            continue;
        }
        let increment = |k: usize| turns[k] - if k == 0 { 0.0 } else { turns[k - 1] };
        let divisor = if win {
            (0..length).filter(|&k| increment(k) > 0.0).count().max(1) as f64
        } else {
            max_total
        };
        out.extend((0..length).map(|k| increment(k) / divisor));
    }
    Ok(out)
}

/// Mixed-grained rewards: a sequence-level reward `R_e` and item-level rewards `r_{e,j}` (one per
/// item of the sequence — a step, a claim, a sentence) placed on the items, as Fine-Grained RLHF
/// (Wu et al. 2023) places segment rewards at segment ends and the holistic reward at the end:
///
/// `u_{e,j} = w_item·r_{e,j} + [j = last]·w_seq·R_e`.
///
/// The weights and the placement are a reconstruction **\[recon\]** (the issue names the family,
/// no single formula). A non-finite item reward masks that item (NaN); a non-finite sequence
/// reward masks every item of the sequence. A sequence with no items gets no rewards (its
/// sequence reward has nowhere to go) and is counted in the second return value.
pub fn mixed_grained_rewards(
    sequence: &[f64],
    items: &[f64],
    lengths: &[usize],
    w_seq: f64,
    w_item: f64,
) -> Result<(Vec<f64>, usize), ShapeError> {
    ShapeError::check_len("lengths", lengths.len(), sequence.len(), "sequence")?;
    check_lengths(lengths, items.len(), "items")?;
    for (name, w) in [("w_seq", w_seq), ("w_item", w_item)] {
        if !w.is_finite() {
            return Err(ShapeError::invalid(name, w, "a finite weight"));
        }
    }
    let mut out = Vec::with_capacity(items.len());
    let mut empty = 0;
    let mut start = 0;
    for (&length, &total) in lengths.iter().zip(sequence) {
        let row = &items[start..start + length];
        start += length;
        if length == 0 {
            empty += 1;
            continue;
        }
        for (j, &r) in row.iter().enumerate() {
            out.push(if !(r.is_finite() && total.is_finite()) {
                f64::NAN
            } else if j + 1 == length {
                w_item * r + w_seq * total
            } else {
                w_item * r
            });
        }
    }
    Ok((out, empty))
}

/// Mixed-grained advantages, one per item: the sequence reward's GRPO advantage within its group
/// plus `α` times the item reward normalised over every item of the group — OPRL's
/// episode-plus-step combination ([`crate::oprl_advantages`], methods.md §13) with sequences as
/// episodes and items as steps. Provided under this name so a mixed-grained spec reads as what it
/// is; the computation is OPRL's.
pub fn mixed_grained_advantages(
    sequence: &[f64],
    groups: &crate::Groups,
    items: &[f64],
    lengths: &[usize],
    alpha: f64,
    std: StdKind,
    epsilon: f64,
) -> Result<Vec<f64>, ShapeError> {
    crate::oprl_advantages(sequence, groups, items, lengths, alpha, std, epsilon)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    fn same(got: &[f64], expected: &[f64]) {
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g.is_nan() && e.is_nan()) || g == e,
                "{got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn dense_turns_by_hand() {
        // A win with sub-goals reached at turns 1 and 3: increments 1, 0, 1 over P = 2.
        let won = dense_turn_rewards(&[1.0, 1.0, 2.0], &[3], &[true], 4.0, false).unwrap();
        same(&won, &[0.5, 0.0, 0.5]);
        assert_eq!(won.iter().sum::<f64>(), 1.0);
        // A loss after one of four sub-goals: 1/4 on turn 2.
        same(
            &dense_turn_rewards(&[0.0, 1.0], &[2], &[false], 4.0, false).unwrap(),
            &[0.0, 0.25],
        );
        // Sparse: the outcome on the last turn; an empty episode gives nothing.
        same(
            &dense_turn_rewards(
                &[0.0, 1.0, 3.0],
                &[2, 0, 1],
                &[true, true, false],
                4.0,
                true,
            )
            .unwrap(),
            &[0.0, 1.0, 0.0],
        );
        // A win with no positive increment: P = 1.
        same(
            &dense_turn_rewards(&[0.0, -1.0], &[2], &[true], 4.0, false).unwrap(),
            &[0.0, -1.0],
        );
        // A non-finite score masks the episode only.
        same(
            &dense_turn_rewards(&[1.0, NAN, 2.0], &[2, 1], &[true, false], 2.0, false).unwrap(),
            &[NAN, NAN, 1.0],
        );
        assert!(dense_turn_rewards(&[1.0], &[2], &[true], 1.0, false).is_err());
        assert!(dense_turn_rewards(&[1.0], &[1], &[], 1.0, false).is_err());
        assert!(dense_turn_rewards(&[1.0], &[1], &[true], 0.0, false).is_err());
    }

    #[test]
    fn mixed_grained_by_hand() {
        let (out, empty) = mixed_grained_rewards(
            &[1.0, 2.0, NAN, 5.0],
            &[0.5, -0.5, 1.0, 3.0],
            &[2, 0, 1, 1],
            2.0,
            0.5,
        )
        .unwrap();
        same(&out, &[0.25, -0.25 + 2.0, NAN, 1.5 + 10.0]);
        assert_eq!(empty, 1);
        let (out, _) = mixed_grained_rewards(&[1.0], &[NAN, 1.0], &[2], 1.0, 1.0).unwrap();
        same(&out, &[NAN, 2.0]);
        assert!(mixed_grained_rewards(&[1.0], &[1.0], &[2], 1.0, 1.0).is_err());
        assert!(mixed_grained_rewards(&[1.0], &[1.0], &[1], NAN, 1.0).is_err());
        let groups = crate::Groups::from_sizes(&[2]);
        let a = mixed_grained_advantages(
            &[1.0, 0.0],
            &groups,
            &[1.0, 0.0],
            &[1, 1],
            1.0,
            StdKind::Population,
            0.0,
        )
        .unwrap();
        same(&a, &[2.0, -2.0]);
    }
}
