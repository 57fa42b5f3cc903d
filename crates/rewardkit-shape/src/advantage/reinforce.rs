//! REINFORCE++, with and without its group-mean baseline, in two visits of the rewards.
//!
//! The estimator scores each sample, `a_i = R_i − mean_g` with the baseline and `a_i = R_i`
//! without, then normalises the scores over the batch: `A_i = (a_i − mean_B) / (std_B + ε)`.
//! Written out naively that is four passes over the batch: write the scores, two passes for
//! their batch mean and spread, and one to normalise them. Here:
//!
//! 1. **Group statistics**: one visit per group, the same stable centring as every estimator
//!    ([`Kernel::signal`]: pivot, mean of `x − pivot` with its correction pass, and `M2_g`, the
//!    sum of squared deviations). The group's `(pivot, mean)` is kept, 16 bytes a group, and
//!    its scores' count, mean and `M2` join the batch statistics.
//! 2. **Advantages**: one visit per sample, `A = ((x − pivot) − mean) / d` with the group's
//!    pivot and mean (baseline), or the batch's (no baseline).
//!
//! The batch statistics follow from the groups' without touching the scores again, by Chan,
//! Golub & LeVeque's (1983) combination of partial statistics: two sets of `n_a`, `n_b` values
//! with means `μ_a`, `μ_b` and sums of squared deviations `M2_a`, `M2_b` make `n = n_a + n_b`
//! values with `μ = μ_a + δ·n_b/n` and `M2 = M2_a + M2_b + δ²·n_a·n_b/n`, where `δ = μ_b − μ_a`.
//! - With the baseline every group's scores have mean 0, so every `δ` is 0: the batch mean is
//!   exactly 0 and `M2_B = Σ_g M2_g`. NumPy's reference computes the batch mean of the rounded
//!   scores, which is rounding noise next to them (`1e-17`-ish), and agrees to the last few bits
//!   (`.ci/shape.sh`).
//! - Without it a group's scores are its rewards, whose mean is taken from the *origin*, the
//!   first score of the batch (see [`origin`]): `μ_g = (pivot_g − origin) + mean_g`. Rewards close together
//!   relative to their size (`1e9 + u`) stay exact in that shift (Sterbenz's lemma), as in every
//!   group statistic of this crate, and the advantages are `((x − origin) − μ_B) / d`.
//!
//! **Fixed summation order.** The groups' statistics are combined in group order within
//! blocks of [`BLOCK`] groups, and the blocks' in block order. Threads take whole blocks,
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

/// Which REINFORCE++ a pass computes: how a group's scores enter the batch statistics. A type
/// rather than a value, so that each variant's per-group work compiles to its own code (the
/// baseline's is plain sums).
pub(super) trait Centring: Copy + Send + Sync {
    /// Whether a lone finite reward is a score (without the baseline) or gets advantage 0.
    const LONE_SCORES: bool;

    /// The sums of the scores of a group of `count` finite rewards with statistics `pivot`,
    /// `mean` (of `x − pivot`) and `m2`; `spread` says whether they are not all equal. Rewards
    /// near ±f64::MAX can overflow a group's sums; such a group's scores are not finite, and it
    /// stays out of the batch statistics instead of making every advantage of the batch NaN.
    fn sums(self, count: usize, pivot: f64, mean: f64, m2: f64, spread: bool) -> Sums;

    /// Two sets of scores together.
    fn add(self, a: Sums, b: Sums) -> Sums;

    /// What replaces every scored group's own pivot and mean in phase 2, if anything.
    fn batch(self, all: Sums) -> Option<Score>;
}

/// REINFORCE++-baseline: the scores are `x − mean_g`, each group's own centring, so every set
/// of scores has mean 0.
#[derive(Clone, Copy, Debug)]
pub(super) struct Baseline;

impl Centring for Baseline {
    const LONE_SCORES: bool = false;

    #[inline(always)]
    fn sums(self, count: usize, _pivot: f64, mean: f64, m2: f64, spread: bool) -> Sums {
        Sums::fenced(count, 0.0, m2, spread, mean)
    }

    /// Means all 0: the counts and the `M2`s add.
    #[inline(always)]
    fn add(self, a: Sums, b: Sums) -> Sums {
        Sums {
            count: a.count + b.count,
            mean: 0.0,
            m2: a.m2 + b.m2,
            signal: a.signal || b.signal,
        }
    }

