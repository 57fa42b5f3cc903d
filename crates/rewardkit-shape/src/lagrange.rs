//! Constrained combination with Lagrange multipliers (Moskovitz et al. 2024, "Confronting Reward
//! Model Overoptimization with Constrained RLHF"; tedmoskovitz/ConstrainedRL4LMs
//! `constrained_ppo`).

use serde::{Deserialize, Serialize};

use crate::transform::sigmoid;
use crate::ShapeError;

/// How a free parameter `μ` becomes a multiplier `λ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Squash {
    /// `λ = σ(μ) ∈ (0, 1)`: inequality constraints `v_i ≥ θ_i` (μ-PPO).
    Sigmoid,
    /// `λ = tanh(μ) ∈ (−1, 1)`: equality constraints `v_i = θ_i` (ξ-PPO).
    Tanh,
}

impl Squash {
    fn apply(self, mu: f64) -> f64 {
        match self {
            Squash::Sigmoid => sigmoid(mu),
            Squash::Tanh => mu.tanh(),
        }
    }

    /// `1 − λ`, without the cancellation of subtracting a λ close to 1: `σ(−μ)` for the sigmoid,
    /// `2σ(−2μ)` for tanh (as `1 − tanh μ = 2/(1 + e^{2μ})`).
    fn complement(self, mu: f64) -> f64 {
        match self {
            Squash::Sigmoid => sigmoid(-mu),
            Squash::Tanh => 2.0 * sigmoid(-2.0 * mu),
        }
    }

    fn derivative(self, mu: f64) -> f64 {
        match self {
            Squash::Sigmoid => {
                let s = sigmoid(mu);
                s * (1.0 - s)
            }
            Squash::Tanh => {
                let t = mu.tanh();
                1.0 - t * t
            }
        }
    }
}

/// The multipliers' whole state, for checkpoints: restoring it and applying the same updates
/// gives bit-identical multipliers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagrangeState {
    /// Per-constraint thresholds `θ_i` (the "proxy points").
    pub thresholds: Vec<f64>,
    /// The squashing function.
    pub squash: Squash,
    /// SGD learning rate (the authors use 0.1).
    pub learning_rate: f64,
    /// SGD momentum (the authors use 0.1).
    pub momentum: f64,
    /// The free parameters `μ_i`.
    pub mu: Vec<f64>,
    /// SGD momentum buffers, one per constraint.
    pub velocity: Vec<f64>,
    /// Updates applied so far.
    pub steps: u64,
}

/// Lagrange multipliers for constrained reward combination.
///
/// The Lagrangian is `L(π, λ) = v_0(π) + Σ_i λ_i·(v_i(π) − θ_i)`; the policy ascends it, the
/// multipliers descend it. One [`LagrangeMultipliers::update`] takes an SGD step (PyTorch's
/// momentum convention: `b ← m·b + g`, first step `b = g`; `μ ← μ − lr·b`) on the loss
/// `Σ_i λ_i·(mean_i − θ_i)` with the batch means detached, whose gradient in `μ_i` is
/// `(mean_i − θ_i)·λ'(μ_i)`. So `λ_i` rises while constraint `i` is violated (`mean_i < θ_i`) and
/// falls once it is satisfied, and stays bounded by the squash.
#[derive(Clone, Debug, PartialEq)]
pub struct LagrangeMultipliers {
    state: LagrangeState,
}

impl LagrangeMultipliers {
    /// Multipliers for the given thresholds, starting at `μ = initial_mu` for every constraint.
    pub fn new(
        thresholds: Vec<f64>,
        squash: Squash,
        learning_rate: f64,
        momentum: f64,
        initial_mu: f64,
    ) -> Result<LagrangeMultipliers, ShapeError> {
        let n = thresholds.len();
        LagrangeMultipliers::from_state(LagrangeState {
            thresholds,
            squash,
            learning_rate,
            momentum,
            mu: vec![initial_mu; n],
            velocity: vec![0.0; n],
            steps: 0,
        })
    }

    /// Restores multipliers from a saved state, validating it.
    pub fn from_state(state: LagrangeState) -> Result<LagrangeMultipliers, ShapeError> {
        let n = state.thresholds.len();
        if n == 0 {
            return Err(ShapeError::invalid(
                "thresholds",
                "[]",
                "at least one constraint",
            ));
        }
        ShapeError::check_len("mu", state.mu.len(), n, "constraint")?;
        ShapeError::check_len("velocity", state.velocity.len(), n, "constraint")?;
        let finite = |xs: &[f64]| xs.iter().all(|x| x.is_finite());
        if !finite(&state.thresholds) || !finite(&state.mu) || !finite(&state.velocity) {
            return Err(ShapeError::invalid(
                "state",
                "a non-finite value",
                "finite thresholds, mu and velocity",
            ));
        }
        if !(state.learning_rate.is_finite() && state.learning_rate > 0.0) {
            return Err(ShapeError::invalid(
                "learning_rate",
                state.learning_rate,
                "a finite number > 0",
            ));
        }
        if !(state.momentum.is_finite() && (0.0..1.0).contains(&state.momentum)) {
            return Err(ShapeError::invalid(
                "momentum",
                state.momentum,
                "a number in [0, 1)",
            ));
        }
        Ok(LagrangeMultipliers { state })
    }

    /// The state, for saving.
    pub fn state(&self) -> &LagrangeState {
        &self.state
    }

