//! Per-step estimators: generalised advantage estimation and potential-based shaping.

use rayon::prelude::*;

use crate::advantage::Slot;
use crate::error::check_finite_at_least;
use crate::simd::output_vec;
use crate::ShapeError;

/// Advantages and returns per step, from [`gae`].
#[derive(Clone, Debug, PartialEq)]
pub struct Gae {
    /// `A_t`, one per step; NaN for every step of a masked episode.
    pub advantages: Vec<f64>,
    /// `A_t + V_t` (the critic's regression target); NaN for masked episodes.
    pub returns: Vec<f64>,
    /// Episodes with a non-finite reward, value or bootstrap value anywhere: a NaN at step `t`
    /// reaches every `A_{t' ≤ t}` through the recursion, so the whole episode is masked.
    pub masked_episodes: usize,
}

fn check_episodes(lengths: &[usize], steps: usize) -> Result<(), ShapeError> {
    let total: usize = lengths.iter().sum();
    ShapeError::check_len("rewards", steps, total, "step of the episode lengths")
}

fn check_discount(option: &'static str, value: f64) -> Result<(), ShapeError> {
    check_finite_at_least(option, value, 0.0, "a number in [0, 1]")?;
    if value > 1.0 {
        return Err(ShapeError::invalid(option, value, "a number in [0, 1]"));
    }
    Ok(())
}

/// Generalised advantage estimation (Schulman et al. 2016, eqs. 11–16) over consecutive episodes:
///
/// `δ_t = r_t + γ·V_{t+1} − V_t`, `A_t = δ_t + γλ·A_{t+1}`, computed backwards from each
/// episode's end, where `V_{T}` after the last step is `bootstrap[e]` (the value of the state a
/// truncated episode stopped in) or 0 for a terminal one (`bootstrap = None`).
///
/// `rewards` and `values` hold every step of every episode, episode after episode;
/// `lengths[e]` is the number of steps of episode `e`.
pub fn gae(
    rewards: &[f64],
    values: &[f64],
    lengths: &[usize],
    bootstrap: Option<&[f64]>,
    gamma: f64,
    lambda: f64,
) -> Result<Gae, ShapeError> {
    let n = rewards.len();
    check_request(rewards, values, lengths, bootstrap, gamma, lambda)?;
    // Every step of every episode is written exactly once (the episodes partition the steps),
    // so the outputs are not zero-filled first: the steps go into the vectors' reserved
    // capacity, and the count of steps written is checked before the vectors take them.
    let mut advantages = output_vec(n);
    let mut returns = output_vec(n);
    let (masked_episodes, written) = over_episodes(
        rewards,
        values,
        lengths,
        bootstrap,
        gamma,
        lambda,
        &mut advantages.spare_capacity_mut()[..n],
        &mut returns.spare_capacity_mut()[..n],
    );
    assert_eq!(written, n, "every step is written (a bug otherwise)");
    // SAFETY: both capacities are at least `n`, and `n` elements of each were initialised:
    // `over_episodes` writes each episode's steps once (`Slot::put`) and counted `n` steps over
    // episodes that partition `0..n` (`check_request`).
    unsafe {
        advantages.set_len(n);
        returns.set_len(n);
    }
    Ok(Gae {
        advantages,
        returns,
        masked_episodes,
    })
}

/// [`gae`] into a caller's buffers (one value per step each), for a trainer that reuses them;
/// returns the number of masked episodes.
#[allow(clippy::too_many_arguments)]
pub fn gae_into(
    rewards: &[f64],
    values: &[f64],
    lengths: &[usize],
    bootstrap: Option<&[f64]>,
    gamma: f64,
    lambda: f64,
    advantages: &mut [f64],
    returns: &mut [f64],
) -> Result<usize, ShapeError> {
    check_request(rewards, values, lengths, bootstrap, gamma, lambda)?;
    ShapeError::check_len("advantages", advantages.len(), rewards.len(), "step")?;
    ShapeError::check_len("returns", returns.len(), rewards.len(), "step")?;
    let (masked_episodes, _) = over_episodes(
        rewards, values, lengths, bootstrap, gamma, lambda, advantages, returns,
    );
    Ok(masked_episodes)
}

fn check_request(
    rewards: &[f64],
    values: &[f64],
    lengths: &[usize],
    bootstrap: Option<&[f64]>,
    gamma: f64,
    lambda: f64,
) -> Result<(), ShapeError> {
    check_episodes(lengths, rewards.len())?;
    ShapeError::check_len("values", values.len(), rewards.len(), "step")?;
    if let Some(bootstrap) = bootstrap {
        ShapeError::check_len("bootstrap", bootstrap.len(), lengths.len(), "episode")?;
    }
    check_discount("gamma", gamma)?;
    check_discount("lambda", lambda)
}

