//! The vocabulary every other rewardkit crate speaks.
//!
//! A [`Sample`] is what gets rewarded: a prompt, a completion, an optional reference (ground
//! truth), an optional group id and free metadata. A [`Reward`] term turns samples into
//! [`RewardOutput`]s, each carrying an [`Outcome`] — a score, or a typed reason why there is no
//! score. A failure is never a number: rewarding "I crashed" with 0 is itself a reward-hacking
//! vector, so what to do with a non-score is an explicit policy decided further up (in the spec).
//!
//! Every term works under a [`Budget`]: deterministic limits (input bytes, abstract steps) plus an
//! optional wall-clock deadline. Terms check it cooperatively through a [`Meter`]; nothing here
//! uses signals or process-wide state, so scoring is safe on any thread.
//!
//! This crate knows nothing of I/O, async, HTTP or machine-learning runtimes (Architecture
//! Invariant 3 in `ARCHITECTURE.md`).

#![deny(missing_docs)]

mod budget;
mod outcome;
mod reward;
mod sample;
mod stats;

pub use budget::{Budget, Exhausted, Meter};
pub use outcome::{Outcome, OutcomeKind};
pub use reward::{Reward, RewardOutput};
pub use sample::{Completion, Message, Prompt, Reference, Sample};
pub use stats::RunningStats;
