//! The rewardkit facade: a reward **spec** (a TOML file) built into a scoring [`Pipeline`].
//!
//! A spec names reward terms (each a verifier kind with its options and a weight), how to combine
//! them, what to do with non-scores, and the per-sample budget. Loading validates everything up
//! front — unknown keys, unknown kinds, bad option values, NaN weights — and reports the offending
//! key, so that *a spec that loaded is a pipeline that runs*. Scoring never fails as a whole: each
//! sample gets a typed [`Outcome`] for the combined reward and for every term.
//!
//! ```
//! use rewardkit::{Pipeline, Spec};
//! use rewardkit_core::Sample;
//!
//! let spec = Spec::from_toml_str(r#"
//!     [[term]]
//!     name = "correct"
//!     kind = "gsm8k"
//! "#, "inline.toml").unwrap();
//! let pipeline = Pipeline::build(&spec).unwrap();
//! let sample = Sample::new("What is 6 * 7?", "6 * 7 = 42.\n#### 42").with_reference("42");
//! let scored = pipeline.score_batch(&[sample]);
//! assert_eq!(scored[0].reward.value(), Some(1.0));
//! ```

mod error;
mod pipeline;
mod registry;
mod shaping;
mod spec;

pub use error::SpecError;
pub use pipeline::{Pipeline, ScoredSample, Term};
pub use registry::{BuiltTerm, Registry, TermBuilder};
pub use shaping::{
    AdvantagesSpec, Combine, EstimatorName, MultiplierReport, PoolScope, ShapeInput, Shaped,
    TransformSpec, TransformState,
};
pub use spec::{BudgetSpec, NonScorePolicy, Spec, TermSpec};

pub use rewardkit_core as core;
pub use rewardkit_core::{Budget, Outcome, OutcomeKind, Reward, RewardOutput, Sample};
pub use rewardkit_shape as shape;
pub use rewardkit_verify as verify;
