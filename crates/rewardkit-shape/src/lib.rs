//! Reward transforms, combinations and advantage estimators, as pure functions on slices.
//!
//! Raw rewards are rarely what a policy should optimise. This crate holds the methods the
//! literature uses between "a reward per sample" and "an advantage per sample", each with its
//! formula and source on the function:
//!
//! * **advantages** ([`advantages`]): GRPO with group, batch or no std scaling, population or
//!   sample std and an ε; Dr.GRPO; RLOO; REINFORCE++ with and without a group baseline;
//!   [`gae`] over per-step rewards and values; and OPRL's episode-plus-step
//!   [`oprl_advantages`];
//! * **transforms** ([`transform`]): mean/std normalisation (batch, per group, running), clip,
//!   min-max, ceiling, PAR with `M` reference rewards and slope `k`, log-sigmoid centring with a
//!   per-prompt reference reward (an empirical quantile or PAR's normal fit of reference
//!   samples), MM-RLHF dynamic scaling, the Self-Aligned Reward from token log-probabilities,
//!   ONI's count-decayed intrinsic reward ([`count_decay`] with [`MessageCounts`]), and
//!   [`potential_shaping`] for step rewards; transforms with state across batches keep it in
//!   plain serde data the caller owns ([`RunningStats`], [`MessageCounts`]), so saving and
//!   restoring it is exact;
//! * **step rewards** for per-step estimators: [`dense_turn_rewards`] (multi-turn agents) and
//!   [`mixed_grained_rewards`] (sequence plus item rewards);
//! * **combinations** ([`combine`]): weighted sum, sum-then-normalise, normalise-then-sum,
//!   conjunction, minimum, product and gates; HERON's [`Lexicographic`] comparator and its
//!   scalarisation within groups; and
//!   constrained combination with [`LagrangeMultipliers`].
//!
//! # Why slices and not tensors
//!
//! Every trainer holds rewards as a flat array plus group ids, whatever its tensor library. A
//! function of `&[f64]` and a [`Groups`] table is callable from the CLI, the server, a Python
//! binding or a trainer's own loop without copying into another representation, and is trivially
//! checked against a NumPy reference (`tests/reference/shape_reference.py` at the repository
//! root, run by `.ci/shape.sh`).
//!
//! # Numerical hardening, and what "defined" means
//!
//! Peers' users hit three classes of silent bugs (peers.md): NaN advantages from the std of a
//! one-element group (TRL PR #5773), catastrophic cancellation in leave-one-out means computed as
//! `(sum − R_i)/(K−1)` (NeMo-RL PR #4158), and zero-variance groups that carry no signal. Here:
//!
//! * **Non-finite rewards are masked and counted**, never folded into a statistic: NaN and ±∞
//!   rewards get a NaN advantage (the caller drops them from the loss; the CLI writes null) and
//!   are counted in [`AdvantageSummary::masked`]. A NaN output means exactly "masked"; no finite
//!   input ever produces NaN. A failure is never a number, so a crashed verifier cannot turn into
//!   a reward of 0 and give "do nothing" a positive advantage.
//! * **One-element groups are defined**: a sample alone in its group (after masking) has
//!   advantage 0 — there is no baseline to compare it with — and the group is counted
//!   ([`AdvantageSummary::singleton_groups`]). (verl instead passes the raw score through.)
//! * **Zero-variance groups** (two or more equal finite rewards) get advantage 0 from every
//!   group-centred estimator, exactly, and are counted; with `filter_zero_variance` they are
//!   masked instead, like OpenRLHF's and verl's dynamic filtering.
//! * **Centring is exact on offset data.** Group statistics shift the values by a pivot (the first
//!   finite value) before averaging and correct the mean with a second pass over the residuals.
//!   Rewards like `1e9 + u` shift exactly (Sterbenz's lemma), so `R_i − mean_g` keeps the full
//!   precision of `u` instead of the ~1e-7 absolute error of a mean of the raw values, and RLOO is
//!   computed as `(K/(K−1))·(R_i − mean_g)`, which equals the leave-one-out definition
//!   `R_i − (Σ_{j≠i} R_j)/(K−1)` algebraically without its subtraction of two large sums.
//!
//! # Speed without changing a bit
//!
//! Group statistics run on AVX where the CPU has it (picked at run time; the same sums in the same
//! order as the portable code), and inputs above 65,536 samples (or GAE steps) are split over the
//! threads of the current rayon pool at group or episode boundaries. Batch-wide statistics
//! (REINFORCE++'s, with and without the baseline, and GRPO's batch-scaled std) are combined in a
//! fixed order of fixed blocks, which threads take whole. Every result is the same to the bit
//! whatever the CPU path and the number of threads; the unit tests compare them.
//!
//! # Options are validated, values are not
//!
//! A bad *request* (slices of different lengths, a negative ε, a quantile of 1.5) is a
//! [`ShapeError`] naming the option and what was expected. A bad *value* (a NaN reward) is data:
//! it is masked and counted. Functions never panic on any input.

#![deny(missing_docs)]

mod advantage;
pub mod combine;
mod dense;
mod error;
mod gae;
mod groups;
mod lagrange;
mod lexicographic;
mod oprl;
mod running;
mod simd;
mod stats;
pub mod transform;

pub use advantage::{
    advantages, advantages_into, AdvantageConfig, AdvantageMethod, AdvantageOptions,
    AdvantageSummary, Advantages, Estimator, StdKind, StdScope,
};
pub use dense::{dense_turn_rewards, mixed_grained_advantages, mixed_grained_rewards};
pub use error::ShapeError;
pub use gae::{gae, gae_into, potential_shaping, Gae};
pub use groups::Groups;
pub use lagrange::{LagrangeMultipliers, LagrangeState, Squash};
pub use lexicographic::Lexicographic;
pub use oprl::oprl_advantages;
pub use rewardkit_core::RunningStats;
pub use running::{count_decay, decay_by_counts, running_std, MessageCounts};
