//! Advantage estimators for group-sampled policy optimisation.

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::check_finite_at_least;
#[cfg(target_arch = "x86_64")]
use crate::simd::Avx;
use crate::simd::{output_vec, Kernel, Portable};
use crate::stats::Centre;
use crate::{Groups, ShapeError};

#[cfg(target_arch = "x86_64")]
mod quads;
mod reinforce;

/// Which standard deviation to divide by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdKind {
    /// Divide the sum of squares by `n` (NumPy's `std()` default).
    Population,
    /// Divide by `n − 1` (Bessel's correction; PyTorch's `std()` default, so verl's, TRL's and
    /// OpenRLHF's).
    Sample,
}

/// Where GRPO's standard deviation comes from (TRL's `scale_rewards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdScope {
    /// The std of the sample's own group (the GRPO paper; TRL `scale_rewards="group"`).
    Group,
    /// The std of all finite rewards of the batch (TRL `scale_rewards="batch"`).
    Batch,
    /// No division (TRL `scale_rewards="none"`; this is Dr.GRPO).
    None,
}

/// An advantage estimator over outcome rewards (one scalar reward per sample).
///
/// In every formula `mean_g` is the mean of the finite rewards of the sample's group and `K` their
/// number; see the crate docs for how non-finite rewards, one-element groups and zero-variance
/// groups are treated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "estimator", rename_all = "snake_case", deny_unknown_fields)]
pub enum Estimator {
    /// GRPO (Shao et al. 2024, DeepSeekMath §4.1.2; verl `compute_grpo_outcome_advantage`):
    /// `A_i = (R_i − mean_g) / (std + ε)`, the std taken per [`StdScope`].
    Grpo {
        /// Where the std comes from.
        scale: StdScope,
        /// Population or sample std.
        std: StdKind,
        /// Added to the std before dividing (verl: 1e-6; TRL: 1e-4).
        epsilon: f64,
    },
    /// Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", eq. 3): `A_i = R_i −
    /// mean_g`, no std division.
    DrGrpo,
    /// RLOO (Ahmadian et al. 2024, eq. 4; Kool et al. 2019): `A_i = R_i − (1/(K−1)) Σ_{j≠i} R_j`,
    /// computed as `(K/(K−1))·(R_i − mean_g)` from stably centred values.
    Rloo,
    /// REINFORCE++ (Hu 2025, OpenRLHF `reinforce` / `reinforce_baseline`): with `baseline`,
    /// `a_i = R_i − mean_g`, else `a_i = R_i`; then `A_i = (a_i − mean_B(a)) / (std_B(a) + ε)`
    /// over the batch `B`.
    ///
    /// The batch statistics are computed from the groups' own (count, mean, `M2_g`, the sum of
    /// squared deviations), by Chan, Golub & LeVeque's combination of partial statistics in a
    /// fixed order, in two visits of the rewards instead of four (see `advantage/reinforce.rs`).
    /// With the baseline each group's scores sum to 0, so `mean_B(a) = 0` exactly and
    /// `std_B(a)² = Σ_g M2_g / (N or N − 1)`.
    ReinforcePlusPlus {
        /// Subtract the group mean first (REINFORCE++-baseline).
        baseline: bool,
        /// Population or sample std for the batch normalisation.
        std: StdKind,
        /// Added to the std (OpenRLHF: 1e-8).
        epsilon: f64,
    },
}

impl Estimator {
    /// GRPO as verl computes it: group std, sample std, ε = 1e-6.
    pub const GRPO: Estimator = Estimator::Grpo {
        scale: StdScope::Group,
        std: StdKind::Sample,
        epsilon: 1e-6,
    };

    /// REINFORCE++ as OpenRLHF computes it: sample std, ε = 1e-8.
    pub const fn reinforce_plus_plus(baseline: bool) -> Estimator {
        Estimator::ReinforcePlusPlus {
            baseline,
            std: StdKind::Sample,
            epsilon: 1e-8,
        }
    }

    /// The estimator's name as the CLI and specs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Estimator::Grpo { .. } => "grpo",
            Estimator::DrGrpo => "dr_grpo",
            Estimator::Rloo => "rloo",
            Estimator::ReinforcePlusPlus {
                baseline: false, ..
            } => "reinforce_pp",
            Estimator::ReinforcePlusPlus { baseline: true, .. } => "reinforce_pp_baseline",
        }
    }

    fn validate(&self) -> Result<(), ShapeError> {
        match *self {
            Estimator::Grpo { epsilon, .. } | Estimator::ReinforcePlusPlus { epsilon, .. } => {
                check_finite_at_least("epsilon", epsilon, 0.0, "a finite number ≥ 0")
            }
            Estimator::DrGrpo | Estimator::Rloo => Ok(()),
        }
    }

    /// Whether the estimator uses group statistics (all but REINFORCE++ without baseline).
    pub fn uses_groups(&self) -> bool {
        !matches!(
            self,
            Estimator::ReinforcePlusPlus {
                baseline: false,
                ..
            }
        )
    }
}

/// The advantage estimators by the names the CLI (`rewardkit advantages --estimator`) and the
/// server (`POST /v1/advantages`) use: the outcome-reward [`Estimator`]s plus OPRL's
/// episode-plus-step combination ([`crate::oprl_advantages`]) and GAE ([`crate::gae`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageMethod {
    /// [`Estimator::Grpo`].
    Grpo,
    /// [`Estimator::DrGrpo`].
    DrGrpo,
    /// [`Estimator::Rloo`].
    Rloo,
    /// [`Estimator::ReinforcePlusPlus`] without baseline.
    ReinforcePp,
    /// [`Estimator::ReinforcePlusPlus`] with the group-mean baseline.
    ReinforcePpBaseline,
    /// OPRL: GRPO of the outcome + α × the step rewards normalised over the group's steps.
    Oprl,
    /// Generalised advantage estimation over per-step rewards and critic values.
    Gae,
}

impl AdvantageMethod {
    /// Every method, in documentation order.
    pub const ALL: [AdvantageMethod; 7] = [
        AdvantageMethod::Grpo,
        AdvantageMethod::DrGrpo,
        AdvantageMethod::Rloo,
        AdvantageMethod::ReinforcePp,
        AdvantageMethod::ReinforcePpBaseline,
        AdvantageMethod::Oprl,
        AdvantageMethod::Gae,
    ];

    /// The snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            AdvantageMethod::Grpo => "grpo",
            AdvantageMethod::DrGrpo => "dr_grpo",
            AdvantageMethod::Rloo => "rloo",
            AdvantageMethod::ReinforcePp => "reinforce_pp",
            AdvantageMethod::ReinforcePpBaseline => "reinforce_pp_baseline",
            AdvantageMethod::Oprl => "oprl",
            AdvantageMethod::Gae => "gae",
        }
    }

    /// The method called `name`, if any.
    pub fn from_name(name: &str) -> Option<AdvantageMethod> {
        AdvantageMethod::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The options of an [`AdvantageMethod`], each optional: [`AdvantageOptions::resolve`] fills the
/// defaults of the chosen method (those of verl and OpenRLHF) and refuses options the method does
/// not use, so a typo'd configuration is an error, not a silent no-op.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvantageOptions {
    /// GRPO only: where the std comes from (default `group`).
    #[serde(default)]
    pub scale: Option<StdScope>,
    /// GRPO, OPRL and REINFORCE++: population or sample std (default `sample`).
    #[serde(default)]
    pub std: Option<StdKind>,
    /// GRPO, OPRL and REINFORCE++: added to the std (default 1e-6 for GRPO and OPRL as verl,
    /// 1e-8 for REINFORCE++ as OpenRLHF).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Mask the samples of zero-variance groups instead of giving them 0 (not for GAE).
    #[serde(default)]
    pub filter_zero_variance: bool,
    /// OPRL only: the weight α of the step advantages (default 1).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// GAE only: the discount γ ∈ [0, 1] (default 1, as verl).
    #[serde(default)]
    pub gamma: Option<f64>,
    /// GAE only: λ ∈ [0, 1] (default 1, as verl).
    #[serde(default)]
    pub lambda: Option<f64>,
}

