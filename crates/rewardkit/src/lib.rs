//! rewardkit facade.