/// Below this many steps one thread computes every episode.
const PARALLEL_STEPS: usize = 1 << 16;

/// The recursion over every episode, split over the current rayon pool's threads (runs of whole
/// episodes, each with its own part of the outputs) for large inputs; episodes are independent,
/// so the result does not depend on the split. Returns the masked episodes and the steps
/// written.
#[allow(clippy::too_many_arguments)]
fn over_episodes<T: Slot>(
    rewards: &[f64],
    values: &[f64],
    lengths: &[usize],
    bootstrap: Option<&[f64]>,
    gamma: f64,
    lambda: f64,
    advantages: &mut [T],
    returns: &mut [T],
) -> (usize, usize) {
    let n = rewards.len();
    let threads = rayon::current_num_threads();
    let pieces = (4 * threads)
        .min(n / (PARALLEL_STEPS / 4))
        .min(lengths.len());
    if threads <= 1 || n < PARALLEL_STEPS || pieces < 2 {
        return episodes(
            rewards, values, lengths, bootstrap, gamma, lambda, advantages, returns,
        );
    }
    let mut parts = Vec::with_capacity(pieces);
    let (mut advantages, mut returns) = (advantages, returns);
    let (mut first, mut start, mut end) = (0, 0, 0);
    let mut last = 0;
    for k in 1..=pieces {
        let target = n * k / pieces;
        while last < lengths.len() && (end < target || k == pieces) {
            end += lengths[last];
            last += 1;
        }
        let (a, a_rest) = advantages.split_at_mut(end - start);
        let (r, r_rest) = returns.split_at_mut(end - start);
        parts.push((first..last, start..end, a, r));
        (advantages, returns) = (a_rest, r_rest);
        (first, start) = (last, end);
    }
    parts
        .into_par_iter()
        .map(|(episodes_of, steps, a, r)| {
            episodes(
                &rewards[steps.clone()],
                &values[steps],
                &lengths[episodes_of.clone()],
                bootstrap.map(|b| &b[episodes_of]),
                gamma,
                lambda,
                a,
                r,
            )
        })
        .reduce(|| (0, 0), |x, y| (x.0 + y.0, x.1 + y.1))
}

/// The recursion over consecutive episodes on one thread; returns the masked episodes and the
/// steps written.
#[allow(clippy::too_many_arguments)]
fn episodes<T: Slot>(
    rewards: &[f64],
    values: &[f64],
    lengths: &[usize],
    bootstrap: Option<&[f64]>,
    gamma: f64,
    lambda: f64,
    advantages: &mut [T],
    returns: &mut [T],
) -> (usize, usize) {
    let mut out = GaeOut {
        advantages,
        returns,
        rewards,
        values,
        gamma,
        gamma_lambda: gamma * lambda,
    };
    let mut written = 0;
    // Episodes are scanned four at a time. One with a non-finite input is masked whole: a
    // non-finite bootstrap value is seen here, a non-finite reward or value by the recursion
    // itself (each lane sums `(r − r) + (V − V)`, NaN exactly when an input was NaN or ±∞), and
    // the episode is then overwritten with NaN — no separate pass over the inputs.
    let mut live: Vec<Lane> = Vec::with_capacity(lengths.len());
    let mut masked_episodes = 0;
    let mut start = 0;
    for (e, &length) in lengths.iter().enumerate() {
        let end = start + length;
        let last = bootstrap.map_or(0.0, |b| b[e]);
        if last.is_finite() {
            live.push(Lane {
                start,
                end,
                next: end,
                next_value: last,
                running: 0.0,
                poison: 0.0,
            });
        } else {
            masked_episodes += 1;
            written += out.mask(start, end);
        }
        start = end;
    }
    for lanes in live.chunks_mut(4) {
        if let [a, b, c, d] = lanes {
            // Four independent recursions interleaved: each step of one waits on its previous
            // step (a multiply and an add), so the other three fill the wait.
            let common = [&*a, &*b, &*c, &*d]
                .iter()
                .map(|l| l.next - l.start)
                .min()
                .unwrap_or(0);
            for _ in 0..common {
                out.step(a);
                out.step(b);
                out.step(c);
                out.step(d);
            }
        }
        for lane in lanes.iter_mut() {
            while lane.next > lane.start {
                out.step(lane);
            }
            written += lane.end - lane.start;
            if lane.poison.is_nan() {
                masked_episodes += 1;
                out.mask(lane.start, lane.end);
            }
        }
    }
    (masked_episodes, written)
}

/// One episode's backward recursion in progress.
struct Lane {
    start: usize,
    end: usize,
    /// One past the next step to compute (steps are computed from the end backwards).
    next: usize,
    next_value: f64,
    running: f64,
    /// `Σ (r_t − r_t) + (V_t − V_t)` over the steps so far: 0, or NaN once an input was not
    /// finite.
    poison: f64,
}