/// A validated advantage configuration: what to call with what.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvantageConfig {
    /// The method.
    pub method: AdvantageMethod,
    /// The outcome estimator; for OPRL its GRPO part, for GAE unused ([`Estimator::DrGrpo`]).
    pub estimator: Estimator,
    /// Mask zero-variance groups.
    pub filter_zero_variance: bool,
    /// OPRL's α, for OPRL.
    pub oprl_alpha: Option<f64>,
    /// GAE's `(γ, λ)`, for GAE.
    pub gae: Option<(f64, f64)>,
}

impl AdvantageOptions {
    /// Checks the options against `method` and fills in its defaults.
    pub fn resolve(&self, method: AdvantageMethod) -> Result<AdvantageConfig, ShapeError> {
        use AdvantageMethod as M;
        let name = method.name();
        let not_for = |option, applies_to, why| ShapeError::NotApplicable {
            option,
            estimator: name,
            applies_to,
            why,
        };
        let is_gae = method == M::Gae;
        let oprl = method == M::Oprl;
        let grpo = matches!(method, M::Grpo | M::Oprl);
        let normalises = grpo || matches!(method, M::ReinforcePp | M::ReinforcePpBaseline);
        if !is_gae {
            if self.gamma.is_some() {
                return Err(not_for("gamma", "gae", "has no discount"));
            }
            if self.lambda.is_some() {
                return Err(not_for("lambda", "gae", "has no λ"));
            }
        }
        for (option, value) in [("gamma", self.gamma), ("lambda", self.lambda)] {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(&v) {
                    return Err(ShapeError::invalid(option, v, "a number in [0, 1]"));
                }
            }
        }
        if self.alpha.is_some() && !oprl {
            return Err(not_for("alpha", "oprl", "has no step rewards"));
        }
        if let Some(alpha) = self.alpha {
            if !alpha.is_finite() {
                return Err(ShapeError::invalid("alpha", alpha, "a finite number"));
            }
        }
        if self.scale.is_some() && method != M::Grpo {
            return Err(not_for("scale", "grpo", "has no std scope"));
        }
        let std_users = "grpo, oprl, reinforce_pp and reinforce_pp_baseline";
        if !normalises {
            if self.std.is_some() {
                return Err(not_for("std", std_users, "does not divide by a std"));
            }
            if self.epsilon.is_some() {
                return Err(not_for("epsilon", std_users, "does not divide by a std"));
            }
        }
        if is_gae && self.filter_zero_variance {
            return Err(not_for(
                "filter_zero_variance",
                "the group estimators",
                "has no groups",
            ));
        }
        if let Some(epsilon) = self.epsilon {
            check_finite_at_least("epsilon", epsilon, 0.0, "a finite number ≥ 0")?;
        }
        let std = self.std.unwrap_or(StdKind::Sample);
        let estimator = match method {
            M::Grpo | M::Oprl => Estimator::Grpo {
                scale: self.scale.unwrap_or(StdScope::Group),
                std,
                epsilon: self.epsilon.unwrap_or(1e-6),
            },
            M::DrGrpo | M::Gae => Estimator::DrGrpo,
            M::Rloo => Estimator::Rloo,
            M::ReinforcePp | M::ReinforcePpBaseline => Estimator::ReinforcePlusPlus {
                baseline: method == M::ReinforcePpBaseline,
                std,
                epsilon: self.epsilon.unwrap_or(1e-8),
            },
        };
        Ok(AdvantageConfig {
            method,
            estimator,
            filter_zero_variance: self.filter_zero_variance,
            oprl_alpha: oprl.then(|| self.alpha.unwrap_or(1.0)),
            gae: is_gae.then(|| (self.gamma.unwrap_or(1.0), self.lambda.unwrap_or(1.0))),
        })
    }
}

/// Counts of what the estimator could not use, for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvantageSummary {
    /// Samples in.
    pub samples: usize,
    /// Groups in.
    pub groups: usize,
    /// Samples whose reward was NaN or ±∞: masked (advantage NaN), left out of every statistic.
    pub masked: usize,
    /// Groups with exactly one finite reward: that sample's advantage is 0 (no baseline exists).
    pub singleton_groups: usize,
    /// Groups with no finite reward at all.
    pub empty_groups: usize,
    /// Groups of two or more finite rewards, all equal: no learning signal.
    pub zero_variance_groups: usize,
    /// Samples of zero-variance groups masked because filtering was asked for.
    pub filtered: usize,
}

/// Advantages, one per sample, and what happened on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Advantages {
    /// One advantage per sample, in input order. NaN exactly for masked samples (non-finite
    /// reward) and filtered ones (zero-variance groups, when filtering); never NaN otherwise,
    /// provided a group's differences from its first finite reward, and their sums, stay within
    /// `f64`'s range (rewards near ±`f64::MAX`, e.g. `[1e308, 0.5]`, overflow to NaN, as NumPy's
    /// formulas do).
    pub values: Vec<f64>,
    /// The counts.
    pub summary: AdvantageSummary,
}

/// How the members of one group are written.
#[derive(Clone, Copy)]
enum Write {
    /// `(x − mean)/d`.
    Divided(f64),
    /// `(x − mean)·m`.
    Scaled(f64),
    /// A fixed value for every finite member.
    Fixed(f64),
}

/// What happened to one group.
#[derive(Clone, Copy, PartialEq)]
enum GroupFate {
    Empty,
    Singleton,
    ZeroVariance,
    Signal,
}

impl GroupFate {
    /// The fate of a group with statistics `centre`.
    fn of(centre: &Centre) -> GroupFate {
        match centre.count {
            0 => GroupFate::Empty,
            1 => GroupFate::Singleton,
            _ if centre.constant => GroupFate::ZeroVariance,
            _ => GroupFate::Signal,
        }
    }
}

/// Advantages of outcome rewards under `estimator`.
///
/// `filter_zero_variance` masks the samples of zero-variance groups (as OpenRLHF's and verl's
/// dynamic filtering drop them); otherwise their advantage is what the estimator gives, which is
/// 0 for every group-centred estimator.
///
/// Large inputs of consecutive groups are split, at group boundaries, over the threads of the
/// current rayon pool (`RAYON_NUM_THREADS`, or a caller's `ThreadPool::install`); each group is
/// computed the same way whoever computes it, so the result does not depend on the number of
/// threads, to the bit.
///
/// Errors only when `groups` does not cover `rewards` or an option is out of range.
pub fn advantages(
    rewards: &[f64],
    groups: &Groups,
    estimator: &Estimator,
    filter_zero_variance: bool,
) -> Result<Advantages, ShapeError> {
    groups.check("rewards", rewards.len())?;
    estimator.validate()?;
    let n = rewards.len();
    let Some(offsets) = groups.ranges() else {
        let mut values = vec![0.0f64; n];
        let summary = compute(
            rewards,
            &Lists(groups),
            estimator,
            filter_zero_variance,
            &mut values,
        );
        return Ok(Advantages { values, summary });
    };
    // Consecutive groups write every element of the output exactly once, so the output is not
    // zero-filled first (`vec![0.0; n]` is a memset, or a page fault per 4 KiB of fresh memory):
    // the groups are written into the vector's reserved capacity and the count of elements
    // written is checked before the vector takes them.
    let mut values = output_vec(n);
    let tally = over_ranges(
        rewards,
        offsets,
        groups.common_size(),
        estimator,
        filter_zero_variance,
        &mut values.spare_capacity_mut()[..n],
    );
    assert_eq!(
        tally.written, n,
        "every advantage is written (a bug otherwise)"
    );
    // SAFETY: the capacity is at least `n`, and the `n` elements were initialised: `over_ranges`
    // writes each group's range once (`Slot::put` through `Store::fill`) and counted `n` writes
    // over ranges that partition `0..n`.
    unsafe { values.set_len(n) };
    let summary = finish(tally, &mut values);
    Ok(Advantages { values, summary })
}

