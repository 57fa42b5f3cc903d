//! REINFORCE++-baseline in two visits of the rewards.
//!
//! The estimator is `a_i = R_i − mean_g` (a score per sample), then `A_i = (a_i − mean_B) /
//! (std_B + ε)` over the batch. Written out naively that is four passes over the batch: write
//! the scores, two passes for their batch mean and spread, and one to normalise them. Here:
//!
//! 1. **Group statistics**: one visit per group, the same stable centring as every estimator
//!    ([`Kernel::signal`]: pivot, mean of `x − pivot` with its correction pass, and `M2_g`, the
//!    sum of squared deviations). Only the group's `(pivot, mean)` is kept, 16 bytes a group,
//!    and `M2_g` and the group's count are added to the batch sums.
//! 2. **Advantages**: one visit per sample, `A = ((x − pivot) − mean) / d`.
//!
//! The batch statistics follow from the groups' without touching the scores again. Every
//! group's scores sum to 0, so the batch mean of the scores is exactly 0, and their spread is
//! `Σ_g M2_g`: Chan, Golub & LeVeque's (1983) combination of partial statistics,
//! `M2 = Σ_g M2_g + Σ_g n_g (mean_g − mean)²`, with every `mean_g − mean = 0`. So
//! `d = √(Σ_g M2_g / (N or N − 1)) + ε`. NumPy's reference computes the batch mean of the
//! rounded scores, which is rounding noise next to them (`1e-17`-ish), and agrees to the last
//! few bits (`.ci/shape.sh`).
//!
//! **Fixed summation order.** The groups' counts and `M2_g` are added in group order within
//! blocks of [`BLOCK`] groups, and the blocks' sums in block order. Threads take whole blocks,
//! so the batch statistics, and every advantage, are the same to the bit on any number of
//! threads and for any layout of the groups (consecutive or scattered); and no running sum has
//! more than `BLOCK` + (number of blocks) terms, which bounds its rounding error (Higham 2002,
//! §4.2).

use std::ops::Range;

use rayon::prelude::*;

use super::{GroupFate, Layout, Lists, Ranges, Slot, Tally, PARALLEL_SAMPLES};
#[cfg(target_arch = "x86_64")]
use crate::simd::Avx;
use crate::simd::{Kernel, Portable};
use crate::stats::Centre;
use crate::StdKind;

/// Groups per block of the batch sums (a multiple of 4, so that four groups at a time never
/// straddle two blocks).
pub(super) const BLOCK: usize = 1024;

/// How phase 2 recomputes a group's scores: `a = (x − pivot) − mean` for each finite reward `x`.
/// A NaN pivot marks a group without scores (no finite reward, a sample alone, or filtered):
/// its samples' advantages are NaN (and a lone sample's is set to 0 at the end).
#[derive(Clone, Copy, Debug)]
pub(super) struct Score {
    pub(super) pivot: f64,
    pub(super) mean: f64,
}

const NO_SCORE: Score = Score {
    pivot: f64::NAN,
    mean: 0.0,
};

/// The scores of some groups: how many, the sum of their squared deviations from their
/// groups' means (`Σ_g M2_g`), and whether any comes from a group with a learning signal (if
/// none does, every score is exactly 0).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sums {
    count: usize,
    m2: f64,
    signal: bool,
}

impl Sums {
    pub(super) fn add(self, other: Sums) -> Sums {
        Sums {
            count: self.count + other.count,
            m2: self.m2 + other.m2,
            signal: self.signal || other.signal,
        }
    }

    /// The scores of a group with a learning signal: `count` of them, `m2` their sum of squared
    /// deviations from the group's `mean`. Rewards near ±f64::MAX can overflow a group's sums;
    /// such a group's scores are not finite, and it stays out of the batch statistics instead
    /// of making every advantage of the batch NaN.
    pub(super) fn signal(count: usize, mean: f64, m2: f64) -> Sums {
        if mean.is_finite() && m2.is_finite() {
            Sums {
                count,
                m2,
                signal: true,
            }
        } else {
            Sums::default()
        }
    }