    fn batch(self, _all: Sums) -> Option<Score> {
        None
    }
}

/// REINFORCE++: the scores are the rewards, their means measured from an origin, the first
/// score of the batch ([`origin`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct FromOrigin(pub(super) f64);

impl Centring for FromOrigin {
    const LONE_SCORES: bool = true;

    #[inline(always)]
    fn sums(self, count: usize, pivot: f64, mean: f64, m2: f64, _spread: bool) -> Sums {
        Sums::fenced(count, (pivot - self.0) + mean, m2, true, mean)
    }

    #[inline(always)]
    fn add(self, a: Sums, b: Sums) -> Sums {
        a.add(b)
    }

    fn batch(self, all: Sums) -> Option<Score> {
        Some(Score {
            pivot: self.0,
            mean: all.mean,
        })
    }
}

/// The origin of REINFORCE++ without the baseline: the first finite reward of the first group
/// that takes part (has a finite reward, finite sums, and is not filtered out). That is the
/// scores' own first value, which a two-pass mean over them would pivot on, so the shifts
/// `x − origin` stay small next to the scores' spread. Finding it visits only the groups up to
/// that one.
fn origin(
    layout: &impl Layout,
    count: usize,
    rewards: &[f64],
    filter_zero_variance: bool,
) -> FromOrigin {
    // A group whose sums overflow (rewards near ±f64::MAX) stays out of the batch statistics
    // (`FromOrigin::sums`), so it cannot be the origin either.
    let takes_part = |centre: &Centre| {
        centre.count > 0
            && centre.shifted_mean.is_finite()
            && centre.m2.is_finite()
            && !(filter_zero_variance && GroupFate::of(centre) == GroupFate::ZeroVariance)
    };
    let origin = (0..count)
        .map(|g| layout.centre(Portable, rewards, g))
        .find(takes_part)
        .map_or(0.0, |centre| centre.pivot);
    FromOrigin(origin)
}

/// A group's pivot and mean from phase 1: with the baseline, how phase 2 recomputes its scores,
/// `a = (x − pivot) − mean` for each finite reward `x`. A NaN pivot marks a group without scores
/// (no finite reward, filtered, or — with the baseline — a sample alone): its samples'
/// advantages are NaN (and a lone sample's is set to 0 at the end).
#[derive(Clone, Copy, Debug)]
pub(super) struct Score {
    pub(super) pivot: f64,
    pub(super) mean: f64,
}

const NO_SCORE: Score = Score {
    pivot: f64::NAN,
    mean: 0.0,
};

/// The scores of some groups: how many, their mean (from the origin, without the baseline; 0
/// with it), their sum of squared deviations from it, and whether they can have a spread (with
/// the baseline, whether any comes from a group with a learning signal: if none does, every
/// score is exactly 0).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sums {
    count: usize,
    mean: f64,
    m2: f64,
    signal: bool,
}

impl Sums {
    /// Chan, Golub & LeVeque's combination of two sets of values (see the module docs). With
    /// equal means it adds the counts and the `M2`s and nothing else.
    pub(super) fn add(self, other: Sums) -> Sums {
        let signal = self.signal || other.signal;
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        // Equal means (for two empty sets too: the only sets with a count of 0 are
        // `Sums::default()`, of mean 0): no division. Otherwise the count
        // is positive, and a set of 0 values leaves the other as it is (`share` is 0 or 1).
        if delta == 0.0 {
            return Sums {
                count,
                mean: self.mean,
                m2: self.m2 + other.m2,
                signal,
            };
        }
        let share = other.count as f64 / count as f64;
        Sums {
            count,
            mean: self.mean + delta * share,
            m2: (self.m2 + other.m2) + delta * delta * (self.count as f64 * share),
            signal,
        }
    }

    /// A group's sums, or none when its own statistics (`group_mean`, `m2`) or `mean` overflowed
    /// (see [`Centring::sums`]).
    #[inline(always)]
    fn fenced(count: usize, mean: f64, m2: f64, signal: bool, group_mean: f64) -> Sums {
        if group_mean.is_finite() && m2.is_finite() && mean.is_finite() {
            Sums {
                count,
                mean,
                m2,
                signal,
            }
        } else {
            Sums::default()
        }
    }