/// [`advantages`] into a caller's buffer (one value per reward), for a trainer that reuses its
/// buffers from step to step: no allocation besides a list of one-element groups, 16 bytes per
/// group under REINFORCE++-baseline (each group's centre, kept between its two passes), and,
/// when the input is split over threads, a few words per thread.
pub fn advantages_into(
    rewards: &[f64],
    groups: &Groups,
    estimator: &Estimator,
    filter_zero_variance: bool,
    out: &mut [f64],
) -> Result<AdvantageSummary, ShapeError> {
    groups.check("rewards", rewards.len())?;
    ShapeError::check_len("out", out.len(), rewards.len(), "reward")?;
    estimator.validate()?;
    // One instantiation per layout: consecutive groups are sub-slices (contiguous loads and
    // stores, no index list, no bounds check per element); scattered groups go through their
    // member lists. Both visit a group's members in the same order, so both give bit-identical
    // results.
    let summary = match groups.ranges() {
        Some(offsets) => {
            let size = groups.common_size();
            let tally = over_ranges(rewards, offsets, size, estimator, filter_zero_variance, out);
            finish(tally, out)
        }
        None => compute(
            rewards,
            &Lists(groups),
            estimator,
            filter_zero_variance,
            out,
        ),
    };
    Ok(summary)
}

/// An output element: an `f64`, or one not yet initialised (a fresh vector's capacity).
pub(crate) trait Slot: Send {
    /// Sets the element.
    fn put(&mut self, value: f64);
}

impl Slot for f64 {
    #[inline(always)]
    fn put(&mut self, value: f64) {
        *self = value;
    }
}

impl Slot for MaybeUninit<f64> {
    #[inline(always)]
    fn put(&mut self, value: f64) {
        self.write(value);
    }
}

/// How the group pass visits the members of group `g`.
trait Layout: Sync {
    fn len(&self, g: usize) -> usize;
    fn centre(&self, kernel: impl Kernel, rewards: &[f64], g: usize) -> Centre;
    /// [`Kernel::signal`] of group `g`.
    fn signal(&self, kernel: impl Kernel, rewards: &[f64], g: usize) -> Option<(f64, f64, f64)>;
    /// `out[i] = f(rewards[i])` for every member `i` (`out` indexed from the layout's base);
    /// returns the number of elements written.
    fn map<T: Slot>(
        &self,
        rewards: &[f64],
        out: &mut [T],
        g: usize,
        f: impl Fn(f64) -> f64,
    ) -> usize;
    /// Calls `f(i)` for every member `i`.
    fn each(&self, g: usize, f: impl FnMut(usize));
}

/// Consecutive groups: group `g` is `offsets[g]..offsets[g + 1]`, written to
/// `out[offsets[g] − base..]` (a thread's part of the output starts at `base`). With `N > 0`,
/// groups of exactly `N` samples go through arrays of length `N`, which the compiler unrolls
/// fully (no loop control, no remainder loops); the arithmetic is the same, lane for lane.
struct Ranges<'a, const N: usize> {
    offsets: &'a [usize],
    base: usize,
}

impl<const N: usize> Layout for Ranges<'_, N> {
    #[inline(always)]
    fn len(&self, g: usize) -> usize {
        self.offsets[g + 1] - self.offsets[g]
    }

    #[inline(always)]
    fn centre(&self, kernel: impl Kernel, rewards: &[f64], g: usize) -> Centre {
        let members = &rewards[self.offsets[g]..self.offsets[g + 1]];
        if N > 0 {
            if let Ok(members) = <&[f64; N]>::try_from(members) {
                return kernel.centre(members);
            }
        }
        kernel.centre(members)
    }

    #[inline(always)]
    fn signal(&self, kernel: impl Kernel, rewards: &[f64], g: usize) -> Option<(f64, f64, f64)> {
        let members = &rewards[self.offsets[g]..self.offsets[g + 1]];
        if N > 0 {
            if let Ok(members) = <&[f64; N]>::try_from(members) {
                return kernel.signal(members);
            }
        }
        kernel.signal(members)
    }

    #[inline(always)]
    fn map<T: Slot>(
        &self,
        rewards: &[f64],
        out: &mut [T],
        g: usize,
        f: impl Fn(f64) -> f64,
    ) -> usize {
        let (start, end) = (self.offsets[g], self.offsets[g + 1]);
        let src = &rewards[start..end];
        let out = &mut out[start - self.base..end - self.base];
        if N > 0 {
            if let (Ok(src), Ok(out)) = (
                <&[f64; N]>::try_from(src),
                <&mut [T; N]>::try_from(&mut *out),
            ) {
                for (slot, &x) in out.iter_mut().zip(src) {
                    slot.put(f(x));
                }
                return N;
            }
        }
        for (slot, &x) in out.iter_mut().zip(src) {
            slot.put(f(x));
        }
        out.len()
    }

    fn each(&self, g: usize, f: impl FnMut(usize)) {
        (self.offsets[g]..self.offsets[g + 1]).for_each(f);
    }
}

/// Scattered groups, through their member lists.
struct Lists<'a>(&'a Groups);

impl Layout for Lists<'_> {
    fn len(&self, g: usize) -> usize {
        self.0.members(g).len()
    }

    fn centre(&self, _kernel: impl Kernel, rewards: &[f64], g: usize) -> Centre {
        Centre::of_indices(rewards, self.0.members(g))
    }

    fn signal(&self, kernel: impl Kernel, rewards: &[f64], g: usize) -> Option<(f64, f64, f64)> {
        let centre = self.centre(kernel, rewards, g);
        (centre.count == self.len(g) && centre.count >= 2 && !centre.constant).then_some((
            centre.pivot,
            centre.shifted_mean,
            centre.m2,
        ))
    }

    fn map<T: Slot>(
        &self,
        rewards: &[f64],
        out: &mut [T],
        g: usize,
        f: impl Fn(f64) -> f64,
    ) -> usize {
        let members = self.0.members(g);
        for &i in members {
            out[i].put(f(rewards[i]));
        }
        members.len()
    }

    fn each(&self, g: usize, f: impl FnMut(usize)) {
        self.0.members(g).iter().copied().for_each(f);
    }
}

/// Writes `f(x)` for every finite member `x` of group `g` and NaN for the others; `dense` says
/// that every member is finite, so the check is skipped and the loop vectorises.
#[inline(always)]
fn apply<T: Slot>(
    layout: &impl Layout,
    rewards: &[f64],
    values: &mut [T],
    g: usize,
    dense: bool,
    f: impl Fn(f64) -> f64,
) -> usize {
    if dense {
        layout.map(rewards, values, g, f)
    } else {
        layout.map(rewards, values, g, |x| {
            if x.is_finite() {
                f(x)
            } else {
                f64::NAN
            }
        })
    }
}

/// What the group pass over some groups counted.
#[derive(Default)]
struct Tally {
    summary: AdvantageSummary,
    /// Finite rewards seen.
    finite: usize,
    /// Output elements written.
    written: usize,
    /// Samples alone in their group under REINFORCE++-baseline: advantage 0, set at the end.
    singletons: Vec<usize>,
}

impl Tally {
    fn add(mut self, other: Tally) -> Tally {
        let (a, b) = (&mut self.summary, other.summary);
        a.singleton_groups += b.singleton_groups;
        a.empty_groups += b.empty_groups;
        a.zero_variance_groups += b.zero_variance_groups;
        a.filtered += b.filtered;
        self.finite += other.finite;
        self.written += other.written;
        self.singletons.extend(other.singletons);
        self
    }
}

/// Below this many samples one thread does the whole group pass: splitting costs more than it
/// saves (a rayon task is a few microseconds; a million samples take about a millisecond).
const PARALLEL_SAMPLES: usize = 1 << 16;