/// The inputs and outputs of [`gae`], for the step function.
struct GaeOut<'a, T> {
    advantages: &'a mut [T],
    returns: &'a mut [T],
    rewards: &'a [f64],
    values: &'a [f64],
    gamma: f64,
    gamma_lambda: f64,
}

impl<T: Slot> GaeOut<'_, T> {
    /// `δ_t = r_t + γ·V_{t+1} − V_t`, `A_t = δ_t + γλ·A_{t+1}`, `R_t = A_t + V_t` for the lane's
    /// next step.
    #[inline(always)]
    fn step(&mut self, lane: &mut Lane) {
        let t = lane.next - 1;
        let value = self.values[t];
        let reward = self.rewards[t];
        // `x − x` is 0 for a finite `x` and NaN otherwise: that is the check.
        #[allow(clippy::eq_op)]
        let poison = (reward - reward) + (value - value);
        lane.poison += poison;
        let delta = reward + self.gamma * lane.next_value - value;
        lane.running = delta + self.gamma_lambda * lane.running;
        self.advantages[t].put(lane.running);
        self.returns[t].put(lane.running + value);
        lane.next_value = value;
        lane.next = t;
    }

    /// Writes NaN to both outputs over `start..end`; returns the number of steps.
    fn mask(&mut self, start: usize, end: usize) -> usize {
        for slot in &mut self.advantages[start..end] {
            slot.put(f64::NAN);
        }
        for slot in &mut self.returns[start..end] {
            slot.put(f64::NAN);
        }
        end - start
    }
}