    /// The statistics of `count` values whose mean, measured from an origin, is `mean`, and
    /// whose sum of squared deviations is `m2`, as they are (no fence against overflow).
    pub(super) fn of_values(count: usize, mean: f64, m2: f64) -> Sums {
        Sums {
            count,
            mean,
            m2,
            signal: true,
        }
    }

    /// The standard deviation of the scores (`None` below one, or for the sample std two).
    pub(super) fn std(self, kind: StdKind) -> Option<f64> {
        let all = Centre {
            count: self.count,
            pivot: 0.0,
            shifted_mean: self.mean,
            m2: self.m2,
            constant: false,
        };
        all.std(kind)
    }

    /// `d = std_B + ε` of the normalisation; `None` when the batch has no usable spread (no
    /// scores, all of them 0 with the baseline, or `d = 0`), and then every score's advantage
    /// is 0.
    fn divisor(self, std: StdKind, epsilon: f64) -> Option<f64> {
        if !self.signal {
            return None;
        }
        let d = self.std(std)? + epsilon;
        (d > 0.0).then_some(d)
    }
}

/// What phase 1 does with a group: which REINFORCE++, and whether zero-variance groups are
/// filtered out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rule<C> {
    pub(super) centring: C,
    pub(super) filter_zero_variance: bool,
}

/// Phase 1 for group `g`: its pivot and mean and its scores' sums; counts it in `tally`.
#[inline(always)]
fn score_group<C: Centring>(
    kernel: impl Kernel,
    layout: &impl Layout,
    rewards: &[f64],
    g: usize,
    rule: Rule<C>,
    tally: &mut Tally,
) -> (Score, Sums) {
    let centring = rule.centring;
    if let Some((pivot, mean, m2)) = layout.signal(kernel, rewards, g) {
        let count = layout.len(g);
        tally.finite += count;
        let sums = centring.sums(count, pivot, mean, m2, true);
        return (Score { pivot, mean }, sums);
    }
    let centre = layout.centre(kernel, rewards, g);
    tally.finite += centre.count;
    let (pivot, count) = (centre.pivot, centre.count);
    match GroupFate::of(&centre) {
        GroupFate::Empty => {
            tally.summary.empty_groups += 1;
            (NO_SCORE, Sums::default())
        }
        GroupFate::Singleton => {
            tally.summary.singleton_groups += 1;
            if C::LONE_SCORES {
                // Without the baseline a lone reward is a score like any other.
                let sums = centring.sums(1, pivot, 0.0, 0.0, false);
                return (Score { pivot, mean: 0.0 }, sums);
            }
            layout.each(g, |i| {
                if rewards[i].is_finite() {
                    tally.singletons.push(i);
                }
            });
            (NO_SCORE, Sums::default())
        }
        GroupFate::ZeroVariance => {
            tally.summary.zero_variance_groups += 1;
            if rule.filter_zero_variance {
                tally.summary.filtered += count;
                return (NO_SCORE, Sums::default());
            }
            // Every finite reward equals the pivot: with the baseline each score is
            // `(x − pivot) − 0 = 0` exactly.
            let sums = centring.sums(count, pivot, 0.0, 0.0, false);
            (Score { pivot, mean: 0.0 }, sums)
        }
        GroupFate::Signal => {
            let mean = centre.shifted_mean;
            let sums = centring.sums(count, pivot, mean, centre.m2, true);
            (Score { pivot, mean }, sums)
        }
    }
}

/// Phase 1 over `groups`, which start at a block boundary: `scores` (indexed from
/// `groups.start`) gets each group's rule, and `blocks` each block's sums, in order.
fn scores_blocks<C: Centring>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    rule: Rule<C>,
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
            rule,
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
fn score_run<C: Centring>(
    kernel: impl Kernel,
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    rule: Rule<C>,
    scores: &mut [Score],
    block: &mut Sums,
) -> Tally {
    let mut tally = Tally::default();
    for g in groups.clone() {
        let (score, sums) = score_group(kernel, layout, rewards, g, rule, &mut tally);
        scores[g - groups.start] = score;
        *block = rule.centring.add(*block, sums);
    }
    tally
}

/// How phase 2 normalises the scores.
#[derive(Clone, Copy, Debug)]
pub(super) struct Norm {
    /// `d = std_B + ε`, or `None`: no usable spread, every score's advantage is 0.
    divisor: Option<f64>,
    /// Without the baseline, the origin and the batch mean of the rewards from it, which replace
    /// every scored group's own pivot and mean: `A = ((x − origin) − mean_B) / d`.
    batch: Option<Score>,
}