/// The group pass over consecutive groups, split over the current rayon pool's threads for
/// large inputs: each thread gets a run of whole groups and its own part of `out`.
fn over_ranges<T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    size: Option<usize>,
    estimator: &Estimator,
    filter_zero_variance: bool,
    out: &mut [T],
) -> Tally {
    if let Estimator::ReinforcePlusPlus {
        baseline,
        std,
        epsilon,
    } = *estimator
    {
        return reinforce::over_ranges(
            rewards,
            offsets,
            size,
            baseline,
            std,
            epsilon,
            filter_zero_variance,
            out,
        );
    }
    let n = rewards.len();
    let count = offsets.len() - 1;
    let batch_std = batch_std(rewards, estimator);
    let threads = rayon::current_num_threads();
    let pass = |groups: Range<usize>, out: &mut [T]| {
        macro_rules! with {
            ($n:literal) => {
                fixed_pass::<$n, T>(
                    rewards,
                    offsets,
                    groups,
                    estimator,
                    filter_zero_variance,
                    batch_std,
                    out,
                )
            };
        }
        match size {
            Some(8) => with!(8),
            Some(16) => with!(16),
            Some(32) => with!(32),
            Some(64) => with!(64),
            _ => with!(0),
        }
    };
    let mut tally = if threads <= 1 || n < PARALLEL_SAMPLES {
        pass(0..count, out)
    } else {
        split_groups(n, offsets, threads, out)
            .into_par_iter()
            .map(|(groups, part)| pass(groups, part))
            .collect::<Vec<Tally>>()
            .into_iter()
            .fold(Tally::default(), Tally::add)
    };
    tally.summary.groups = count;
    tally
}

/// The group pass over consecutive groups of `N` members each but perhaps the last (`N = 0`:
/// any sizes; `out` indexed from `offsets[groups.start]`). On AVX, with a size that is a multiple
/// of 4 and an estimator whose common case has fixed writes, four groups at a time
/// ([`quads::pass`]); the groups it leaves, and every other case, one at a time. The same bits
/// either way.
#[allow(clippy::too_many_arguments)]
fn fixed_pass<const N: usize, T: Slot>(
    rewards: &[f64],
    offsets: &[usize],
    groups: Range<usize>,
    estimator: &Estimator,
    filter_zero_variance: bool,
    batch_std: Option<f64>,
    out: &mut [T],
) -> Tally {
    let one_by_one = |groups: Range<usize>, out: &mut [T]| {
        let base = offsets[groups.start];
        group_pass(
            rewards,
            &Ranges::<N> { offsets, base },
            groups,
            estimator,
            filter_zero_variance,
            batch_std,
            out,
        )
    };
    #[cfg(target_arch = "x86_64")]
    if N > 0 && N.is_multiple_of(4) {
        if let (Some(avx), Some(fast)) = (Avx::detect(), Fast::of(estimator)) {
            // SAFETY: `avx` exists only if the CPU has AVX.
            return unsafe {
                quads::pass::<N, T>(avx, rewards, offsets, groups, fast, out, one_by_one)
            };
        }
    }
    one_by_one(groups, out)
}

/// `out` cut into runs of whole consecutive groups of about equal numbers of samples, a few per
/// thread (so that a thread slowed down by other work is helped by the others), with their
/// group ranges; a single run when the input is small.
fn split_groups<'o, T>(
    n: usize,
    offsets: &[usize],
    threads: usize,
    out: &'o mut [T],
) -> Vec<(Range<usize>, &'o mut [T])> {
    let count = offsets.len() - 1;
    let pieces = (4 * threads)
        .min(n / (PARALLEL_SAMPLES / 4))
        .clamp(1, count.max(1));
    let mut parts = Vec::with_capacity(pieces);
    let (mut rest, mut first) = (out, 0);
    for k in 1..=pieces {
        let target = n * k / pieces;
        let last = offsets.partition_point(|&o| o < target).clamp(first, count);
        let (part, tail) = rest.split_at_mut(offsets[last] - offsets[first]);
        parts.push((first..last, part));
        (rest, first) = (tail, last);
    }
    parts
}

/// Rewards per block of [`batch_std`]'s statistics.
const STD_BLOCK: usize = 1 << 14;

/// GRPO with batch scaling: the std of every finite reward, needed before any group is written.
///
/// Each block of [`STD_BLOCK`] rewards gets the crate's stable statistics (pivot, two passes),
/// on the current rayon pool's threads for large inputs; the blocks' are combined in block order
/// by Chan, Golub & LeVeque's formula, their means measured from the batch's first finite
/// reward. The blocks do not depend on the pool, so neither does the result, to the bit.
fn batch_std(rewards: &[f64], estimator: &Estimator) -> Option<f64> {
    let Estimator::Grpo {
        scale: StdScope::Batch,
        std,
        ..
    } = *estimator
    else {
        return None;
    };
    let origin = rewards.iter().copied().find(|x| x.is_finite())?;
    let block = |part: &[f64]| {
        let centre = centre_of(part);
        if centre.count == 0 {
            return reinforce::Sums::default();
        }
        let mean = (centre.pivot - origin) + centre.shifted_mean;
        reinforce::Sums::of_values(centre.count, mean, centre.m2)
    };
    let blocks: Vec<reinforce::Sums> =
        if rayon::current_num_threads() <= 1 || rewards.len() < PARALLEL_SAMPLES {
            rewards.chunks(STD_BLOCK).map(block).collect()
        } else {
            rewards.par_chunks(STD_BLOCK).map(block).collect()
        };
    let all = blocks
        .into_iter()
        .fold(reinforce::Sums::default(), reinforce::Sums::add);
    all.std(std)
}

/// [`Centre::of_slice`] with the fastest kernel of this CPU.
fn centre_of(values: &[f64]) -> Centre {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx) = Avx::detect() {
        return avx.centre(values);
    }
    Portable.centre(values)
}

/// The group pass (statistics, then the writes while the group is still in cache) with the
/// fastest kernel of this CPU; all kernels give the same bits.
fn group_pass<T: Slot>(
    rewards: &[f64],
    layout: &impl Layout,
    groups: Range<usize>,
    estimator: &Estimator,
    filter_zero_variance: bool,
    batch_std: Option<f64>,
    out: &mut [T],
) -> Tally {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx) = Avx::detect() {
        // SAFETY: `avx` exists only if the CPU has AVX.
        return unsafe {
            group_pass_avx(
                avx,
                rewards,
                layout,
                groups,
                estimator,
                filter_zero_variance,
                batch_std,
                out,
            )
        };
    }
    group_pass_with(
        Portable,
        rewards,
        layout,
        groups,
        estimator,
        filter_zero_variance,
        batch_std,
        out,
    )
}

/// [`group_pass_with`] compiled for AVX: the statistics through the AVX kernel, and the
/// compiler's vectorised write loops four values wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
fn group_pass_avx<T: Slot>(
    kernel: Avx,
    rewards: &[f64],
    layout: &impl Layout,
    groups: Range<usize>,
    estimator: &Estimator,
    filter_zero_variance: bool,
    batch_std: Option<f64>,
    out: &mut [T],
) -> Tally {
    group_pass_with(
        kernel,
        rewards,
        layout,
        groups,
        estimator,
        filter_zero_variance,
        batch_std,
        out,
    )
}

