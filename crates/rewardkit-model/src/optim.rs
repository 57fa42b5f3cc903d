//! AdamW, learning-rate schedules and gradient clipping on plain `f32` buffers.
//!
//! The optimizer keeps its moments as `Vec<f32>` (not tensors) so that a checkpoint can store
//! them bit for bit and a resumed run continues exactly; the update is one fused loop per
//! parameter instead of the dozen tensor operations (each a full pass with an allocation) that a
//! tensor-level AdamW costs.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// AdamW hyper-parameters (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR
/// 2019, Algorithm 2; the same update as `torch.optim.AdamW`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// ε added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay λ (applied to matrices, not to biases).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ModelError::option(
                "lr",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(ModelError::option(
                    name,
                    format!("must be in [0, 1), got {beta}"),
                ));
            }
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return Err(ModelError::option("eps", "must be positive"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(ModelError::option(
                "weight-decay",
                "must be a non-negative number",
            ));
        }
        Ok(())
    }
}

/// The moments of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// First moment m.
    pub m: Vec<f32>,
    /// Second moment v.
    pub v: Vec<f32>,
}

/// AdamW state: step count and one pair of moments per parameter, in parameter order.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// Updates applied so far.
    pub step: u64,
    /// Moments, aligned with the parameters.
    pub moments: Vec<Moments>,
}

impl AdamW {
    /// Zero moments for parameters of the given sizes.
    pub fn new(config: AdamWConfig, sizes: &[usize]) -> AdamW {
        AdamW {
            config,
            step: 0,
            moments: sizes
                .iter()
                .map(|&n| Moments {
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                })
                .collect(),
        }
    }

    /// One update of every parameter with learning rate `lr` (the schedule's value for this
    /// step); `decay[i]` says whether parameter `i` gets weight decay.
    pub fn update(&mut self, lr: f64, params: &mut [Vec<f32>], grads: &[Vec<f32>], decay: &[bool]) {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let step_size = (lr / bias1) as f32;
        let inv_sqrt_bias2 = (1.0 / bias2.sqrt()) as f32;
        let eps = c.eps as f32;
        // Every element's update is independent of the others, so the parameters are cut into
        // fixed chunks and the chunks spread over the threads: the result does not depend on the
        // split.
        let mut chunks = Vec::new();
        for (i, ((param, grad), moments)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.moments.iter_mut())
            .enumerate()
        {
            let shrink = if decay[i] {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            };
            for (((p, g), m), v) in param
                .chunks_mut(CHUNK)
                .zip(grad.chunks(CHUNK))
                .zip(moments.m.chunks_mut(CHUNK))
                .zip(moments.v.chunks_mut(CHUNK))
            {
                chunks.push((p, g, m, v, shrink));
            }
        }
        let update =
            |(param, grad, m, v, shrink): (&mut [f32], &[f32], &mut [f32], &mut [f32], f32)| {
                for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
                    *p *= shrink;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    let denom = v.sqrt() * inv_sqrt_bias2 + eps;
                    *p -= step_size * *m / denom;
                }
            };
        if chunks.len() > 1 && rayon::current_num_threads() > 1 {
            chunks.into_par_iter().for_each(update);
        } else {
            chunks.into_iter().for_each(update);
        }
    }
}

/// Elements per unit of parallel work in the optimizer and in clipping.
const CHUNK: usize = 1 << 16;

/// How the learning rate moves after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Constant at the peak.
    Constant,
    /// Linear from the peak to zero at the last step.
    Linear,
    /// Half a cosine from the peak to zero at the last step.
    Cosine,
}

