//! Rule-based ("verifiable") rewards: text in, [`rewardkit_core::Outcome`] out. Pure and bounded.
//!
//! Each verifier is a struct built from a validated options struct (`XOptions`, deserialisable
//! from a spec with unknown keys refused) and implements [`rewardkit_core::Reward`]. Every one of
//! them spends from the [`rewardkit_core::Meter`] it is given and never panics, whatever the input
//! (Architecture Invariant 1).

mod error;

pub mod choice;
pub mod format;
pub mod length;
pub mod numeric;
pub mod text;
pub mod tool;

pub use error::VerifyError;