/// The advantages of `groups`, in one visit per group: statistics, then writes while the group
/// is still in cache. Every output element of these groups is written (REINFORCE++ leaves its
/// scores there for [`finish`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn group_pass_with<T: Slot>(
    kernel: impl Kernel,
    rewards: &[f64],
    layout: &impl Layout,
    groups: Range<usize>,
    estimator: &Estimator,
    filter_zero_variance: bool,
    batch_std: Option<f64>,
    values: &mut [T],
) -> Tally {
    let mut tally = Tally::default();
    let writer = GroupWriter {
        estimator,
        filter_zero_variance,
        batch_std,
    };
    // The common case, decided once instead of per group: a group with every reward finite and
    // not all equal (a signal group, which filtering leaves alone) under an estimator whose
    // writes depend on the group's statistics only. The arithmetic is `GroupWriter::write`'s
    // for such a group; any other group goes through it.
    let fast = Fast::of(estimator);
    for g in groups {
        if let Some(fast) = fast {
            if let Some((pivot, mean, m2)) = layout.signal(kernel, rewards, g) {
                let count = layout.len(g);
                let centre = Centre {
                    count,
                    pivot,
                    shifted_mean: mean,
                    m2,
                    constant: false,
                };
                let written = match fast {
                    Fast::Divide { std, epsilon } => match centre.std(std).map(|s| s + epsilon) {
                        Some(d) if d > 0.0 => {
                            layout.map(rewards, values, g, |x| ((x - pivot) - mean) / d)
                        }
                        _ => 0,
                    },
                    Fast::LeaveOneOut => {
                        let k = count as f64;
                        let m = k / (k - 1.0);
                        layout.map(rewards, values, g, |x| ((x - pivot) - mean) * m)
                    }
                    Fast::Centre => layout.map(rewards, values, g, |x| (x - pivot) - mean),
                };
                if written > 0 {
                    tally.finite += count;
                    tally.written += written;
                    continue;
                }
            }
        }
        let centre = layout.centre(kernel, rewards, g);
        writer.write(layout, rewards, values, g, centre, &mut tally);
    }
    tally
}

/// The writes of a signal group with every reward finite, for [`group_pass_with`]'s common case.
#[derive(Clone, Copy)]
enum Fast {
    /// GRPO with the group's std: `(x − mean)/(std + ε)` (when `std + ε > 0`).
    Divide { std: StdKind, epsilon: f64 },
    /// RLOO: `(K/(K−1))·(x − mean)`.
    LeaveOneOut,
    /// Dr.GRPO: `x − mean`.
    Centre,
}

impl Fast {
    /// The common case's writes under `estimator`, if it has one: estimators whose writes
    /// depend on the group's own statistics only.
    fn of(estimator: &Estimator) -> Option<Fast> {
        match *estimator {
            Estimator::Grpo {
                scale: StdScope::Group,
                std,
                epsilon,
            } => Some(Fast::Divide { std, epsilon }),
            Estimator::Rloo => Some(Fast::LeaveOneOut),
            Estimator::DrGrpo => Some(Fast::Centre),
            _ => None,
        }
    }
}

/// The per-group part of the group pass: the group's fate, its counts, and its writes.
struct GroupWriter<'a> {
    estimator: &'a Estimator,
    filter_zero_variance: bool,
    batch_std: Option<f64>,
}

impl GroupWriter<'_> {
    /// Counts group `g` (statistics `centre`) in `tally` and writes its advantages.
    #[inline(always)]
    fn write<T: Slot>(
        &self,
        layout: &impl Layout,
        rewards: &[f64],
        values: &mut [T],
        g: usize,
        centre: Centre,
        tally: &mut Tally,
    ) {
        let (estimator, filter_zero_variance, batch_std) =
            (self.estimator, self.filter_zero_variance, self.batch_std);
        let summary = &mut tally.summary;
        tally.finite += centre.count;
        let fate = GroupFate::of(&centre);
        match fate {
            GroupFate::Empty => summary.empty_groups += 1,
            GroupFate::Singleton => summary.singleton_groups += 1,
            GroupFate::ZeroVariance => {
                summary.zero_variance_groups += 1;
                if filter_zero_variance {
                    summary.filtered += centre.count;
                }
            }
            GroupFate::Signal => {}
        }
        let masked = filter_zero_variance && fate == GroupFate::ZeroVariance;
        let write = if masked {
            Write::Fixed(f64::NAN)
        } else {
            match *estimator {
                Estimator::Grpo {
                    scale,
                    std,
                    epsilon,
                    ..
                } => {
                    let divisor = match scale {
                        StdScope::Group => centre.std(std).map(|s| s + epsilon),
                        StdScope::Batch => batch_std.map(|s| s + epsilon),
                        StdScope::None => Some(1.0),
                    };
                    match divisor {
                        // d = 0 only if ε = 0 and the squares underflowed: no usable spread.
                        Some(d) if fate == GroupFate::Signal && d > 0.0 => Write::Divided(d),
                        _ => Write::Fixed(0.0),
                    }
                }
                Estimator::DrGrpo if fate == GroupFate::Signal => Write::Scaled(1.0),
                Estimator::Rloo if fate == GroupFate::Signal => {
                    let k = centre.count as f64;
                    Write::Scaled(k / (k - 1.0))
                }
                Estimator::DrGrpo | Estimator::Rloo => Write::Fixed(0.0),
                // `over_ranges` and `compute` hand REINFORCE++ to `reinforce` before any
                // group pass.
                Estimator::ReinforcePlusPlus { .. } => {
                    unreachable!("REINFORCE++ runs in `advantage::reinforce`")
                }
            }
        };
        let (pivot, mean) = (centre.pivot, centre.shifted_mean);
        let dense = centre.count == layout.len(g);
        tally.written += match write {
            Write::Divided(d) => apply(layout, rewards, values, g, dense, |x| {
                ((x - pivot) - mean) / d
            }),
            Write::Scaled(1.0) => apply(layout, rewards, values, g, dense, |x| (x - pivot) - mean),
            Write::Scaled(m) => apply(layout, rewards, values, g, dense, |x| {
                ((x - pivot) - mean) * m
            }),
            Write::Fixed(value) => apply(layout, rewards, values, g, dense, |_| value),
        };
    }
}

/// The summary of a finished pass over all `values.len()` samples; REINFORCE++-baseline's lone
/// samples get their advantage, 0.
fn finish(tally: Tally, values: &mut [f64]) -> AdvantageSummary {
    let mut summary = tally.summary;
    summary.samples = values.len();
    summary.masked = values.len() - tally.finite;
    for i in tally.singletons {
        values[i] = 0.0;
    }
    summary
}