impl Norm {
    /// The normalisation of scores with batch statistics `all` under `centring`.
    fn of(all: Sums, centring: impl Centring, std: StdKind, epsilon: f64) -> Norm {
        Norm {
            divisor: all.divisor(std, epsilon),
            batch: centring.batch(all),
        }
    }
}

/// Phase 2 over `groups` (`scores` indexed from `groups.start`): every sample's advantage, with
/// `pick` choosing each group's pivot and mean from its own; returns the number written.
#[inline(always)]
fn advantages_with<T: Slot>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    scores: &[Score],
    divisor: Option<f64>,
    out: &mut [T],
    pick: impl Fn(Score) -> Score,
) -> usize {
    let mut written = 0;
    for g in groups.clone() {
        let Score { pivot, mean } = pick(scores[g - groups.start]);
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
fn score_run_pass<C: Centring>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    rule: Rule<C>,
    scores: &mut [Score],
    block: &mut Sums,
) -> Tally {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx) = Avx::detect() {
        #[target_feature(enable = "avx")]
        fn score_run_avx<C: Centring>(
            kernel: Avx,
            layout: &impl Layout,
            rewards: &[f64],
            groups: Range<usize>,
            rule: Rule<C>,
            scores: &mut [Score],
            block: &mut Sums,
        ) -> Tally {
            score_run(kernel, layout, rewards, groups, rule, scores, block)
        }
        // SAFETY: `avx` exists only if the CPU has AVX.
        return unsafe { score_run_avx(avx, layout, rewards, groups, rule, scores, block) };
    }
    score_run(Portable, layout, rewards, groups, rule, scores, block)
}

/// Phase 1 over consecutive groups of `N` members each but perhaps the last (`N = 0`: any
/// sizes): on AVX with `N` a multiple of 4, four groups at a time ([`super::quads::scores`]),
/// the groups it leaves one at a time; the same bits either way.
fn fixed_scores<const N: usize, C: Centring>(
    rewards: &[f64],
    offsets: &[usize],
    groups: Range<usize>,
    rule: Rule<C>,
    scores: &mut [Score],
    blocks: &mut Vec<Sums>,
) -> Tally {
    let layout = &Ranges::<N> { offsets, base: 0 };
    #[cfg(target_arch = "x86_64")]
    if N > 0 && N.is_multiple_of(4) {
        if let Some(avx) = Avx::detect() {
            let one_by_one = |groups: Range<usize>, scores: &mut [Score], block: &mut Sums| {
                score_run_pass(layout, rewards, groups, rule, scores, block)
            };
            // SAFETY: `avx` exists only if the CPU has AVX.
            return unsafe {
                super::quads::scores::<N, C>(
                    avx,
                    rewards,
                    offsets,
                    groups,
                    rule.centring,
                    scores,
                    blocks,
                    one_by_one,
                )
            };
        }
    }
    scores_blocks(layout, rewards, groups, rule, scores, blocks)
}

/// Phase 2 over consecutive groups of `N` members each but perhaps the last (`N = 0`: any
/// sizes), `out` indexed from `base`.
fn fixed_advantages<const N: usize, T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    base: usize,
    groups: Range<usize>,
    scores: &[Score],
    norm: Norm,
    out: &mut [T],
) -> usize {
    let layout = &Ranges::<N> { offsets, base };
    advantages_pass(layout, rewards, groups, scores, norm, out)
}

/// Phase 2 over `groups` under `norm`: the choice between the groups' own pivots and means and
/// the batch's is made once, and each choice gets its own loop.
fn advantages_pass<T: Slot>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    scores: &[Score],
    norm: Norm,
    out: &mut [T],
) -> usize {
    let divisor = norm.divisor;
    match norm.batch {
        None => picked_pass(layout, rewards, groups, scores, divisor, out, |own| own),
        Some(batch) => picked_pass(layout, rewards, groups, scores, divisor, out, move |own| {
            if own.pivot.is_nan() {
                own
            } else {
                batch
            }
        }),
    }
}

