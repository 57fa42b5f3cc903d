//! Advantage estimators for group-sampled policy optimisation.

use serde::{Deserialize, Serialize};

use crate::error::check_finite_at_least;
use crate::stats::Centre;
use crate::{Groups, ShapeError};

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
    /// reward) and filtered ones (zero-variance groups, when filtering); never NaN otherwise.
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
    /// The reward itself.
    Raw,
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

/// Advantages of outcome rewards under `estimator`.
///
/// `filter_zero_variance` masks the samples of zero-variance groups (as OpenRLHF's and verl's
/// dynamic filtering drop them); otherwise their advantage is what the estimator gives, which is
/// 0 for every group-centred estimator.
///
/// Errors only when `groups` does not cover `rewards` or an option is out of range.
pub fn advantages(
    rewards: &[f64],
    groups: &Groups,
    estimator: &Estimator,
    filter_zero_variance: bool,
) -> Result<Advantages, ShapeError> {
    let Some(offsets) = groups.ranges() else {
        let mut values = vec![0.0f64; rewards.len()];
        let summary = advantages_into(
            rewards,
            groups,
            estimator,
            filter_zero_variance,
            &mut values,
        )?;
        return Ok(Advantages { values, summary });
    };
    // Consecutive groups are written front to back, so the output is appended to a vector with
    // the capacity reserved: no zero-filling first (`vec![0.0; n]` is a memset, or a page fault
    // per 4 KiB of fresh memory) and each element written once. The values are those of
    // `advantages_into`: the same `compute`, only the store differs.
    groups.check("rewards", rewards.len())?;
    estimator.validate()?;
    let mut values = Vec::with_capacity(rewards.len());
    let summary = compute(
        rewards,
        &Ranges(offsets),
        estimator,
        filter_zero_variance,
        &mut values,
    );
    debug_assert_eq!(values.len(), rewards.len());
    Ok(Advantages { values, summary })
}

/// Where [`compute`] stores the advantages: a caller's slice (any order), or a vector appended
/// to (consecutive groups only, written in order).
trait Out {
    /// `out[start + k] = f(src[k])` for every `k`.
    fn fill(&mut self, start: usize, src: &[f64], f: impl Fn(f64) -> f64);
    /// The values written so far (all of them once every group is written).
    fn slice(&mut self) -> &mut [f64];
}

impl Out for [f64] {
    #[inline(always)]
    fn fill(&mut self, start: usize, src: &[f64], f: impl Fn(f64) -> f64) {
        for (value, &x) in self[start..start + src.len()].iter_mut().zip(src) {
            *value = f(x);
        }
    }

    fn slice(&mut self) -> &mut [f64] {
        self
    }
}

impl Out for Vec<f64> {
    #[inline(always)]
    fn fill(&mut self, start: usize, src: &[f64], f: impl Fn(f64) -> f64) {
        debug_assert_eq!(self.len(), start, "groups are appended in order");
        self.extend(src.iter().map(|&x| f(x)));
    }

    fn slice(&mut self) -> &mut [f64] {
        self
    }
}

/// [`advantages`] into a caller's buffer (one value per reward), for a trainer that reuses its
/// buffers from step to step: no allocation besides a list of one-element groups.
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
        Some(offsets) => compute(
            rewards,
            &Ranges(offsets),
            estimator,
            filter_zero_variance,
            out,
        ),
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

/// How [`compute`] visits the members of group `g`.
trait Layout {
    fn count(&self) -> usize;
    fn len(&self, g: usize) -> usize;
    fn centre(&self, rewards: &[f64], g: usize) -> Centre;
    /// `out[i] = f(rewards[i])` for every member `i`.
    fn map<O: Out + ?Sized>(&self, rewards: &[f64], out: &mut O, g: usize, f: impl Fn(f64) -> f64);
    /// Calls `f(i)` for every member `i`.
    fn each(&self, g: usize, f: impl FnMut(usize));
}

/// Consecutive groups: group `g` is `offsets[g]..offsets[g + 1]`.
struct Ranges<'a>(&'a [usize]);

impl Layout for Ranges<'_> {
    fn count(&self) -> usize {
        self.0.len() - 1
    }

    #[inline(always)]
    fn len(&self, g: usize) -> usize {
        self.0[g + 1] - self.0[g]
    }

    #[inline(always)]
    fn centre(&self, rewards: &[f64], g: usize) -> Centre {
        let members = &rewards[self.0[g]..self.0[g + 1]];
        // The usual group sizes get a copy of the statistics with the length known at compile
        // time (fully unrolled, no loop control); the sums are the same, lane for lane.
        match members.len() {
            8 => fixed::<8>(members),
            16 => fixed::<16>(members),
            32 => fixed::<32>(members),
            64 => fixed::<64>(members),
            _ => Centre::of_slice(members),
        }
    }

    #[inline(always)]
    fn map<O: Out + ?Sized>(&self, rewards: &[f64], out: &mut O, g: usize, f: impl Fn(f64) -> f64) {
        let (start, end) = (self.0[g], self.0[g + 1]);
        out.fill(start, &rewards[start..end], f);
    }

    fn each(&self, g: usize, f: impl FnMut(usize)) {
        (self.0[g]..self.0[g + 1]).for_each(f);
    }
}

/// Scattered groups, through their member lists.
struct Lists<'a>(&'a Groups);

