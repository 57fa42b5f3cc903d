//! Training objectives: the loss of a batch of rewards and its gradient with respect to each
//! reward.
//!
//! Losses are computed here in `f64` on the rewards the network produced, together with their
//! exact derivatives `∂L/∂r`; the trainer then back-propagates `Σ r·(∂L/∂r)` through the network.
//! Keeping the objectives outside the autograd graph makes each of them a small pure function that
//! is tested against hand-computed values, and makes adding one a matter of two formulas.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What the model is trained to do.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Objective {
    /// Bradley–Terry: `L = −log σ(r_c − r_r)` (TRL `RewardTrainer`, OpenRLHF `PairWiseLoss`).
    Bt,
    /// Bradley–Terry with a per-pair margin `m` from the data: `L = −log σ(r_c − r_r − m)`
    /// (HelpSteer2-Preference, methods.md §5; TRL's `margin` column; Llama 2).
    BtMargin,
    /// Scaled Bradley–Terry: `L = −m·log σ(r_c − r_r)` with the preference magnitude `m` from the
    /// data (HelpSteer2-Preference, methods.md §5).
    ScaledBt,
    /// Label smoothing: `L = −[(1−α)·log σ(Δ) + α·log σ(−Δ)]` (Secrets of RLHF Part II,
    /// methods.md §6); `α = 0` is Bradley–Terry.
    LabelSmoothing {
        /// The smoothing `α`, in `[0, 0.5)`.
        alpha: f64,
    },
    /// OpenRLHF's `LogExpLoss`: `L = log(1 + exp(r_r − r_c))`. Mathematically the same function
    /// as Bradley–Terry (`softplus(−Δ) = −log σ(Δ)`); kept under its own name because users ask
    /// for it by that name.
    LogExp,
    /// Regression: mean squared error between the rewards and rating targets (one output per
    /// attribute; SteerLM regression in HelpSteer2, methods.md §5).
    Regression,
}

impl Objective {
    /// Parses a CLI name: `bt`, `bt-margin`, `scaled-bt`, `label-smoothing` (with `alpha`),
    /// `log-exp`, `regression`.
    pub fn from_name(name: &str, alpha: Option<f64>) -> Result<Objective, ModelError> {
        let objective = match name {
            "bt" => Objective::Bt,
            "bt-margin" | "margin" => Objective::BtMargin,
            "scaled-bt" => Objective::ScaledBt,
            "label-smoothing" => Objective::LabelSmoothing {
                alpha: alpha.unwrap_or(0.1),
            },
            "log-exp" => Objective::LogExp,
            "regression" | "mse" => Objective::Regression,
            other => {
                return Err(ModelError::option(
                    "objective",
                    format!(
                        "unknown objective `{other}`; expected one of bt, bt-margin, scaled-bt, \
                         label-smoothing, log-exp, regression"
                    ),
                ))
            }
        };
        if alpha.is_some() && !matches!(objective, Objective::LabelSmoothing { .. }) {
            return Err(ModelError::option(
                "label-smoothing",
                "a smoothing alpha only applies to the label-smoothing objective",
            ));
        }
        objective.validate()?;
        Ok(objective)
    }