/// The advantages over scattered groups (member lists), on one thread.
fn compute(
    rewards: &[f64],
    layout: &Lists,
    estimator: &Estimator,
    filter_zero_variance: bool,
    values: &mut [f64],
) -> AdvantageSummary {
    let count = layout.0.count();
    if let Estimator::ReinforcePlusPlus {
        baseline,
        std,
        epsilon,
    } = *estimator
    {
        let tally = reinforce::over_lists(
            rewards,
            layout,
            baseline,
            std,
            epsilon,
            filter_zero_variance,
            values,
        );
        return finish(tally, values);
    }
    let batch_std = batch_std(rewards, estimator);
    let mut tally = group_pass(
        rewards,
        layout,
        0..count,
        estimator,
        filter_zero_variance,
        batch_std,
        values,
    );
    tally.summary.groups = count;
    finish(tally, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    fn check(rewards: &[f64], sizes: &[usize], estimator: Estimator, expected: &[f64]) {
        let groups = Groups::from_sizes(sizes);
        let got = advantages(rewards, &groups, &estimator, false)
            .unwrap()
            .values;
        assert_eq!(got.len(), expected.len());
        for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
            let ok = (g.is_nan() && e.is_nan()) || (g - e).abs() <= 1e-12 * e.abs().max(1.0);
            assert!(ok, "{estimator:?} {rewards:?}: [{i}] got {g}, expected {e}");
        }
    }

    fn grpo(scale: StdScope, std: StdKind, epsilon: f64) -> Estimator {
        Estimator::Grpo {
            scale,
            std,
            epsilon,
        }
    }

    #[test]
    fn grpo_cases() {
        use StdKind::*;
        use StdScope::*;
        let plain = grpo(Group, Sample, 0.0);
        check(&[1.0, 0.0], &[2], plain, &[0.5f64.sqrt(), -(0.5f64.sqrt())]);
        check(
            &[1.0, 0.0],
            &[2],
            grpo(Group, Population, 0.0),
            &[1.0, -1.0],
        );
        check(
            &[1.0, 0.0, 3.0],
            &[2, 1],
            plain,
            &[0.5f64.sqrt(), -(0.5f64.sqrt()), 0.0],
        );
        check(&[2.0, 2.0, 2.0], &[3], plain, &[0.0, 0.0, 0.0]);
        check(
            &[1.0, NAN, 0.0],
            &[3],
            plain,
            &[0.5f64.sqrt(), NAN, -(0.5f64.sqrt())],
        );
        check(&[NAN, f64::INFINITY], &[2], plain, &[NAN, NAN]);
        check(&[5.0, f64::NEG_INFINITY], &[2], plain, &[0.0, NAN]);
        check(
            &[1.0, 0.0],
            &[2],
            grpo(Group, Population, 1.0),
            &[1.0 / 3.0, -1.0 / 3.0],
        );
        check(&[1.0, 0.0], &[2], grpo(None, Sample, 1.0), &[0.5, -0.5]);
        // Batch std of [1, 0, 3, 4] (population) = sqrt(2.5); group means 0.5 and 3.5.
        let s = 2.5f64.sqrt();
        check(
            &[1.0, 0.0, 3.0, 4.0],
            &[2, 2],
            grpo(Batch, Population, 0.0),
            &[0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s],
        );
        // Offset by 1e9: the advantages are those of the unshifted values, exactly.
        check(
            &[1e9 + 1.0, 1e9],
            &[2],
            grpo(Group, Population, 0.0),
            &[1.0, -1.0],
        );
        check(
            &[1e9 + 3.0, 1e9 + 1.0, 1e9 + 2.0],
            &[3],
            grpo(Group, Sample, 0.0),
            &[1.0, -1.0, 0.0],
        );
    }

    #[test]
    fn dr_grpo_and_rloo_cases() {
        check(
            &[1.0, 0.0, 0.0, 0.0],
            &[4],
            Estimator::DrGrpo,
            &[0.75, -0.25, -0.25, -0.25],
        );
        check(
            &[1.0, 0.0, 0.0, 0.0],
            &[4],
            Estimator::Rloo,
            &[1.0, -1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
        );
        check(&[7.0], &[1], Estimator::Rloo, &[0.0]);
        check(&[7.0, NAN], &[2], Estimator::Rloo, &[0.0, NAN]);
        check(&[3.0, 5.0], &[2], Estimator::Rloo, &[-2.0, 2.0]);
        // NeMo-RL PR #4158: (sum − x)/(K−1) in low precision cancels; here 1e9 offsets are exact.
        check(
            &[1e9 + 1.0, 1e9, 1e9, 1e9],
            &[4],
            Estimator::Rloo,
            &[1.0, -1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
        );
        check(&[1e15 + 2.0, 1e15], &[2], Estimator::Rloo, &[2.0, -2.0]);
    }

    #[test]
    fn reinforce_pp_cases() {
        let plain = Estimator::ReinforcePlusPlus {
            baseline: false,
            std: StdKind::Population,
            epsilon: 0.0,
        };
        let s = 5f64.sqrt();
        check(
            &[1.0, 3.0, NAN, 5.0, 7.0],
            &[2, 3],
            plain,
            &[-3.0 / s, -1.0 / s, NAN, 1.0 / s, 3.0 / s],
        );
        let baseline = Estimator::ReinforcePlusPlus {
            baseline: true,
            std: StdKind::Population,
            epsilon: 0.0,
        };
        // Group-centred scores [-1, 1, 0 (singleton, excluded), -1, 1]; batch std 1.
        check(
            &[1.0, 3.0, 9.0, 5.0, 7.0],
            &[2, 1, 2],
            baseline,
            &[-1.0, 1.0, 0.0, -1.0, 1.0],
        );
        check(&[4.0, 4.0], &[2], baseline, &[0.0, 0.0]);
    }

    #[test]
    fn reinforce_pp_over_many_blocks_equals_the_textbook_computation() {
        // More groups than three summation blocks, sizes 1 to 7, NaN, zero-variance groups and
        // 1e9 offsets, with and without the baseline and filtering: every advantage agrees with
        // the four-pass computation (scores, their batch mean, their batch spread, the division)
        // done here in plain f64, to 1e-12 of the largest.
        let mut state = 3u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(7);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let sizes: Vec<usize> = (0..3500).map(|g| 1 + (g * 7 + g / 3) % 7).collect();
        let mut rewards = Vec::new();
        for (g, &size) in sizes.iter().enumerate() {
            let offset = if g % 11 == 0 { 1e9 } else { 0.0 };
            for j in 0..size {
                rewards.push(match (g % 13, j) {
                    (4, 1) => NAN,
                    (6, _) => 0.5,
                    _ => offset + (next() < 0.4) as u8 as f64 + 0.1 * next(),
                });
            }
        }
        // Three empty groups and a filtered one first: without the baseline the origin comes
        // from the first group that takes part.
        rewards[..3].fill(NAN);
        rewards[3..5].fill(-7.0);
        let groups = Groups::from_sizes(&sizes);
        let cases = [
            (true, false, StdKind::Sample, 1e-8),
            (true, true, StdKind::Population, 0.0),
            (false, false, StdKind::Sample, 1e-8),
            (false, true, StdKind::Population, 0.0),
        ];
        for (baseline, filter, std, epsilon) in cases {
            let estimator = Estimator::ReinforcePlusPlus {
                baseline,
                std,
                epsilon,
            };
            let got = advantages(&rewards, &groups, &estimator, filter).unwrap();
            // The textbook way: scores, then their batch mean and spread in two passes (from
            // the first score, so that the 1e9 offsets cost no precision here either).
            let mut scores = vec![NAN; rewards.len()];
            let mut lone = Vec::new();
            for members in groups.iter() {
                let finite: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| rewards[i].is_finite())
                    .collect();
                let Some(&first) = finite.first() else {
                    continue;
                };
                let pivot = rewards[first];
                let constant = finite.iter().all(|&i| rewards[i] == pivot);
                if filter && constant && finite.len() > 1 {
                    continue;
                }
                if !baseline {
                    finite.iter().for_each(|&i| scores[i] = rewards[i]);
                } else if finite.len() == 1 {
                    lone.push(first);
                } else {
                    let mean = finite.iter().map(|&i| rewards[i] - pivot).sum::<f64>()
                        / finite.len() as f64;
                    finite
                        .iter()
                        .for_each(|&i| scores[i] = (rewards[i] - pivot) - mean);
                }
            }
            let taking: Vec<f64> = scores.iter().copied().filter(|a| a.is_finite()).collect();
            let (n, origin) = (taking.len() as f64, taking[0]);
            let mean = taking.iter().map(|a| a - origin).sum::<f64>() / n;
            let m2 = taking
                .iter()
                .map(|a| ((a - origin) - mean).powi(2))
                .sum::<f64>();
            let divisor = match std {
                StdKind::Sample => (m2 / (n - 1.0)).sqrt(),
                StdKind::Population => (m2 / n).sqrt(),
            } + epsilon;
            let mut expected: Vec<f64> = scores
                .iter()
                .map(|a| ((a - origin) - mean) / divisor)
                .collect();
            for i in lone {
                expected[i] = 0.0;
            }
            let scale = expected
                .iter()
                .filter(|x| x.is_finite())
                .fold(0.0f64, |m, x| m.max(x.abs()));
            let case = (baseline, filter, std);
            for (i, (a, b)) in got.values.iter().zip(&expected).enumerate() {
                assert!(
                    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * scale,
                    "{case:?} [{i}]: {a} vs {b}"
                );
            }
            assert!(got.values[3..5].iter().all(|a| a.is_nan() == filter));
            assert_eq!(
                got.summary.masked,
                rewards.iter().filter(|x| x.is_nan()).count()
            );
        }
    }

    #[test]
    fn grpo_batch_std_over_many_blocks_equals_the_textbook_computation() {
        // Over more than six blocks of the batch statistics, with NaN and a 1e9 offset on part
        // of the batch: GRPO with batch scaling agrees with the group centring divided by the
        // std of every finite reward taken in two plain passes here, to 1e-12 of the largest.
        let mut state = 5u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(3);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 6 * STD_BLOCK + 1000;
        let rewards: Vec<f64> = (0..n)
            .map(|i| match i % 97 {
                3 => NAN,
                _ if i > 3 * STD_BLOCK => 1e9 + next(),
                _ => 1e9 - 2.0 + 0.5 * next(),
            })
            .collect();
        let groups = Groups::uniform(n, 8).unwrap();
        for std in [StdKind::Sample, StdKind::Population] {
            let estimator = grpo(StdScope::Batch, std, 1e-6);
            let got = advantages(&rewards, &groups, &estimator, false).unwrap();
            let finite: Vec<f64> = rewards.iter().copied().filter(|x| x.is_finite()).collect();
            let origin = finite[0];
            let count = finite.len() as f64;
            let mean = finite.iter().map(|x| x - origin).sum::<f64>() / count;
            let m2 = finite
                .iter()
                .map(|x| ((x - origin) - mean).powi(2))
                .sum::<f64>();
            let divisor = match std {
                StdKind::Sample => (m2 / (count - 1.0)).sqrt(),
                StdKind::Population => (m2 / count).sqrt(),
            } + 1e-6;
            let centred = advantages(&rewards, &groups, &Estimator::DrGrpo, false).unwrap();
            let expected: Vec<f64> = centred.values.iter().map(|a| a / divisor).collect();
            let scale = expected
                .iter()
                .filter(|x| x.is_finite())
                .fold(0.0f64, |m, x| m.max(x.abs()));
            for (i, (a, b)) in got.values.iter().zip(&expected).enumerate() {
                assert!(
                    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * scale,
                    "{std:?} [{i}]: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn reinforce_pp_keeps_an_overflowing_group_to_itself() {
        // Rewards near ±f64::MAX overflow their group's sums (NumPy's formulas overflow there
        // too); the other groups' advantages stay exact.
        // With the baseline: scores [-1, 1, -1, 1], batch std 1. Without it the batch
        // statistics (and the origin) come from the other groups, [1, 3, 5, 7]: mean 4, std √5.
        let s = 5f64.sqrt();
        for (baseline, expected) in [
            (true, [-1.0, 1.0, -1.0, 1.0]),
            (false, [-3.0 / s, -1.0 / s, 1.0 / s, 3.0 / s]),
        ] {
            let estimator = Estimator::ReinforcePlusPlus {
                baseline,
                std: StdKind::Population,
                epsilon: 0.0,
            };
            let got = advantages(
                &[1e308, -1e308, 1e308, 1.0, 3.0, 5.0, 7.0],
                &Groups::from_sizes(&[3, 2, 2]),
                &estimator,
                false,
            )
            .unwrap();
            assert_eq!(&got.values[3..], &expected, "baseline {baseline}");
        }
    }

    #[test]
    fn interleaved_groups_equal_consecutive_ones() {
        // Rows of groups a and b interleaved (the member-list path) vs sorted (the range path).
        let rewards = [1.0, 10.0, 2.0, 30.0, 6.0, NAN, 20.0];
        let labels = ["a", "b", "a", "b", "a", "b", "b"];
        let sorted = [1.0, 2.0, 6.0, 10.0, 30.0, NAN, 20.0];
        let order = [0, 2, 4, 1, 3, 5, 6];
        for estimator in [
            Estimator::GRPO,
            Estimator::Rloo,
            Estimator::reinforce_plus_plus(true),
        ] {
            let scattered =
                advantages(&rewards, &Groups::from_labels(&labels), &estimator, false).unwrap();
            let consecutive =
                advantages(&sorted, &Groups::from_sizes(&[3, 4]), &estimator, false).unwrap();
            for (position, &row) in order.iter().enumerate() {
                let (a, b) = (scattered.values[row], consecutive.values[position]);
                assert!(
                    a == b || (a.is_nan() && b.is_nan()),
                    "{estimator:?} row {row}: {a} vs {b}"
                );
            }
            assert_eq!(scattered.summary, consecutive.summary);
        }
    }

    /// Rewards with every hard case mixed in: NaN, ±∞, constant groups, 1e9 offsets, values
    /// whose sum overflows, signed zeros.
    fn hard_rewards(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|i| match (i / 16) % 23 {
                3 if i % 5 == 0 => NAN,
                5 if i % 7 == 0 => f64::INFINITY,
                7 => 0.25,
                9 => 1e9 + (next() * 8.0).floor(),
                11 => 1e308,
                13 if i % 2 == 0 => -0.0,
                13 => 0.0,
                // The first value huge, the others not: the shifted sum overflows.
                15 if i % 16 == 0 => 1e308,
                _ => (next() < 0.4) as u8 as f64 + 0.1 * next(),
            })
            .collect()
    }

    fn assert_same(label: &str, a: &Advantages, b: &Advantages) {
        assert_eq!(a.summary, b.summary, "{label}");
        for (i, (x, y)) in a.values.iter().zip(&b.values).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{label} [{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn uniform_groups_threads_and_kernels_give_the_same_bits() {
        // Uniform groups take the fixed-size layout, the AVX kernel where the CPU has it and
        // several threads above `PARALLEL_SAMPLES`; the reference is the member-list path (one
        // thread, the portable `of_fn` statistics) on the same groups. Every output bit must
        // agree, whatever the group size, estimator, filtering and number of threads.
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (size, n) in [
            (16, PARALLEL_SAMPLES + 5 * 16 + 3),
            (4, 4000),
            (8, 800),
            (17, 1700),
            (32, 3200),
            (64, 6400),
        ] {
            let rewards = hard_rewards(n, size as u64);
            let labels: Vec<usize> = (0..n).map(|i| i / size).collect();
            let uniform = Groups::uniform(n, size).unwrap();
            // Consecutive labels make consecutive groups; the reference is forced through the
            // member lists.
            let listed = Groups::from_labels(&labels).through_member_lists();
            assert!(listed.ranges().is_none() && uniform.ranges().is_some());
            for estimator in [
                Estimator::GRPO,
                grpo(StdScope::Group, StdKind::Population, 0.0),
                grpo(StdScope::Batch, StdKind::Sample, 1e-6),
                Estimator::DrGrpo,
                Estimator::Rloo,
                Estimator::reinforce_plus_plus(true),
                Estimator::reinforce_plus_plus(false),
            ] {
                for filter in [false, true] {
                    let reference = one
                        .install(|| advantages(&rewards, &listed, &estimator, filter))
                        .unwrap();
                    let label = format!("size {size}, {estimator:?}, filter {filter}");
                    for pool in [&one, &three] {
                        let fresh = pool
                            .install(|| advantages(&rewards, &uniform, &estimator, filter))
                            .unwrap();
                        assert_same(&label, &reference, &fresh);
                        let mut out = vec![7.0; n];
                        let summary = pool
                            .install(|| {
                                advantages_into(&rewards, &uniform, &estimator, filter, &mut out)
                            })
                            .unwrap();
                        let into = Advantages {
                            values: out,
                            summary,
                        };
                        assert_same(&label, &reference, &into);
                    }
                }
            }
        }
    }

    #[test]
    fn four_groups_at_a_time_leave_zero_totals_to_the_general_pass() {
        // Groups of 8 (four at a time on AVX): a group whose differences from its pivot sum to
        // exactly 0 without being constant, a constant one, and plain ones; every estimator
        // must give the member-list path's bits and counts.
        let mut rewards = vec![1.0, 0.0, 2.0, 1.0, 1.5, 0.5, 1.0, 1.0];
        rewards.extend([0.25; 8]);
        rewards.extend((0..16).map(|i| (i * 7 % 5) as f64 * 0.3));
        rewards.extend(rewards.clone());
        let n = rewards.len();
        let uniform = Groups::uniform(n, 8).unwrap();
        let labels: Vec<usize> = (0..n).map(|i| i / 8).collect();
        let listed = Groups::from_labels(&labels).through_member_lists();
        for estimator in [
            Estimator::GRPO,
            Estimator::DrGrpo,
            Estimator::Rloo,
            Estimator::reinforce_plus_plus(true),
            Estimator::reinforce_plus_plus(false),
        ] {
            let fast = advantages(&rewards, &uniform, &estimator, false).unwrap();
            let general = advantages(&rewards, &listed, &estimator, false).unwrap();
            assert_same(&format!("{estimator:?}"), &general, &fast);
            assert_eq!(fast.summary.zero_variance_groups, 2, "{estimator:?}");
            assert!(fast.values[..8].iter().any(|&a| a != 0.0), "{estimator:?}");
        }
    }

    #[test]
    fn fixed_size_groups_and_appended_output_equal_the_general_path() {
        // Sizes with a compile-time copy of the statistics (8, 16, 32, 64) and without, in the
        // appended-vector path (consecutive groups) vs the member-list path (the same groups
        // interleaved), bit for bit; NaN and 1e9 offsets included.
        let sizes = [16, 16, 8, 32, 64, 3, 1, 17, 16];
        let n: usize = sizes.iter().sum();
        let mut state = 11u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let rewards: Vec<f64> = (0..n)
            .map(|i| match i % 37 {
                5 => NAN,
                9 => 1e9 + next(),
                _ => next(),
            })
            .collect();
        let mut labels = Vec::new();
        let mut rank = Vec::new();
        for (g, &size) in sizes.iter().enumerate() {
            labels.extend(std::iter::repeat_n(g, size));
            rank.extend(0..size);
        }
        // Round-robin interleave (each group's members keep their order, so the sums are taken
        // in the same order): row r of the scattered layout is row order[r] of the consecutive.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (rank[i], labels[i]));
        let scattered_rewards: Vec<f64> = order.iter().map(|&i| rewards[i]).collect();
        let scattered_labels: Vec<usize> = order.iter().map(|&i| labels[i]).collect();
        for estimator in [
            Estimator::GRPO,
            Estimator::DrGrpo,
            Estimator::Rloo,
            Estimator::reinforce_plus_plus(true),
            Estimator::reinforce_plus_plus(false),
        ] {
            let consecutive =
                advantages(&rewards, &Groups::from_sizes(&sizes), &estimator, false).unwrap();
            let scattered = advantages(
                &scattered_rewards,
                &Groups::from_labels(&scattered_labels),
                &estimator,
                false,
            )
            .unwrap();
            for (r, &i) in order.iter().enumerate() {
                let (a, b) = (scattered.values[r], consecutive.values[i]);
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{estimator:?} row {i}: {a} vs {b}"
                );
            }
            assert_eq!(scattered.summary, consecutive.summary);
        }
    }

    #[test]
    fn summary_counts_and_filtering() {
        let rewards = [1.0, 1.0, 2.0, NAN, NAN, NAN, 3.0, 4.0];
        let groups = Groups::from_sizes(&[2, 2, 2, 2]);
        let out = advantages(&rewards, &groups, &Estimator::GRPO, true).unwrap();
        assert_eq!(
            out.summary,
            AdvantageSummary {
                samples: 8,
                groups: 4,
                masked: 3,
                singleton_groups: 1,
                empty_groups: 1,
                zero_variance_groups: 1,
                filtered: 2,
            }
        );
        assert!(out.values[0].is_nan() && out.values[1].is_nan());
        assert_eq!(out.values[2], 0.0);
        assert!(out.values[6] < 0.0 && out.values[7] > 0.0);
        let unfiltered = advantages(&rewards, &groups, &Estimator::GRPO, false).unwrap();
        assert_eq!(&unfiltered.values[..2], &[0.0, 0.0]);
    }

    #[test]
    fn options_resolve_with_defaults_and_refuse_strangers() {
        use AdvantageMethod as M;
        let none = AdvantageOptions::default();
        let check = |method: M, options: AdvantageOptions, expected: Result<Estimator, &str>| {
            let got = options.resolve(method);
            match (got, expected) {
                (Ok(config), Ok(estimator)) => {
                    assert_eq!(config.estimator, estimator, "{method:?}")
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{method:?}: {e}"),
                (got, expected) => panic!("{method:?} {options:?}: {got:?}, expected {expected:?}"),
            }
        };
        check(M::Grpo, none, Ok(Estimator::GRPO));
        check(M::Oprl, none, Ok(Estimator::GRPO));
        check(M::Rloo, none, Ok(Estimator::Rloo));
        check(M::Gae, none, Ok(Estimator::DrGrpo));
        check(
            M::ReinforcePp,
            none,
            Ok(Estimator::reinforce_plus_plus(false)),
        );
        check(
            M::ReinforcePpBaseline,
            none,
            Ok(Estimator::reinforce_plus_plus(true)),
        );
        let scale = AdvantageOptions {
            scale: Some(StdScope::None),
            ..none
        };
        check(
            M::Grpo,
            scale,
            Ok(grpo(StdScope::None, StdKind::Sample, 1e-6)),
        );
        check(
            M::Rloo,
            scale,
            Err("option `scale` applies to estimator grpo only"),
        );
        check(
            M::Oprl,
            scale,
            Err("option `scale` applies to estimator grpo only"),
        );
        let eps = AdvantageOptions {
            epsilon: Some(0.0),
            std: Some(StdKind::Population),
            ..none
        };
        check(
            M::Grpo,
            eps,
            Ok(grpo(StdScope::Group, StdKind::Population, 0.0)),
        );
        check(M::DrGrpo, eps, Err("dr_grpo does not divide by a std"));
        let negative = AdvantageOptions {
            epsilon: Some(-1.0),
            ..none
        };
        check(M::Grpo, negative, Err("option `epsilon` = -1"));
        let gamma = AdvantageOptions {
            gamma: Some(0.5),
            ..none
        };
        check(M::Grpo, gamma, Err("applies to estimator gae only"));
        let gamma = AdvantageOptions {
            gamma: Some(1.5),
            ..none
        };
        check(M::Gae, gamma, Err("option `gamma` = 1.5"));
        let alpha = AdvantageOptions {
            alpha: Some(2.0),
            ..none
        };
        check(M::Grpo, alpha, Err("applies to estimator oprl only"));
        assert_eq!(alpha.resolve(M::Oprl).unwrap().oprl_alpha, Some(2.0));
        let filter = AdvantageOptions {
            filter_zero_variance: true,
            ..none
        };
        check(M::Gae, filter, Err("gae has no groups"));
        assert_eq!(none.resolve(M::Gae).unwrap().gae, Some((1.0, 1.0)));
        for method in M::ALL {
            assert_eq!(M::from_name(method.name()), Some(method));
        }
        assert_eq!(M::from_name("ppo"), None);
    }

    #[test]
    fn bad_requests_are_errors() {
        let groups = Groups::single(2);
        assert!(matches!(
            advantages(&[1.0], &groups, &Estimator::Rloo, false),
            Err(ShapeError::LengthMismatch {
                found: 1,
                expected: 2,
                ..
            })
        ));
        let bad = grpo(StdScope::Group, StdKind::Sample, -1.0);
        assert!(advantages(&[1.0, 2.0], &groups, &bad, false).is_err());
        let bad = grpo(StdScope::Group, StdKind::Sample, f64::NAN);
        assert!(advantages(&[1.0, 2.0], &groups, &bad, false).is_err());
        let mut short = [0.0];
        assert!(matches!(
            advantages_into(&[1.0, 2.0], &groups, &Estimator::Rloo, false, &mut short),
            Err(ShapeError::LengthMismatch { what: "out", .. })
        ));
    }
}
