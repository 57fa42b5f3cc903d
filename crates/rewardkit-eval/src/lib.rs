//! Reward-model evaluation with the field's protocols, confidence intervals and diagnostics.
//!
//! Reward models are chosen by benchmark numbers, so this crate is about making those numbers
//! *comparable* and *honest*. Three decisions shape it.
//!
//! # The reference rules, corner cases included
//!
//! A benchmark score is only comparable to the leaderboard when it is computed the way the
//! reference code computes it, and the differences hide in ties. RewardBench v1 counts a tied
//! pair as **wrong** (`score(chosen) > score(rejected)`); RewardBench 2 **shares** the credit of
//! a tie at the top among the tied answers; its Ties subset has a rule of its own, a weighted
//! mix of accuracies and margins in which a 0/0 becomes 0 and a comparison with NaN is false,
//! because that is what NumPy does in the reference. [`protocol`] implements each rule as a pure
//! function with hand-computed test cases, and says where a rule departs from the reference
//! (RewardBench v1's code weights `math-prm` as 984 prompts; here every subset weighs its real
//! count).
//!
//! Every reward is a reward model: a verifier (`gsm8k`), a length penalty or a learned model is
//! scored the same way, from a spec ([`SpecReward`]) or from a file of precomputed scores
//! ([`read_scores`]). Benchmarks come in three layouts ([`Layout`]): pairs, RewardBench 2's
//! best-of-N rows, and N samples per prompt with gold labels; [`BenchOptions`] maps other files
//! onto them by dotted field paths rather than by converted copies, reading through
//! `rewardkit-data` so that every bad row is an error naming its file, line and field.
//!
//! # Intervals from resampling prompts
//!
//! A difference of one point between two reward models on 1,865 prompts is often noise. Every
//! number here carries a percentile bootstrap interval (Efron & Tibshirani 1993) that resamples
//! **prompts** — the unit that was sampled — **within each subset**, so subset sizes (and the
//! weights that depend on them) stay fixed and a Ties prompt carries both of its versions. The
//! generator is seeded SplitMix64 written out in [`stats`], so a report is reproducible bit for
//! bit. Two rewards are compared *paired* ([`compare`]): each bootstrap replicate scores both on
//! the same resampled prompts, which removes the prompt-difficulty variance both share, and
//! McNemar's test (exact binomial and continuity-corrected chi-square) on the items one gets
//! right and the other wrong gives a second opinion.
//!
//! # Diagnostics that say *why*
//!
//! Beyond accuracy, [`Evaluation`] holds the calibration of the Bradley–Terry probability
//! `σ(r_c − r_r)` (expected calibration error and a reliability diagram), length bias (accuracy
//! when the chosen answer is the longer vs the shorter one; reward–length correlations), score
//! distributions of correct and incorrect answers and, for labelled N-sample data, the best-of-N
//! curve (the reward's pick vs majority vote vs oracle pass@N as N grows) and B-STaR's balance
//! score (methods.md §23). [`report`] renders all of it as a terminal table, JSON, and a
//! self-contained HTML page whose plots are inline SVG drawn here (no scripts from the network,
//! no plotting library).
//!
//! Non-scores never become numbers silently: a candidate the reward could not score makes its
//! item wrong, excludes it, or stops the run ([`NonScores`]), and the report counts them.

#![deny(missing_docs)]

pub mod bench;
mod error;
mod evaluate;
pub mod protocol;
pub mod report;
mod scores;
pub mod stats;
mod svg;

pub use bench::{BenchOptions, Benchmark, Candidate, Item, Layout, Protocol, TiesRole};
pub use error::EvalError;
pub use evaluate::{
    compare, evaluate, Balance, BalancePoint, BestOfNCurve, BootstrapInfo, Calibration, Comparison,
    Distributions, Estimate, EvalOptions, Evaluation, GroupAccuracy, ItemOutcomes, LeftOut,
    LengthBias, NonScores, ReliabilityBin, SectionResult, SubsetResult, Vote,
};
pub use scores::{
    default_cache_dir, fnv1a_128, read_scores, sample_key, write_atomically, write_scores,
    ScoreCache, SpecReward,
};
