//! Property tests for the invariants the literature states (issue 7, "Correctness evidence").

use proptest::prelude::*;
use rewardkit_shape::transform::{log_sigmoid_centred, par};
use rewardkit_shape::{
    advantages, potential_shaping, Estimator, Groups, LagrangeMultipliers, Squash, StdKind,
    StdScope,
};

fn groups_and_rewards() -> impl Strategy<Value = (Vec<usize>, Vec<f64>)> {
    prop::collection::vec(1usize..8, 1..6).prop_flat_map(|sizes| {
        let n: usize = sizes.iter().sum();
        let offset = prop_oneof![Just(0.0), Just(1e9), -1e6..1e6f64];
        (
            Just(sizes),
            prop::collection::vec(-100.0..100.0f64, n),
            offset,
        )
            .prop_map(|(sizes, r, offset)| (sizes, r.into_iter().map(|x| x + offset).collect()))
    })
}

proptest! {
    #[test]
    fn par_is_in_the_open_unit_interval(
        // |k·(r − r_ref)| ≤ 31.5 keeps σ below 1 in f64 (it rounds to 1 beyond ~37).
        r in -5.0..5.0f64,
        refs in prop::collection::vec(-5.0..5.0f64, 1..12),
        k in 0.01..3.0f64,
    ) {
        let p = par(r, &refs, k);
        prop_assert!(p > 0.0 && p < 1.0, "{p}");
        prop_assert_eq!(par(r, &vec![r; refs.len()], k), 0.5);
        // Monotone in the reward.
        prop_assert!(par(r + 0.5, &refs, k) > p);
    }

    #[test]
    fn log_sigmoid_centred_is_non_positive_and_monotone(
        r in -1e6..1e6f64, reference in -1e6..1e6f64, step in 1e-3..100.0f64,
    ) {
        let u = log_sigmoid_centred(r, reference);
        prop_assert!(u <= 0.0);
        prop_assert!(log_sigmoid_centred(r + step, reference) >= u);
    }

    #[test]
    fn grpo_advantages_sum_to_zero_per_group((sizes, rewards) in groups_and_rewards()) {
        let groups = Groups::from_sizes(&sizes);
        for scale in [StdScope::Group, StdScope::Batch, StdScope::None] {
            let estimator = Estimator::Grpo { scale, std: StdKind::Sample, epsilon: 1e-6 };
            let out = advantages(&rewards, &groups, &estimator, false).unwrap();
            for members in groups.iter() {
                let sum: f64 = members.iter().map(|&i| out.values[i]).sum();
                let scale = members.iter().map(|&i| out.values[i].abs()).fold(1.0, f64::max);
                prop_assert!(sum.abs() <= 1e-12 * scale * members.len() as f64, "{sum}");
            }
            prop_assert!(out.values.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn rloo_equals_its_definition((sizes, rewards) in groups_and_rewards()) {
        let groups = Groups::from_sizes(&sizes);
        let out = advantages(&rewards, &groups, &Estimator::Rloo, false).unwrap();
        for members in groups.iter() {
            let k = members.len();
            for &i in members {
                // The definition, evaluated on values relative to the first member so that the
                // check itself does not cancel: R_i − (1/(K−1)) Σ_{j≠i} R_j.
                let pivot = rewards[members[0]];
                let expected = if k == 1 {
                    0.0
                } else {
                    let others: f64 = members.iter().filter(|&&j| j != i).map(|&j| rewards[j] - pivot).sum();
                    (rewards[i] - pivot) - others / (k - 1) as f64
                };
                let scale = members.iter().map(|&j| (rewards[j] - pivot).abs()).fold(1.0, f64::max);
                prop_assert!((out.values[i] - expected).abs() <= 1e-12 * scale, "{} vs {expected}", out.values[i]);
            }
        }
    }

    #[test]
    fn multipliers_rise_while_violated_and_fall_when_satisfied(
        thresholds in prop::collection::vec(-5.0..5.0f64, 1..4),
        gaps in prop::collection::vec(0.01..5.0f64, 4),
        squash in prop_oneof![Just(Squash::Sigmoid), Just(Squash::Tanh)],
        steps in 1usize..20,
    ) {
        let n = thresholds.len();
        let mut lagrange = LagrangeMultipliers::new(thresholds.clone(), squash, 0.1, 0.1, 0.0).unwrap();
        // Violated: every mean below its threshold.
        let violated: Vec<f64> = (0..n).map(|i| thresholds[i] - gaps[i]).collect();
        let mut previous = lagrange.multipliers();
        for _ in 0..steps {
            lagrange.update(&violated).unwrap();
            let now = lagrange.multipliers();
            for i in 0..n {
                prop_assert!(now[i] > previous[i] && now[i].abs() < 1.0);
            }
            previous = now;
        }
        // Satisfied: above the threshold. With momentum the first step may still carry the old
        // direction; from a fresh start it must fall at once.
        let satisfied: Vec<f64> = (0..n).map(|i| thresholds[i] + gaps[i]).collect();
        let mut fresh = LagrangeMultipliers::new(thresholds, squash, 0.1, 0.1, 0.0).unwrap();
        let mut previous = fresh.multipliers();
        for _ in 0..steps {
            fresh.update(&satisfied).unwrap();
            let now = fresh.multipliers();
            for i in 0..n {
                prop_assert!(now[i] < previous[i]);
            }
            previous = now;
        }
    }

    #[test]
    fn potential_shaping_keeps_optimal_policies(
        seed in prop::collection::vec(0.0..1.0f64, 3 * 4 * 3),
        potentials in prop::collection::vec(-10.0..10.0f64, 4),
        gamma in 0.5..0.95f64,
    ) {
        // A random deterministic MDP: 4 states, 3 actions; next state and reward from the seed.
        let (states, actions) = (4usize, 3usize);
        let next = |s: usize, a: usize| (seed[(s * actions + a) * 3] * states as f64) as usize % states;
        let reward = |s: usize, a: usize| seed[(s * actions + a) * 3 + 1] * 10.0 - 5.0;
        let shaped = |s: usize, a: usize| {
            let s2 = next(s, a);
            // A two-step episode [s, s2]: the first shaped reward is r + γΦ(s2) − Φ(s).
            potential_shaping(&[reward(s, a), 0.0], &[potentials[s], potentials[s2]], &[2], gamma).unwrap()[0]
        };
        let greedy = |r: &dyn Fn(usize, usize) -> f64| {
            let mut v = vec![0.0; states];
            for _ in 0..2000 {
                v = (0..states)
                    .map(|s| (0..actions).map(|a| r(s, a) + gamma * v[next(s, a)]).fold(f64::MIN, f64::max))
                    .collect();
            }
            (0..states)
                .map(|s| {
                    let q: Vec<f64> = (0..actions).map(|a| r(s, a) + gamma * v[next(s, a)]).collect();
                    let best = q.iter().copied().fold(f64::MIN, f64::max);
                    // The set of optimal actions (ties within 1e-6).
                    (0..actions).filter(|&a| q[a] >= best - 1e-6).collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(greedy(&reward), greedy(&shaped));
    }
}

proptest! {
    #[test]
    fn dense_turn_rewards_sum_to_one_on_a_win_and_to_the_score_share_on_a_loss(
        increments in prop::collection::vec(0u8..2, 1..12),
        max_total in 1.0..20.0f64,
    ) {
        use rewardkit_shape::dense_turn_rewards;
        let scores: Vec<f64> = increments
            .iter()
            .scan(0.0, |level, &i| { *level += f64::from(i); Some(*level) })
            .collect();
        let won = dense_turn_rewards(&scores, &[scores.len()], &[true], max_total, false).unwrap();
        let sum: f64 = won.iter().sum();
        let expected = if increments.contains(&1) { 1.0 } else { 0.0 };
        prop_assert!((sum - expected).abs() < 1e-12, "{sum}");
        let lost = dense_turn_rewards(&scores, &[scores.len()], &[false], max_total, false).unwrap();
        let sum: f64 = lost.iter().sum();
        prop_assert!((sum - scores[scores.len() - 1] / max_total).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn running_state_saved_and_restored_continues_bit_for_bit(
        batches in prop::collection::vec(prop::collection::vec(-1e3..1e3f64, 0..6), 1..6),
        offset in prop_oneof![Just(0.0), Just(1e9)],
    ) {
        use rewardkit_shape::transform::normalize_running;
        use rewardkit_shape::RunningStats;
        let mut live = RunningStats::new();
        let mut saved = RunningStats::new();
        for batch in &batches {
            let batch: Vec<f64> = batch.iter().map(|x| x + offset).collect();
            let a = normalize_running(&batch, &mut live, StdKind::Sample, 1e-6).unwrap();
            // Round-trip the state through its JSON file format before every batch.
            let mut restored: RunningStats =
                serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
            let b = normalize_running(&batch, &mut restored, StdKind::Sample, 1e-6).unwrap();
            prop_assert_eq!(
                a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            saved = restored;
        }
        prop_assert_eq!(live, saved);
    }

    #[test]
    fn count_decay_does_not_depend_on_the_order_within_a_batch(
        keys in prop::collection::vec(0u8..4, 1..10),
        rotate in 0usize..10,
    ) {
        use rewardkit_shape::{count_decay, MessageCounts};
        let names: Vec<Option<String>> = keys.iter().map(|k| Some(format!("m{k}"))).collect();
        let values = vec![1.0; names.len()];
        let forward = count_decay(&values, &names, &mut MessageCounts::new(), 3.0).unwrap();
        let r = rotate % names.len();
        let mut rotated = names.clone();
        rotated.rotate_left(r);
        let back = count_decay(&values, &rotated, &mut MessageCounts::new(), 3.0).unwrap();
        let mut realigned = back.clone();
        realigned.rotate_right(r);
        prop_assert_eq!(forward, realigned);
        // Peeking (what the spec's batch pass does) equals adding, on a table with history.
        let mut table = MessageCounts::new();
        table.add_batch(&rotated[..r]);
        let peeked = table.batch_counts(&names);
        prop_assert_eq!(peeked, table.add_batch(&names));
    }
}