/// Warm-up then decay: the rate rises linearly over `warmup` steps, then follows `decay` to zero
/// at `total` steps (the `get_linear_schedule_with_warmup` / `get_cosine_schedule_with_warmup`
/// shapes of `transformers`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total optimizer steps.
    pub total: usize,
    /// Shape after warm-up.
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate for 0-based optimizer step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        match self.decay {
            Decay::Constant => self.peak,
            Decay::Linear => self.peak * (1.0 - progress),
            Decay::Cosine => self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    // Sums of squares in f64 per fixed chunk (on several threads), then the chunks' sums in
    // order: the same number whatever the thread count.
    let chunks: Vec<&[f32]> = grads.iter().flat_map(|g| g.chunks(CHUNK)).collect();
    let square_sum = |chunk: &&[f32]| chunk.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
    let sums: Vec<f64> = if chunks.len() > 1 && rayon::current_num_threads() > 1 {
        chunks.par_iter().map(square_sum).collect()
    } else {
        chunks.iter().map(square_sum).collect()
    };
    let norm = sums.iter().sum::<f64>().sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = (max_norm / (norm + 1e-6)) as f32;
        let mut chunks: Vec<&mut [f32]> =
            grads.iter_mut().flat_map(|g| g.chunks_mut(CHUNK)).collect();
        let shrink = |chunk: &mut &mut [f32]| chunk.iter_mut().for_each(|x| *x *= scale);
        if chunks.len() > 1 && rayon::current_num_threads() > 1 {
            chunks.par_iter_mut().for_each(shrink);
        } else {
            chunks.iter_mut().for_each(shrink);
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_adamw_step_moves_by_the_learning_rate() {
        // At step 1 the bias-corrected m̂/√v̂ is sign(g), so each weight moves by lr (after a
        // decay of lr·λ·θ): θ = 1 − 0.1·0.5·1 − 0.1 = 0.85 and −1 + 0.05 + 0.1 = −0.85.
        let config = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            eps: 0.0,
            ..AdamWConfig::default()
        };
        let mut adam = AdamW::new(config, &[2, 1]);
        let mut params = vec![vec![1.0f32, -1.0], vec![2.0]];
        adam.update(
            0.1,
            &mut params,
            &[vec![3.0, -0.5], vec![1.0]],
            &[true, false],
        );
        assert!((params[0][0] - 0.85).abs() < 1e-6, "{:?}", params);
        assert!((params[0][1] + 0.85).abs() < 1e-6, "{:?}", params);
        assert!(
            (params[1][0] - 1.9).abs() < 1e-6,
            "no decay on the bias: {:?}",
            params
        );
    }

    #[test]
    fn second_adamw_step_matches_the_formula() {
        // g₁ = 1, g₂ = −1, lr 0.01, no decay: m₂ = 0.9·0.1 − 0.1 = −0.01, v₂ = 0.999·0.001 +
        // 0.001 = 0.001999; m̂ = −0.01/0.19, v̂ = 0.001999/0.001999 = 1 → step = −0.0526316.
        let config = AdamWConfig {
            lr: 0.01,
            weight_decay: 0.0,
            eps: 0.0,
            ..AdamWConfig::default()
        };
        let mut adam = AdamW::new(config, &[1]);
        let mut params = vec![vec![0.0f32]];
        adam.update(0.01, &mut params, &[vec![1.0]], &[true]);
        adam.update(0.01, &mut params, &[vec![-1.0]], &[true]);
        let expected = -0.01 + 0.01 * (0.01 / 0.19) / 1.0;
        assert!(
            (params[0][0] as f64 - expected).abs() < 1e-7,
            "{} vs {expected}",
            params[0][0]
        );
    }

    #[test]
    fn schedules() {
        let check = |decay, step, lr: f64| {
            let s = Schedule {
                peak: 1.0,
                warmup: 2,
                total: 6,
                decay,
            };
            assert!(
                (s.lr(step) - lr).abs() < 1e-12,
                "{decay:?} step {step}: {} != {lr}",
                s.lr(step)
            );
        };
        check(Decay::Linear, 0, 0.5);
        check(Decay::Linear, 1, 1.0);
        check(Decay::Linear, 2, 1.0);
        check(Decay::Linear, 3, 0.75);
        check(Decay::Linear, 5, 0.25);
        check(Decay::Linear, 6, 0.0);
        check(Decay::Cosine, 2, 1.0);
        check(Decay::Cosine, 4, 0.5);
        check(Decay::Cosine, 6, 0.0);
        check(Decay::Constant, 5, 1.0);
        check(Decay::Constant, 0, 0.5);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut grads = vec![vec![3.0f32], vec![4.0]];
        assert_eq!(clip_grad_norm(&mut grads, 1.0), 5.0);
        assert!((grads[0][0] - 0.6).abs() < 1e-5 && (grads[1][0] - 0.8).abs() < 1e-5);
        let mut small = vec![vec![0.3f32]];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small[0][0], 0.3);
    }
}