/// Potential-based reward shaping (Ng, Harada & Russell 1999, Theorem 1):
/// `r'_t = r_t + γ·Φ(s_{t+1}) − Φ(s_t)`, with `Φ` of the state after an episode's last step
/// taken as 0 (terminal states have zero potential in episodic tasks), which is what keeps the
/// optimal policy unchanged.
///
/// `potentials[t]` is `Φ(s_t)` for the state in which step `t` was taken. Non-finite inputs give a
/// non-finite shaped reward at the affected steps only (no recursion couples the steps).
pub fn potential_shaping(
    rewards: &[f64],
    potentials: &[f64],
    lengths: &[usize],
    gamma: f64,
) -> Result<Vec<f64>, ShapeError> {
    check_episodes(lengths, rewards.len())?;
    ShapeError::check_len("potentials", potentials.len(), rewards.len(), "step")?;
    check_discount("gamma", gamma)?;
    let mut shaped = Vec::with_capacity(rewards.len());
    let mut start = 0;
    for &length in lengths {
        let end = start + length;
        for t in start..end {
            let next = if t + 1 < end { potentials[t + 1] } else { 0.0 };
            shaped.push(rewards[t] + gamma * next - potentials[t]);
        }
        start = end;
    }
    Ok(shaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_by_hand() {
        // One episode of two steps, γ = 0.5, λ = 0.5, terminal.
        // δ1 = 1 + 0 − 2 = −1; δ0 = 0 + 0.5·2 − 1 = 0; A1 = −1; A0 = 0 + 0.25·(−1) = −0.25.
        let out = gae(&[0.0, 1.0], &[1.0, 2.0], &[2], None, 0.5, 0.5).unwrap();
        assert_eq!(out.advantages, [-0.25, -1.0]);
        assert_eq!(out.returns, [0.75, 1.0]);
        // Truncated with bootstrap 4: δ1 = 1 + 2 − 2 = 1; A0 = 0 + 0.25 = 0.25.
        let out = gae(&[0.0, 1.0], &[1.0, 2.0], &[2], Some(&[4.0]), 0.5, 0.5).unwrap();
        assert_eq!(out.advantages, [0.25, 1.0]);
        // λ = 1, γ = 1, zero values: advantages are reward-to-go.
        let out = gae(&[1.0, 2.0, 3.0, 5.0], &[0.0; 4], &[3, 1], None, 1.0, 1.0).unwrap();
        assert_eq!(out.advantages, [6.0, 5.0, 3.0, 5.0]);
    }

    #[test]
    fn gae_masks_whole_episodes() {
        let out = gae(&[1.0, f64::NAN, 1.0], &[0.0; 3], &[2, 1], None, 1.0, 1.0).unwrap();
        assert_eq!(out.masked_episodes, 1);
        assert!(out.advantages[0].is_nan() && out.advantages[1].is_nan());
        assert_eq!(out.advantages[2], 1.0);
        let out = gae(&[1.0], &[0.0], &[1], Some(&[f64::INFINITY]), 1.0, 1.0).unwrap();
        assert_eq!(out.masked_episodes, 1);
    }

    #[test]
    fn gae_bad_requests() {
        assert!(gae(&[1.0], &[0.0], &[2], None, 1.0, 1.0).is_err());
        assert!(gae(&[1.0], &[0.0, 1.0], &[1], None, 1.0, 1.0).is_err());
        assert!(gae(&[1.0], &[0.0], &[1], Some(&[]), 1.0, 1.0).is_err());
        assert!(gae(&[1.0], &[0.0], &[1], None, 1.5, 1.0).is_err());
        assert!(gae(&[1.0], &[0.0], &[1], None, 1.0, -0.1).is_err());
        let (mut a, mut r) = ([0.0; 2], [0.0; 1]);
        assert!(gae_into(&[1.0, 2.0], &[0.0; 2], &[2], None, 1.0, 1.0, &mut a, &mut r).is_err());
    }

    #[test]
    fn interleaved_episodes_equal_one_at_a_time() {
        // Five episodes of different lengths (four run interleaved, the fifth alone, and the
        // longer ones finish alone): each must equal the episode computed by itself.
        let lengths = [3, 7, 1, 5, 4];
        let total: usize = lengths.iter().sum();
        let rewards: Vec<f64> = (0..total).map(|t| (t as f64 * 0.7).sin()).collect();
        let values: Vec<f64> = (0..total).map(|t| (t as f64 * 1.3).cos()).collect();
        let bootstrap = [0.5, -1.0, 2.0, 0.0, 0.25];
        let all = gae(&rewards, &values, &lengths, Some(&bootstrap), 0.9, 0.8).unwrap();
        let mut start = 0;
        for (e, &length) in lengths.iter().enumerate() {
            let end = start + length;
            let one = gae(
                &rewards[start..end],
                &values[start..end],
                &[length],
                Some(&bootstrap[e..=e]),
                0.9,
                0.8,
            )
            .unwrap();
            assert_eq!(one.advantages, all.advantages[start..end], "episode {e}");
            assert_eq!(one.returns, all.returns[start..end], "episode {e}");
            start = end;
        }
    }

    #[test]
    fn threads_and_fresh_outputs_give_the_same_bits() {
        // Above `PARALLEL_STEPS` the episodes are split over threads: the result must be that of
        // one thread, bit for bit, masked episodes (a NaN reward, an infinite value, a NaN
        // bootstrap value) and uneven lengths included; `gae` and `gae_into` agree.
        let lengths: Vec<usize> = (0..700).map(|e| 1 + (e * 37) % 211).collect();
        let n: usize = lengths.iter().sum();
        assert!(n > PARALLEL_STEPS);
        let rewards: Vec<f64> = (0..n)
            .map(|t| {
                if t == 5000 {
                    f64::NAN
                } else {
                    (t as f64 * 0.7).sin()
                }
            })
            .collect();
        let values: Vec<f64> = (0..n)
            .map(|t| {
                if t == 40000 {
                    f64::INFINITY
                } else {
                    (t as f64 * 1.3).cos()
                }
            })
            .collect();
        let bootstrap: Vec<f64> = (0..lengths.len())
            .map(|e| if e == 300 { f64::NAN } else { e as f64 * 0.01 })
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| gae(&rewards, &values, &lengths, Some(&bootstrap), 0.99, 0.95))
                .unwrap()
        };
        let one = run(1);
        assert_eq!(one.masked_episodes, 3);
        for threads in [2, 3, 8] {
            let many = run(threads);
            assert_eq!(many.masked_episodes, one.masked_episodes);
            for (a, b) in [
                (&many.advantages, &one.advantages),
                (&many.returns, &one.returns),
            ] {
                for (t, (x, y)) in a.iter().zip(b).enumerate() {
                    assert!(
                        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                        "{threads} threads, step {t}: {x} vs {y}"
                    );
                }
            }
        }
        let (mut a, mut r) = (vec![0.0; n], vec![0.0; n]);
        let masked = gae_into(
            &rewards,
            &values,
            &lengths,
            Some(&bootstrap),
            0.99,
            0.95,
            &mut a,
            &mut r,
        )
        .unwrap();
        assert_eq!(masked, one.masked_episodes);
        let same = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
        };
        assert!(same(&a, &one.advantages) && same(&r, &one.returns));
    }

    #[test]
    fn shaping_telescopes() {
        // Σ_t γ^t r'_t = Σ_t γ^t r_t − Φ(s_0) for a terminal episode.
        let rewards = [1.0, 0.0, 2.0];
        let potentials = [3.0, -1.0, 0.5];
        let gamma = 0.9;
        let shaped = potential_shaping(&rewards, &potentials, &[3], gamma).unwrap();
        let discounted = |r: &[f64]| r.iter().rev().fold(0.0, |acc, x| x + gamma * acc);
        let difference = discounted(&shaped) - (discounted(&rewards) - potentials[0]);
        assert!(difference.abs() < 1e-12, "{difference}");
        assert_eq!(shaped[2], 2.0 - 0.5);
    }
}