    /// The CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Bt => "bt",
            Objective::BtMargin => "bt-margin",
            Objective::ScaledBt => "scaled-bt",
            Objective::LabelSmoothing { .. } => "label-smoothing",
            Objective::LogExp => "log-exp",
            Objective::Regression => "regression",
        }
    }

    /// Checks parameters.
    pub fn validate(&self) -> Result<(), ModelError> {
        if let Objective::LabelSmoothing { alpha } = self {
            if !(0.0..0.5).contains(alpha) {
                return Err(ModelError::option(
                    "label-smoothing",
                    format!("alpha must be in [0, 0.5), got {alpha}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this objective trains on preference pairs (otherwise on ratings).
    pub fn is_pairwise(&self) -> bool {
        !matches!(self, Objective::Regression)
    }

    /// Whether each pair must carry a margin/magnitude value.
    pub fn needs_margin(&self) -> bool {
        matches!(self, Objective::BtMargin | Objective::ScaledBt)
    }

    /// The mean loss over a batch of pairs and its gradient with respect to each chosen and
    /// rejected reward, plus `centring · mean((r_c + r_r)²)` (TRL's
    /// `center_rewards_coefficient`, Eisenstein et al. 2023) when `centring > 0`.
    ///
    /// `margins` holds one value per pair for [`Objective::BtMargin`] and
    /// [`Objective::ScaledBt`] and is ignored otherwise.
    pub fn pair_loss(
        &self,
        chosen: &[f64],
        rejected: &[f64],
        margins: &[f64],
        centring: f64,
    ) -> PairLoss {
        let n = chosen.len();
        assert_eq!(
            n,
            rejected.len(),
            "chosen and rejected rewards differ in count: this is a bug"
        );
        let mut loss = 0.0;
        let mut grad_chosen = vec![0.0; n];
        let mut grad_rejected = vec![0.0; n];
        let mut correct = 0;
        for i in 0..n {
            let delta = chosen[i] - rejected[i];
            if delta > 0.0 {
                correct += 1;
            }
            let margin = margins.get(i).copied().unwrap_or(0.0);
            // (loss, ∂loss/∂Δ) for this pair.
            let (l, d) = match *self {
                Objective::Bt | Objective::LogExp | Objective::Regression => {
                    (-log_sigmoid(delta), -sigmoid(-delta))
                }
                Objective::BtMargin => (-log_sigmoid(delta - margin), -sigmoid(margin - delta)),
                Objective::ScaledBt => (-margin * log_sigmoid(delta), -margin * sigmoid(-delta)),
                Objective::LabelSmoothing { alpha } => (
                    -(1.0 - alpha) * log_sigmoid(delta) - alpha * log_sigmoid(-delta),
                    -(1.0 - alpha) * sigmoid(-delta) + alpha * sigmoid(delta),
                ),
            };
            let l = if matches!(self, Objective::LogExp) {
                softplus(-delta)
            } else {
                l
            };
            loss += l;
            grad_chosen[i] += d;
            grad_rejected[i] -= d;
            if centring > 0.0 {
                let sum = chosen[i] + rejected[i];
                loss += centring * sum * sum;
                grad_chosen[i] += 2.0 * centring * sum;
                grad_rejected[i] += 2.0 * centring * sum;
            }
        }
        let scale = if n == 0 { 0.0 } else { 1.0 / n as f64 };
        grad_chosen.iter_mut().for_each(|g| *g *= scale);
        grad_rejected.iter_mut().for_each(|g| *g *= scale);
        PairLoss {
            loss: loss * scale,
            grad_chosen,
            grad_rejected,
            correct,
        }
    }

    /// Mean squared error over every (row, attribute) and its gradient, for
    /// [`Objective::Regression`]: `L = mean((r − y)²)`.
    pub fn regression_loss(predictions: &[f64], targets: &[f64]) -> (f64, Vec<f64>) {
        assert_eq!(
            predictions.len(),
            targets.len(),
            "prediction/target count: this is a bug"
        );
        let n = predictions.len().max(1) as f64;
        let mut loss = 0.0;
        let grad = predictions
            .iter()
            .zip(targets)
            .map(|(p, y)| {
                let e = p - y;
                loss += e * e;
                2.0 * e / n
            })
            .collect();
        (loss / n, grad)
    }
}

/// The loss of a batch of pairs and its gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct PairLoss {
    /// Mean loss over the pairs (regulariser included).
    pub loss: f64,
    /// `∂L/∂r_c` for each pair.
    pub grad_chosen: Vec<f64>,
    /// `∂L/∂r_r` for each pair.
    pub grad_rejected: Vec<f64>,
    /// Pairs with `r_c > r_r` (a tie counts as wrong, as in RewardBench).
    pub correct: usize,
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log σ(x)`, accurate for large |x| (no `log(0)`).
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// `log(1 + eˣ)`, accurate for large |x|.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LN2: f64 = std::f64::consts::LN_2;

    /// Checks the loss, then checks every gradient against a central finite difference.
    fn check(
        objective: Objective,
        chosen: &[f64],
        rejected: &[f64],
        margins: &[f64],
        centring: f64,
        loss: f64,
    ) {
        let got = objective.pair_loss(chosen, rejected, margins, centring);
        assert!(
            (got.loss - loss).abs() < 1e-12,
            "{objective:?}: loss {} != {loss}",
            got.loss
        );
        let h = 1e-6;
        for i in 0..chosen.len() {
            for (side, grad) in [(0, &got.grad_chosen), (1, &got.grad_rejected)] {
                let (mut c, mut r) = (chosen.to_vec(), rejected.to_vec());
                let v = if side == 0 { &mut c } else { &mut r };
                v[i] += h;
                let up = objective.pair_loss(&c, &r, margins, centring).loss;
                let v = if side == 0 { &mut c } else { &mut r };
                v[i] -= 2.0 * h;
                let down = objective.pair_loss(&c, &r, margins, centring).loss;
                let numeric = (up - down) / (2.0 * h);
                assert!(
                    (grad[i] - numeric).abs() < 1e-7,
                    "{objective:?} grad[{side}][{i}] {} vs {numeric}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn losses_match_hand_computed_values() {
        use Objective::*;
        // Δ = 0: −log σ(0) = ln 2.
        check(Bt, &[1.0], &[1.0], &[], 0.0, LN2);
        // Δ = 1: −log σ(1) = ln(1 + e⁻¹) = 0.31326168751822286.
        check(Bt, &[2.0], &[1.0], &[], 0.0, 0.313_261_687_518_222_86);
        // Δ = −1: ln(1 + e) = 1.3132616875182228; the mean of the two pairs.
        check(
            Bt,
            &[2.0, 0.0],
            &[1.0, 1.0],
            &[],
            0.0,
            (0.313_261_687_518_222_86 + 1.313_261_687_518_222_8) / 2.0,
        );
        check(
            LogExp,
            &[2.0, 0.0],
            &[1.0, 1.0],
            &[],
            0.0,
            (0.313_261_687_518_222_86 + 1.313_261_687_518_222_8) / 2.0,
        );
        // Margin 1 on Δ = 1 gives Δ − m = 0: ln 2.
        check(BtMargin, &[2.0], &[1.0], &[1.0], 0.0, LN2);
        // Margin 2 on Δ = 1: −log σ(−1) = 1.3132616875182228.
        check(
            BtMargin,
            &[2.0],
            &[1.0],
            &[2.0],
            0.0,
            1.313_261_687_518_222_8,
        );
        // Scaled: 3 · ln 2 at Δ = 0; magnitude 1 is plain BT.
        check(ScaledBt, &[0.5], &[0.5], &[3.0], 0.0, 3.0 * LN2);
        check(
            ScaledBt,
            &[2.0],
            &[1.0],
            &[1.0],
            0.0,
            0.313_261_687_518_222_86,
        );
        // Label smoothing α = 0.1 at Δ = 1: 0.9·0.31326… + 0.1·1.31326… = 0.41326168751822286.
        check(
            LabelSmoothing { alpha: 0.1 },
            &[2.0],
            &[1.0],
            &[],
            0.0,
            0.413_261_687_518_222_86,
        );
        check(
            LabelSmoothing { alpha: 0.0 },
            &[2.0],
            &[1.0],
            &[],
            0.0,
            0.313_261_687_518_222_86,
        );
        // α = 0.25 at Δ = 0: ln 2 whatever α.
        check(
            LabelSmoothing { alpha: 0.25 },
            &[0.0],
            &[0.0],
            &[],
            0.0,
            LN2,
        );
        // Centring 0.01 with r_c = 2, r_r = 1: ln(1+e⁻¹) + 0.01·9 = 0.40326168751822286.
        check(Bt, &[2.0], &[1.0], &[], 0.01, 0.403_261_687_518_222_86);
        // Centring is zero for rewards summing to zero: only the BT term remains.
        check(Bt, &[0.5], &[-0.5], &[], 0.5, 0.313_261_687_518_222_86);
        // Extreme differences stay finite: −log σ(−800) = 800.
        check(Bt, &[-400.0], &[400.0], &[], 0.0, 800.0);
        check(Bt, &[400.0], &[-400.0], &[], 0.0, 0.0);
    }

    #[test]
    fn accuracy_counts_ties_as_wrong() {
        let loss = Objective::Bt.pair_loss(&[1.0, 1.0, 0.0], &[0.0, 1.0, 2.0], &[], 0.0);
        assert_eq!(loss.correct, 1);
    }

    #[test]
    fn scaled_gradient_grows_with_the_magnitude() {
        let one = Objective::ScaledBt.pair_loss(&[0.3], &[0.1], &[1.0], 0.0);
        let three = Objective::ScaledBt.pair_loss(&[0.3], &[0.1], &[3.0], 0.0);
        assert!((three.grad_chosen[0] - 3.0 * one.grad_chosen[0]).abs() < 1e-15);
    }

    #[test]
    fn regression_is_mean_squared_error() {
        let (loss, grad) = Objective::regression_loss(&[1.0, 3.0], &[0.0, 1.0]);
        assert_eq!(loss, 2.5);
        assert_eq!(grad, vec![1.0, 2.0]);
    }

    #[test]
    fn names_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Objective::from_name("scaled-bt", None).unwrap(),
            Objective::ScaledBt
        );
        assert_eq!(
            Objective::from_name("label-smoothing", Some(0.2)).unwrap(),
            Objective::LabelSmoothing { alpha: 0.2 }
        );
        assert!(Objective::from_name("label-smoothing", Some(0.7))
            .unwrap_err()
            .to_string()
            .contains("[0, 0.5)"));
        assert!(Objective::from_name("bt", Some(0.1)).is_err());
        assert!(Objective::from_name("hinge", None)
            .unwrap_err()
            .to_string()
            .contains("unknown objective `hinge`"));
    }
}