    /// `d = std_B + ε` of the normalisation (`mean_B` is 0); `None` when the batch has no
    /// usable spread (no scores, all of them 0, or `d = 0`), and then every score's advantage
    /// is 0.
    fn divisor(self, std: StdKind, epsilon: f64) -> Option<f64> {
        if !self.signal {
            return None;
        }
        let batch = Centre {
            count: self.count,
            pivot: 0.0,
            shifted_mean: 0.0,
            m2: self.m2,
            constant: false,
        };
        let d = batch.std(std)? + epsilon;
        (d > 0.0).then_some(d)
    }
}

/// Phase 1 for group `g`: its score rule and its scores' sums; counts it in `tally`.
#[inline(always)]
fn score_group(
    kernel: impl Kernel,
    layout: &impl Layout,
    rewards: &[f64],
    g: usize,
    filter_zero_variance: bool,
    tally: &mut Tally,
) -> (Score, Sums) {
    if let Some((pivot, mean, m2)) = layout.signal(kernel, rewards, g) {
        let count = layout.len(g);
        tally.finite += count;
        return (Score { pivot, mean }, Sums::signal(count, mean, m2));
    }
    let centre = layout.centre(kernel, rewards, g);
    tally.finite += centre.count;
    match GroupFate::of(&centre) {
        GroupFate::Empty => {
            tally.summary.empty_groups += 1;
            (NO_SCORE, Sums::default())
        }
        GroupFate::Singleton => {
            tally.summary.singleton_groups += 1;
            layout.each(g, |i| {
                if rewards[i].is_finite() {
                    tally.singletons.push(i);
                }
            });
            (NO_SCORE, Sums::default())
        }
        GroupFate::ZeroVariance => {
            tally.summary.zero_variance_groups += 1;
            if filter_zero_variance {
                tally.summary.filtered += centre.count;
                return (NO_SCORE, Sums::default());
            }
            // Every finite reward equals the pivot: each score is `(x − pivot) − 0 = 0` exactly.
            let score = Score {
                pivot: centre.pivot,
                mean: 0.0,
            };
            let sums = Sums {
                count: centre.count,
                ..Sums::default()
            };
            (score, sums)
        }
        GroupFate::Signal => {
            let score = Score {
                pivot: centre.pivot,
                mean: centre.shifted_mean,
            };
            (
                score,
                Sums::signal(centre.count, centre.shifted_mean, centre.m2),
            )
        }
    }
}

/// Phase 1 over `groups`, which start at a block boundary: `scores` (indexed from
/// `groups.start`) gets each group's rule, and `blocks` each block's sums, in order.
fn scores_blocks(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    filter_zero_variance: bool,
    scores: &mut [Score],
    blocks: &mut Vec<Sums>,
) -> Tally {
    let mut tally = Tally::default();
    let mut start = groups.start;
    while start < groups.end {
        let stop = ((start / BLOCK + 1) * BLOCK).min(groups.end);
        let mut block = Sums::default();
        let part = &mut scores[start - groups.start..stop - groups.start];
        tally = tally.add(score_run_pass(
            layout,
            rewards,
            start..stop,
            filter_zero_variance,
            part,
            &mut block,
        ));
        blocks.push(block);
        start = stop;
    }
    tally
}

/// Phase 1 over `groups` (within one block; `scores` indexed from `groups.start`), adding their
/// sums to `block` in group order.
#[inline(always)]
fn score_run(
    kernel: impl Kernel,
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    filter_zero_variance: bool,
    scores: &mut [Score],
    block: &mut Sums,
) -> Tally {
    let mut tally = Tally::default();
    for g in groups.clone() {
        let (score, sums) =
            score_group(kernel, layout, rewards, g, filter_zero_variance, &mut tally);
        scores[g - groups.start] = score;
        *block = block.add(sums);
    }
    tally
}