/// [`advantages_with`], its loops compiled for AVX where the CPU has it.
fn picked_pass<T: Slot>(
    layout: &impl Layout,
    rewards: &[f64],
    groups: Range<usize>,
    scores: &[Score],
    divisor: Option<f64>,
    out: &mut [T],
    pick: impl Fn(Score) -> Score,
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
            pick: impl Fn(Score) -> Score,
        ) -> usize {
            advantages_with(layout, rewards, groups, scores, divisor, out, pick)
        }
        // SAFETY: the CPU has AVX (checked just above).
        return unsafe { advantages_avx(layout, rewards, groups, scores, divisor, out, pick) };
    }
    advantages_with(layout, rewards, groups, scores, divisor, out, pick)
}

/// REINFORCE++ (with the group-mean `baseline` or without) over consecutive groups
/// (`offsets`), split over the current rayon pool's threads for large inputs. Writes every
/// element of `out`; the returned tally has `written` and the lone samples to set to 0.
#[allow(clippy::too_many_arguments)]
pub(super) fn over_ranges<T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    size: Option<usize>,
    baseline: bool,
    std: StdKind,
    epsilon: f64,
    filter_zero_variance: bool,
    out: &mut [T],
) -> Tally {
    if baseline {
        let rule = Rule {
            centring: Baseline,
            filter_zero_variance,
        };
        return ranges_with(rewards, offsets, size, rule, std, epsilon, out);
    }
    let layout = &Ranges::<0> { offsets, base: 0 };
    let centring = origin(layout, offsets.len() - 1, rewards, filter_zero_variance);
    let rule = Rule {
        centring,
        filter_zero_variance,
    };
    ranges_with(rewards, offsets, size, rule, std, epsilon, out)
}

/// [`over_ranges`] under one centring.
fn ranges_with<C: Centring, T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    size: Option<usize>,
    rule: Rule<C>,
    std: StdKind,
    epsilon: f64,
    out: &mut [T],
) -> Tally {
    let centring = rule.centring;
    let n = rewards.len();
    let count = offsets.len() - 1;
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && n >= PARALLEL_SAMPLES;
    let mut scores = vec![NO_SCORE; count];
    // Phase 1, on runs of whole blocks.
    let run_scores = |groups: Range<usize>, scores: &mut [Score]| {
        let mut blocks = Vec::with_capacity(groups.len().div_ceil(BLOCK));
        let tally = match size {
            Some(8) => fixed_scores::<8, C>,
            Some(16) => fixed_scores::<16, C>,
            Some(32) => fixed_scores::<32, C>,
            Some(64) => fixed_scores::<64, C>,
            _ => fixed_scores::<0, C>,
        }(rewards, offsets, groups, rule, scores, &mut blocks);
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
    let all = blocks
        .into_iter()
        .fold(Sums::default(), |a, b| centring.add(a, b));
    let norm = Norm::of(all, centring, std, epsilon);
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
        pass(rewards, offsets, base, groups, scores, norm, out)
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

/// REINFORCE++ (with the group-mean `baseline` or without) over scattered groups (member
/// lists), on one thread.
pub(super) fn over_lists(
    rewards: &[f64],
    layout: &Lists,
    baseline: bool,
    std: StdKind,
    epsilon: f64,
    filter_zero_variance: bool,
    out: &mut [f64],
) -> Tally {
    let count = layout.0.count();
    if baseline {
        let rule = Rule {
            centring: Baseline,
            filter_zero_variance,
        };
        return lists_with(rewards, layout, rule, std, epsilon, out);
    }
    let centring = origin(layout, count, rewards, filter_zero_variance);
    let rule = Rule {
        centring,
        filter_zero_variance,
    };
    lists_with(rewards, layout, rule, std, epsilon, out)
}

/// [`over_lists`] under one centring.
fn lists_with<C: Centring>(
    rewards: &[f64],
    layout: &Lists,
    rule: Rule<C>,
    std: StdKind,
    epsilon: f64,
    out: &mut [f64],
) -> Tally {
    let (centring, count) = (rule.centring, layout.0.count());
    let mut scores = vec![NO_SCORE; count];
    let mut blocks = Vec::with_capacity(count.div_ceil(BLOCK));
    let mut tally = scores_blocks(layout, rewards, 0..count, rule, &mut scores, &mut blocks);
    let all = blocks
        .into_iter()
        .fold(Sums::default(), |a, b| centring.add(a, b));
    let norm = Norm::of(all, centring, std, epsilon);
    tally.written = advantages_pass(layout, rewards, 0..count, &scores, norm, out);
    tally.summary.groups = count;
    tally
}