impl Layout for Lists<'_> {
    fn count(&self) -> usize {
        self.0.count()
    }

    fn len(&self, g: usize) -> usize {
        self.0.members(g).len()
    }

    fn centre(&self, rewards: &[f64], g: usize) -> Centre {
        Centre::of_indices(rewards, self.0.members(g))
    }

    fn map<O: Out + ?Sized>(&self, rewards: &[f64], out: &mut O, g: usize, f: impl Fn(f64) -> f64) {
        // Only ever called with a caller's slice (scattered groups are not appendable).
        let out = out.slice();
        for &i in self.0.members(g) {
            out[i] = f(rewards[i]);
        }
    }

    fn each(&self, g: usize, f: impl FnMut(usize)) {
        self.0.members(g).iter().copied().for_each(f);
    }
}

/// [`Centre::of_slice`] of a slice of length `N`, with `N` known to the compiler.
#[inline(always)]
fn fixed<const N: usize>(members: &[f64]) -> Centre {
    match <&[f64; N]>::try_from(members) {
        Ok(array) => Centre::of_slice_inline(array),
        Err(_) => Centre::of_slice(members),
    }
}

/// Writes `f(x)` for every finite member `x` of group `g` and NaN for the others; `dense` says
/// that every member is finite, so the check is skipped and the loop vectorises.
#[inline(always)]
fn apply<O: Out + ?Sized>(
    layout: &impl Layout,
    rewards: &[f64],
    values: &mut O,
    g: usize,
    dense: bool,
    f: impl Fn(f64) -> f64,
) {
    if dense {
        layout.map(rewards, values, g, f);
    } else {
        layout.map(rewards, values, g, |x| {
            if x.is_finite() {
                f(x)
            } else {
                f64::NAN
            }
        });
    }
}

/// The advantages, in one visit per group (statistics, then writes while the group is still in
/// cache) plus, for REINFORCE++, one batch normalisation. Every output is written.
fn compute<O: Out + ?Sized>(
    rewards: &[f64],
    layout: &impl Layout,
    estimator: &Estimator,
    filter_zero_variance: bool,
    values: &mut O,
) -> AdvantageSummary {
    let n = rewards.len();
    let count = layout.count();
    let mut summary = AdvantageSummary {
        samples: n,
        groups: count,
        ..AdvantageSummary::default()
    };
    let mut finite_total = 0usize;
    // Samples alone in their group under REINFORCE++-baseline: advantage 0, set at the end.
    let mut singletons = Vec::new();
    // GRPO with batch scaling: the batch std, needed before any group is written.
    let batch_std = match *estimator {
        Estimator::Grpo {
            scale: StdScope::Batch,
            std,
            ..
        } => Centre::of_slice(rewards).std(std),
        _ => None,
    };
    for g in 0..count {
        let centre = layout.centre(rewards, g);
        finite_total += centre.count;
        let fate = match centre.count {
            0 => GroupFate::Empty,
            1 => GroupFate::Singleton,
            _ if centre.constant => GroupFate::ZeroVariance,
            _ => GroupFate::Signal,
        };
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
                // Scores a_i for the batch normalisation below: R_i − mean_g, or R_i. A
                // singleton with a baseline has no score: its advantage is 0 and it stays out of
                // the batch statistics (NaN until then).
                Estimator::ReinforcePlusPlus {
                    baseline: false, ..
                } => Write::Raw,
                Estimator::ReinforcePlusPlus { .. } if fate == GroupFate::Singleton => {
                    layout.each(g, |i| {
                        if rewards[i].is_finite() {
                            singletons.push(i);
                        }
                    });
                    Write::Fixed(f64::NAN)
                }
                Estimator::ReinforcePlusPlus { .. } if fate == GroupFate::Signal => {
                    Write::Scaled(1.0)
                }
                Estimator::ReinforcePlusPlus { .. } => Write::Fixed(0.0),
            }
        };
        let (pivot, mean) = (centre.pivot, centre.shifted_mean);
        let dense = centre.count == layout.len(g);
        match write {
            Write::Divided(d) => apply(layout, rewards, values, g, dense, |x| {
                ((x - pivot) - mean) / d
            }),
            Write::Scaled(1.0) => apply(layout, rewards, values, g, dense, |x| (x - pivot) - mean),
            Write::Scaled(m) => apply(layout, rewards, values, g, dense, |x| {
                ((x - pivot) - mean) * m
            }),
            Write::Raw => apply(layout, rewards, values, g, dense, |x| x),
            Write::Fixed(value) => apply(layout, rewards, values, g, dense, |_| value),
        }
    }
    summary.masked = n - finite_total;

    if let Estimator::ReinforcePlusPlus { std, epsilon, .. } = *estimator {
        // One batch normalisation over the samples that take part (finite, not filtered, and —
        // with a baseline — not alone in their group).
        let values = values.slice();
        let batch = Centre::of_slice(values);
        let divisor = batch.std(std).map(|s| s + epsilon);
        let usable = matches!(divisor, Some(d) if !batch.constant && d > 0.0);
        let (pivot, mean, d) = (batch.pivot, batch.shifted_mean, divisor.unwrap_or(1.0));
        for value in values.iter_mut() {
            let v = *value;
            *value = match (v.is_finite(), usable) {
                (true, true) => ((v - pivot) - mean) / d,
                (true, false) => 0.0,
                (false, _) => v,
            };
        }
        for i in singletons {
            values[i] = 0.0;
        }
    }
    summary
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