/// Phase 2 over `groups` (`scores` indexed from `groups.start`): every sample's advantage;
/// returns the number written.
#[inline(always)]
fn advantages_with<T: Slot>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    scores: &[Score],
    divisor: Option<f64>,
    out: &mut [T],
) -> usize {
    let mut written = 0;
    for g in groups.clone() {
        let Score { pivot, mean } = scores[g - groups.start];
        // `x − x = 0` exactly when `x` is finite; a NaN pivot makes every value NaN.
        #[allow(clippy::eq_op)]
        let count = match divisor {
            Some(d) => layout.map(rewards, out, g, |x| {
                let y = ((x - pivot) - mean) / d;
                if x - x == 0.0 {
                    y
                } else {
                    f64::NAN
                }
            }),
            None => layout.map(rewards, out, g, |x| {
                let a = (x - pivot) - mean;
                if x - x == 0.0 {
                    a - a
                } else {
                    f64::NAN
                }
            }),
        };
        written += count;
    }
    written
}

/// [`score_run`] with the fastest kernel of this CPU (the same bits with either).
fn score_run_pass(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    filter_zero_variance: bool,
    scores: &mut [Score],
    block: &mut Sums,
) -> Tally {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx) = Avx::detect() {
        #[target_feature(enable = "avx")]
        fn score_run_avx(
            kernel: Avx,
            layout: &impl Layout,
            rewards: &[f64],
            groups: Range<usize>,
            filter_zero_variance: bool,
            scores: &mut [Score],
            block: &mut Sums,
        ) -> Tally {
            score_run(
                kernel,
                layout,
                rewards,
                groups,
                filter_zero_variance,
                scores,
                block,
            )
        }
        // SAFETY: `avx` exists only if the CPU has AVX.
        return unsafe {
            score_run_avx(
                avx,
                layout,
                rewards,
                groups,
                filter_zero_variance,
                scores,
                block,
            )
        };
    }
    score_run(
        Portable,
        layout,
        rewards,
        groups,
        filter_zero_variance,
        scores,
        block,
    )
}

/// Phase 1 over consecutive groups of `N` members each but perhaps the last (`N = 0`: any
/// sizes): on AVX with `N` a multiple of 4, four groups at a time ([`super::quads::scores`]),
/// the groups it leaves one at a time; the same bits either way.
fn fixed_scores<const N: usize>(
    rewards: &[f64],
    offsets: &[usize],
    groups: Range<usize>,
    filter_zero_variance: bool,
    scores: &mut [Score],
    blocks: &mut Vec<Sums>,
) -> Tally {
    let layout = &Ranges::<N> { offsets, base: 0 };
    #[cfg(target_arch = "x86_64")]
    if N > 0 && N.is_multiple_of(4) {
        if let Some(avx) = Avx::detect() {
            let one_by_one = |groups: Range<usize>, scores: &mut [Score], block: &mut Sums| {
                score_run_pass(layout, rewards, groups, filter_zero_variance, scores, block)
            };
            // SAFETY: `avx` exists only if the CPU has AVX.
            return unsafe {
                super::quads::scores::<N>(avx, rewards, offsets, groups, scores, blocks, one_by_one)
            };
        }
    }
    scores_blocks(
        layout,
        rewards,
        groups,
        filter_zero_variance,
        scores,
        blocks,
    )
}

/// Phase 2 over consecutive groups of `N` members each but perhaps the last (`N = 0`: any
/// sizes), `out` indexed from `base`.
fn fixed_advantages<const N: usize, T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    base: usize,
    groups: Range<usize>,
    scores: &[Score],
    divisor: Option<f64>,
    out: &mut [T],
) -> usize {
    let layout = &Ranges::<N> { offsets, base };
    advantages_pass(layout, rewards, groups, scores, divisor, out)
}

/// [`advantages_with`], its loops compiled for AVX where the CPU has it.
fn advantages_pass<T: Slot>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    scores: &[Score],
    divisor: Option<f64>,
    out: &mut [T],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if Avx::detect().is_some() {
        #[target_feature(enable = "avx")]
        fn advantages_avx<T: Slot>(
            layout: &impl Layout,
            rewards: &[f64],
            groups: Range<usize>,
            scores: &[Score],
            divisor: Option<f64>,
            out: &mut [T],
        ) -> usize {
            advantages_with(layout, rewards, groups, scores, divisor, out)
        }
        // SAFETY: the CPU has AVX (checked just above).
        return unsafe { advantages_avx(layout, rewards, groups, scores, divisor, out) };
    }
    advantages_with(layout, rewards, groups, scores, divisor, out)
}