    /// The multipliers `λ_i = squash(μ_i)`.
    pub fn multipliers(&self) -> Vec<f64> {
        self.state
            .mu
            .iter()
            .map(|&mu| self.state.squash.apply(mu))
            .collect()
    }

    /// One update from this batch's mean constraint returns (one per constraint). A non-finite
    /// mean is refused (it would poison the multiplier for the rest of the run).
    pub fn update(&mut self, means: &[f64]) -> Result<(), ShapeError> {
        let state = &mut self.state;
        ShapeError::check_len("means", means.len(), state.thresholds.len(), "constraint")?;
        if let Some(m) = means.iter().find(|m| !m.is_finite()) {
            return Err(ShapeError::invalid("means", m, "finite batch means"));
        }
        for (i, &mean) in means.iter().enumerate() {
            let gradient = (mean - state.thresholds[i]) * state.squash.derivative(state.mu[i]);
            state.velocity[i] = if state.steps == 0 {
                gradient
            } else {
                state.momentum * state.velocity[i] + gradient
            };
            state.mu[i] -= state.learning_rate * state.velocity[i];
        }
        state.steps += 1;
        Ok(())
    }

    /// The mixed advantage of the authors' code: `(N − Σ_i λ_i)·A_0 + Σ_i λ_i·A_i` with `N` the
    /// number of constraints (the base weight is summed as `Σ_i (1 − λ_i)`, each computed
    /// directly from `μ_i`, so it keeps its precision when the multipliers approach 1), `A_0` the task (KL-regularised) advantage and `A_i` the
    /// constraints' (each normalised by the caller). NaN where any input is non-finite.
    pub fn combine(&self, base: &[f64], terms: &[&[f64]]) -> Result<Vec<f64>, ShapeError> {
        let lambdas = self.multipliers();
        ShapeError::check_len("terms", terms.len(), lambdas.len(), "constraint")?;
        for term in terms {
            ShapeError::check_len("term", term.len(), base.len(), "sample of the base")?;
        }
        // N − Σλ_i = Σ(1 − λ_i), each term computed without cancellation (λ → 1 as μ grows).
        let squash = self.state.squash;
        let base_weight: f64 = self.state.mu.iter().map(|&mu| squash.complement(mu)).sum();
        Ok((0..base.len())
            .map(|s| {
                let mut total = base_weight * base[s];
                for (term, lambda) in terms.iter().zip(&lambdas) {
                    total += lambda * term[s];
                }
                if total.is_finite() && terms.iter().all(|t| t[s].is_finite()) {
                    total
                } else {
                    f64::NAN
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_move_against_the_constraint() {
        let mut lagrange =
            LagrangeMultipliers::new(vec![0.5, 0.5], Squash::Sigmoid, 0.1, 0.1, 0.0).unwrap();
        assert_eq!(lagrange.multipliers(), [0.5, 0.5]);
        lagrange.update(&[0.2, 0.9]).unwrap(); // first violated, second satisfied
        let after = lagrange.multipliers();
        assert!(after[0] > 0.5 && after[1] < 0.5, "{after:?}");
        // First step by hand: g = (0.2 − 0.5)·0.25 = −0.075; μ = 0.0075.
        assert_eq!(lagrange.state().mu[0], 0.1 * 0.075);
        lagrange.update(&[0.2, 0.9]).unwrap();
        // Second: b = 0.1·(−0.075) + (−0.3)·σ'(0.0075).
        let s = sigmoid(0.0075);
        let b = 0.1 * -0.075 + -0.3 * s * (1.0 - s);
        assert!((lagrange.state().mu[0] - (0.0075 - 0.1 * b)).abs() < 1e-17);
    }

    #[test]
    fn state_round_trips_and_validates() {
        let mut lagrange =
            LagrangeMultipliers::new(vec![1.0], Squash::Tanh, 0.1, 0.1, 0.3).unwrap();
        lagrange.update(&[0.0]).unwrap();
        let saved = lagrange.state().clone();
        let mut restored = LagrangeMultipliers::from_state(saved).unwrap();
        lagrange.update(&[2.0]).unwrap();
        restored.update(&[2.0]).unwrap();
        assert_eq!(lagrange, restored);
        assert!(lagrange.update(&[f64::NAN]).is_err());
        assert!(lagrange.update(&[1.0, 2.0]).is_err());
        assert!(LagrangeMultipliers::new(vec![], Squash::Tanh, 0.1, 0.1, 0.0).is_err());
        assert!(LagrangeMultipliers::new(vec![1.0], Squash::Tanh, 0.0, 0.1, 0.0).is_err());
        assert!(LagrangeMultipliers::new(vec![1.0], Squash::Tanh, 0.1, 1.0, 0.0).is_err());
        assert!(
            LagrangeMultipliers::new(vec![1.0], Squash::Tanh, 0.1, 0.1, f64::INFINITY).is_err()
        );
    }

    #[test]
    fn combine_mixes_advantages() {
        let lagrange =
            LagrangeMultipliers::new(vec![0.0, 0.0], Squash::Sigmoid, 0.1, 0.0, 0.0).unwrap();
        // λ = [0.5, 0.5]: (2 − 1)·A0 + 0.5·A1 + 0.5·A2.
        let out = lagrange
            .combine(&[1.0, 2.0], &[&[2.0, 0.0], &[4.0, f64::NAN]])
            .unwrap();
        assert_eq!(out[0], 1.0 + 1.0 + 2.0);
        assert!(out[1].is_nan());
        assert!(lagrange.combine(&[1.0], &[&[1.0]]).is_err());
    }
}
