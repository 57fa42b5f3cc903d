//! Rule-based rewards: text in, [`rewardkit_core::Outcome`] out. Pure and bounded.