/// REINFORCE++-baseline over consecutive groups (`offsets`), split over the current rayon
/// pool's threads for large inputs. Writes every element of `out`; the returned tally has
/// `written` and the lone samples to set to 0.
pub(super) fn over_ranges<T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    size: Option<usize>,
    std: StdKind,
    epsilon: f64,
    filter_zero_variance: bool,
    out: &mut [T],
) -> Tally {
    let n = rewards.len();
    let count = offsets.len() - 1;
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && n >= PARALLEL_SAMPLES;
    let mut scores = vec![NO_SCORE; count];
    // Phase 1, on runs of whole blocks.
    let run_scores = |groups: Range<usize>, scores: &mut [Score]| {
        let mut blocks = Vec::with_capacity(groups.len().div_ceil(BLOCK));
        let tally = match size {
            Some(8) => fixed_scores::<8>,
            Some(16) => fixed_scores::<16>,
            Some(32) => fixed_scores::<32>,
            Some(64) => fixed_scores::<64>,
            _ => fixed_scores::<0>,
        }(
            rewards,
            offsets,
            groups,
            filter_zero_variance,
            scores,
            &mut blocks,
        );
        (tally, blocks)
    };
    let block_count = count.div_ceil(BLOCK);
    let pieces = (4 * threads).min(block_count);
    let (mut tally, blocks) = if !parallel || pieces < 2 {
        run_scores(0..count, &mut scores)
    } else {
        let mut parts = Vec::with_capacity(pieces);
        let (mut rest, mut first) = (&mut scores[..], 0);
        for k in 1..=pieces {
            let last = (block_count * k / pieces * BLOCK).min(count);
            let (part, tail) = rest.split_at_mut(last - first);
            parts.push((first..last, part));
            (rest, first) = (tail, last);
        }
        parts
            .into_par_iter()
            .map(|(groups, part)| run_scores(groups, part))
            .collect::<Vec<_>>()
            .into_iter()
            .fold(
                (Tally::default(), Vec::new()),
                |(tally, mut blocks), (t, b)| {
                    blocks.extend(b);
                    (tally.add(t), blocks)
                },
            )
    };
    let divisor = blocks
        .into_iter()
        .fold(Sums::default(), Sums::add)
        .divisor(std, epsilon);
    // Phase 2, on runs of whole groups of about equal numbers of samples.
    let run_advantages = |groups: Range<usize>, out: &mut [T]| {
        let base = offsets[groups.start];
        let scores = &scores[groups.clone()];
        let pass = match size {
            Some(8) => fixed_advantages::<8, T>,
            Some(16) => fixed_advantages::<16, T>,
            Some(32) => fixed_advantages::<32, T>,
            Some(64) => fixed_advantages::<64, T>,
            _ => fixed_advantages::<0, T>,
        };
        pass(rewards, offsets, base, groups, scores, divisor, out)
    };
    tally.written = if !parallel {
        run_advantages(0..count, out)
    } else {
        super::split_groups(n, offsets, threads, out)
            .into_par_iter()
            .map(|(groups, part)| run_advantages(groups, part))
            .sum()
    };
    tally.summary.groups = count;
    tally
}

/// REINFORCE++-baseline over scattered groups (member lists), on one thread.
pub(super) fn over_lists(
    rewards: &[f64],
    layout: &Lists,
    std: StdKind,
    epsilon: f64,
    filter_zero_variance: bool,
    out: &mut [f64],
) -> Tally {
    let count = layout.0.count();
    let mut scores = vec![NO_SCORE; count];
    let mut blocks = Vec::with_capacity(count.div_ceil(BLOCK));
    let mut tally = scores_blocks(
        layout,
        rewards,
        0..count,
        filter_zero_variance,
        &mut scores,
        &mut blocks,
    );
    let divisor = blocks
        .into_iter()
        .fold(Sums::default(), Sums::add)
        .divisor(std, epsilon);
    tally.written = advantages_pass(layout, rewards, 0..count, &scores, divisor, out);
    tally.summary.groups = count;
    tally
}
