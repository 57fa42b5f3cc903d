//! Transforms of one reward column: normalisations, clips, PAR and log-sigmoid centring.
//!
//! Every transform maps a non-finite input to NaN (a masked sample stays masked) and never turns
//! a finite input into NaN.

use rewardkit_core::RunningStats;

use crate::error::check_finite_at_least;
use crate::running::running_std;
use crate::stats::{quantile, Centre};
use crate::{Groups, ShapeError, StdKind};

/// The logistic sigmoid `σ(x) = 1/(1 + e^{−x})`, evaluated without overflow for any `x`.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log σ(x) = min(x, 0) − ln(1 + e^{−|x|})`: exact for large `|x|` (≈ `x` far below 0, ≈ `−e^{−x}`
/// far above), never overflowing, and never above 0.
pub fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// Which samples a normalisation pools its statistics over.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// All samples of the batch.
    Batch,
    /// Each group on its own.
    Groups(&'a Groups),
}

fn pools<'a>(len: usize, scope: Scope<'a>, single: &'a Groups) -> Vec<&'a [usize]> {
    match scope {
        Scope::Batch => {
            debug_assert_eq!(single.len(), len);
            single.iter().collect()
        }
        Scope::Groups(groups) => groups.iter().collect(),
    }
}

fn check_scope(values: usize, scope: Scope<'_>) -> Result<(), ShapeError> {
    match scope {
        Scope::Batch => Ok(()),
        Scope::Groups(groups) => groups.check("values", values),
    }
}

/// Mean/std normalisation `(x − mean)/(std + ε)` over the batch or per group (the "Meanstd"
/// baseline of PAR, Fu et al. 2025 §5; the per-group form is GRPO's). A pool with fewer than two
/// finite values, or with all values equal, maps its finite values to 0.
pub fn normalize(
    values: &[f64],
    scope: Scope<'_>,
    std: StdKind,
    epsilon: f64,
) -> Result<Vec<f64>, ShapeError> {
    check_scope(values.len(), scope)?;
    check_finite_at_least("epsilon", epsilon, 0.0, "a finite number ≥ 0")?;
    let single = Groups::single(values.len());
    let mut out = vec![f64::NAN; values.len()];
    for members in pools(values.len(), scope, &single) {
        let centre = Centre::of_indices(values, members);
        let divisor = centre.std(std).map(|s| s + epsilon);
        for &i in members.iter().filter(|&&i| values[i].is_finite()) {
            out[i] = match divisor {
                Some(d) if centre.count >= 2 && !centre.constant && d > 0.0 => {
                    centre.centred(values[i]) / d
                }
                _ => 0.0,
            };
        }
    }
    Ok(out)
}

/// Running mean/std normalisation (PAR's "Meanstd" with running statistics): the batch's finite
/// values are first added to `stats`, then each value becomes `(x − μ_run)/(σ_run + ε)`. Adding
/// before normalising is a choice **\[recon\]** (PAR's `reward_shaper.py` order is not confirmed);
/// it makes the first batch well defined. While fewer than two values have been seen, or σ_run is
/// 0, finite values map to 0.
pub fn normalize_running(
    values: &[f64],
    stats: &mut RunningStats,
    std: StdKind,
    epsilon: f64,
) -> Result<Vec<f64>, ShapeError> {
    check_finite_at_least("epsilon", epsilon, 0.0, "a finite number ≥ 0")?;
    values.iter().for_each(|&x| stats.push(x));
    let (mean, sd) = running_mean_std(stats, std);
    Ok(values
        .iter()
        .map(|&x| match (x.is_finite(), mean, sd) {
            (false, _, _) => f64::NAN,
            (true, Some(m), Some(s)) if s > 0.0 => (x - m) / (s + epsilon),
            _ => 0.0,
        })
        .collect())
}

fn running_mean_std(stats: &RunningStats, std: StdKind) -> (Option<f64>, Option<f64>) {
    (stats.mean(), running_std(stats, std))
}

/// Clips to `[low, high]`.
pub fn clip(values: &[f64], low: f64, high: f64) -> Result<Vec<f64>, ShapeError> {
    if low.is_nan() || high.is_nan() || low > high {
        return Err(ShapeError::invalid(
            "clip",
            format!("[{low}, {high}]"),
            "low ≤ high, neither NaN",
        ));
    }
    Ok(values
        .iter()
        .map(|&x| {
            if x.is_finite() {
                x.clamp(low, high)
            } else {
                f64::NAN
            }
        })
        .collect())
}

/// PAR's "Clip" baseline: `clip(x, μ_run − σ_run, μ_run + σ_run)` with running statistics that
/// include the batch (as in [`normalize_running`]). Before two values have been seen, values pass
/// through.
pub fn clip_running(values: &[f64], stats: &mut RunningStats, std: StdKind) -> Vec<f64> {
    values.iter().for_each(|&x| stats.push(x));
    let (mean, sd) = running_mean_std(stats, std);
    values
        .iter()
        .map(|&x| match (x.is_finite(), mean, sd) {
            (false, _, _) => f64::NAN,
            (true, Some(m), Some(s)) => x.clamp(m - s, m + s),
            _ => x,
        })
        .collect()
}

/// PAR's "Ceil" baseline: `min(x, ceiling)`.
pub fn ceiling(values: &[f64], ceiling: f64) -> Result<Vec<f64>, ShapeError> {
    if ceiling.is_nan() {
        return Err(ShapeError::invalid("ceiling", ceiling, "a number"));
    }
    Ok(values
        .iter()
        .map(|&x| {
            if x.is_finite() {
                x.min(ceiling)
            } else {
                f64::NAN
            }
        })
        .collect())
}

/// Min-max scaling `(x − min)/(max − min)` over the batch or per group; a pool whose finite values
/// are all equal maps them to 0.
pub fn min_max(values: &[f64], scope: Scope<'_>) -> Result<Vec<f64>, ShapeError> {
    check_scope(values.len(), scope)?;
    let single = Groups::single(values.len());
    let mut out = vec![f64::NAN; values.len()];
    for members in pools(values.len(), scope, &single) {
        let finite = || members.iter().map(|&i| values[i]).filter(|x| x.is_finite());
        let low = finite().fold(f64::INFINITY, f64::min);
        let high = finite().fold(f64::NEG_INFINITY, f64::max);
        for &i in members.iter().filter(|&&i| values[i].is_finite()) {
            out[i] = if high > low {
                (values[i] - low) / (high - low)
            } else {
                0.0
            };
        }
    }
    Ok(out)
}

/// PAR's "Minmax" baseline with running minimum and maximum (including the batch).
pub fn min_max_running(values: &[f64], stats: &mut RunningStats) -> Vec<f64> {
    values.iter().for_each(|&x| stats.push(x));
    values
        .iter()
        .map(|&x| match (x.is_finite(), stats.min().zip(stats.max())) {
            (false, _) => f64::NAN,
            (true, Some((low, high))) if high > low => (x - low) / (high - low),
            _ => 0.0,
        })
        .collect()
}

/// Preference As Reward (Fu et al. 2025, eq. 4; PorUna-byte/PAR `reward_shaper.py`):
/// `r_RL = (1/M) Σ_m σ(k·(r − r_ref,m))` over the finite reference rewards.
///
/// Mathematically in (0, 1) and exactly 0.5 when `r` equals every reference; in `f64` it reaches
/// 1.0 once `k·(r − r_ref)` exceeds about 37 (σ rounds to 1). NaN when `r` or every reference is
/// non-finite.
pub fn par(reward: f64, references: &[f64], k: f64) -> f64 {
    if !reward.is_finite() {
        return f64::NAN;
    }
    let mut sum = 0.0;
    let mut count = 0usize;
    for &reference in references.iter().filter(|x| x.is_finite()) {
        sum += sigmoid(k * (reward - reference));
        count += 1;
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// [`par`] for a batch: `references` holds `m` reference rewards per sample, sample after sample.
pub fn par_batch(
    rewards: &[f64],
    references: &[f64],
    m: usize,
    k: f64,
) -> Result<Vec<f64>, ShapeError> {
    check_par(m, k)?;
    ShapeError::check_len(
        "references",
        references.len(),
        rewards.len() * m,
        "reference of each sample (m per sample)",
    )?;
    Ok(rewards
        .iter()
        .zip(references.chunks(m))
        .map(|(&r, refs)| par(r, refs, k))
        .collect())
}

fn check_par(m: usize, k: f64) -> Result<(), ShapeError> {
    if m == 0 {
        return Err(ShapeError::invalid(
            "m",
            m,
            "at least 1 reference per sample",
        ));
    }
    if !(k.is_finite() && k > 0.0) {
        return Err(ShapeError::invalid("k", k, "a finite slope > 0"));
    }
    Ok(())
}

/// Log-sigmoid centring (Wang et al. 2024, "Transforming and Combining Rewards", eq. 5):
/// `u = log σ(r − r_ref)`, always ≤ 0, increasing in `r`, with `du/dr = σ(r_ref − r)`. NaN if
/// either input is non-finite.
pub fn log_sigmoid_centred(reward: f64, reference: f64) -> f64 {
    if reward.is_finite() && reference.is_finite() {
        log_sigmoid(reward - reference)
    } else {
        f64::NAN
    }
}

/// MM-RLHF dynamic reward scaling (Zhang et al. 2025, MM-DPO; Kwai-YuanQi/MM-RLHF
/// `dpo_trainer.py`): `β(δ) = β_ori·(1 + w·(1 − e^{−k·δ}))` for a reward margin `δ`, clamped below
/// at 1e-3 as the authors' code does. `β(0) = β_ori` and `β → β_ori·(1 + w)` as `δ → ∞`. The
/// authors' `k` is not published **\[recon\]**; it is a parameter here. NaN for a non-finite margin.
pub fn dynamic_beta(margin: f64, beta: f64, w: f64, k: f64) -> f64 {
    if !margin.is_finite() {
        return f64::NAN;
    }
    // 1 − e^{−kδ} as −expm1(−kδ): exact for small margins.
    (beta * (1.0 + w * -(-k * margin).exp_m1())).max(1e-3)
}

/// Self-Aligned Reward (Han et al. 2025; amazon-science `efficiency_reward.py`):
/// `R_SA = clip((ppl(a) − ppl(a|q)) / ppl(a), −1, 1)` with `ppl = exp(−mean token log-prob)`, from
/// the answer's token log-probabilities without and with the query. Positive when the query makes the answer more likely. Computed as
/// `1 − ppl(a|q)/ppl(a) = −expm1(mean(a) − mean(a|q))` (means of log-probs), which needs no
/// perplexity and keeps its precision for small differences. NaN when a list is empty or holds a
/// non-finite log-prob.
pub fn self_aligned_reward(logprobs_answer: &[f64], logprobs_answer_given_query: &[f64]) -> f64 {
    let mean = |xs: &[f64]| {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            None
        } else {
            Some(xs.iter().sum::<f64>() / xs.len() as f64)
        }
    };
    match (mean(logprobs_answer), mean(logprobs_answer_given_query)) {
        // ppl(a|q)/ppl(a) = exp(−m_q + m_a); 1 − that = −expm1(m_a − m_q).
        (Some(alone), Some(given)) => (-(alone - given).exp_m1()).clamp(-1.0, 1.0),
        _ => f64::NAN,
    }
}

/// ONI's count-decayed intrinsic reward (Zheng et al. 2024; facebookresearch/oni `learner.py`):
/// `r = α_ext·r_ext + α_int·r_int / N^β`, with `N ≥ 1` the number of times the message was seen
/// (README: `α_int = 0.4`, `β = 3`). NaN for non-finite rewards or `N = 0`.
pub fn count_decayed(
    r_ext: f64,
    r_int: f64,
    count: u64,
    alpha_ext: f64,
    alpha_int: f64,
    beta: f64,
) -> f64 {
    if !(r_ext.is_finite() && r_int.is_finite()) || count == 0 {
        return f64::NAN;
    }
    alpha_ext * r_ext + alpha_int * r_int / (count as f64).powf(beta)
}

/// Coefficients of Wichura's AS241 (PPND16) rational approximations, highest degree first.
#[allow(clippy::excessive_precision)]
mod as241 {
    pub const CENTRAL_NUM: [f64; 8] = [
        2.50908_09287_30122_6727e+3,
        3.34305_75583_58812_8105e+4,
        6.72657_70927_00870_0853e+4,
        4.59219_53931_54987_1457e+4,
        1.37316_93765_50946_1125e+4,
        1.97159_09503_06551_4427e+3,
        1.33141_66789_17843_7745e+2,
        3.38713_28727_96366_6080e+0,
    ];
    pub const CENTRAL_DEN: [f64; 8] = [
        5.22649_52788_52854_5610e+3,
        2.87290_85735_72194_2674e+4,
        3.93078_95800_09271_0610e+4,
        2.12137_94301_58659_5867e+4,
        5.39419_60214_24751_1077e+3,
        6.87187_00749_20579_0830e+2,
        4.23133_30701_60091_1252e+1,
        1.0,
    ];
    pub const INTERMEDIATE_NUM: [f64; 8] = [
        7.74545_01427_83414_07640e-4,
        2.27238_44989_26918_45833e-2,
        2.41780_72517_74506_11770e-1,
        1.27045_82524_52368_38258e+0,
        3.64784_83247_63204_60504e+0,
        5.76949_72214_60691_40550e+0,
        4.63033_78461_56545_29590e+0,
        1.42343_71107_49683_57734e+0,
    ];
    pub const INTERMEDIATE_DEN: [f64; 8] = [
        1.05075_00716_44416_84324e-9,
        5.47593_80849_95344_94600e-4,
        1.51986_66563_61645_71966e-2,
        1.48103_97642_74800_74590e-1,
        6.89767_33498_51000_04550e-1,
        1.67638_48301_83803_84940e+0,
        2.05319_16266_37758_82187e+0,
        1.0,
    ];
    pub const TAIL_NUM: [f64; 8] = [
        2.01033_43992_92288_13265e-7,
        2.71155_55687_43487_57815e-5,
        1.24266_09473_88078_43860e-3,
        2.65321_89526_57612_30930e-2,
        2.96560_57182_85048_91230e-1,
        1.78482_65399_17291_33580e+0,
        5.46378_49111_64114_36990e+0,
        6.65790_46435_01103_77720e+0,
    ];
    pub const TAIL_DEN: [f64; 8] = [
        2.04426_31033_89939_78564e-15,
        1.42151_17583_16445_88870e-7,
        1.84631_83175_10054_68180e-5,
        7.86869_13114_56132_59100e-4,
        1.48753_61290_85061_48525e-2,
        1.36929_88092_27358_05310e-1,
        5.99832_20655_58879_37690e-1,
        1.0,
    ];
}

fn horner(coefficients: &[f64; 8], r: f64) -> f64 {
    coefficients.iter().fold(0.0, |acc, &c| acc * r + c)
}

/// The standard normal quantile `Φ⁻¹(p)` for `p` in (0, 1), by Wichura's Algorithm AS241
/// (Applied Statistics 37(3), 1988; about 1e-16 relative accuracy), the algorithm behind Python's
/// `statistics.NormalDist.inv_cdf`. NaN outside (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * horner(&as241::CENTRAL_NUM, r) / horner(&as241::CENTRAL_DEN, r);
    }
    let r = if q <= 0.0 { p } else { 1.0 - p };
    let r = (-r.ln()).sqrt();
    let x = if r <= 5.0 {
        let r = r - 1.6;
        horner(&as241::INTERMEDIATE_NUM, r) / horner(&as241::INTERMEDIATE_DEN, r)
    } else {
        let r = r - 5.0;
        horner(&as241::TAIL_NUM, r) / horner(&as241::TAIL_DEN, r)
    };
    if q < 0.0 {
        -x
    } else {
        x
    }
}

/// How a per-prompt reference reward `r_ref(x)` is read off the rewards of reference samples
/// (base-policy completions of the same prompt).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "method", deny_unknown_fields)]
pub enum ReferenceQuantile {
    /// The empirical `q`-quantile (linear interpolation, NumPy's default). Wang et al. 2024 use "a
    /// high quantile of base-policy rewards"; q = 0.85 is the PAR reimplementation's choice
    /// **\[recon\]** for the original paper.
    Empirical {
        /// The quantile, in [0, 1].
        q: f64,
    },
    /// The `q`-quantile of a normal fitted to the reference rewards, `mean + std·Φ⁻¹(q)` with the
    /// population std: PAR's reimplementation of Wang et al. (PorUna-byte/PAR
    /// `reward_shaper.py`: `norm.ppf(0.85, mean(R_sft), std(R_sft))`, about 10 SFT samples per
    /// prompt). One reference gives its own value.
    Normal {
        /// The quantile, in the open interval (0, 1).
        q: f64,
    },
}

impl ReferenceQuantile {
    /// The reference reward from the finite rewards of the reference samples; `None` without any.
    pub fn reference(&self, reference_rewards: &[f64]) -> Result<Option<f64>, ShapeError> {
        match *self {
            ReferenceQuantile::Empirical { q } => {
                if !(0.0..=1.0).contains(&q) {
                    return Err(ShapeError::invalid("q", q, "a quantile in [0, 1]"));
                }
                Ok(quantile(reference_rewards, q))
            }
            ReferenceQuantile::Normal { q } => {
                if !(q > 0.0 && q < 1.0) {
                    return Err(ShapeError::invalid("q", q, "a quantile in (0, 1)"));
                }
                let centre = Centre::of(reference_rewards.iter().copied());
                Ok(centre.std(StdKind::Population).map(|std| {
                    if std > 0.0 {
                        centre.mean() + std * normal_quantile(q)
                    } else {
                        centre.mean()
                    }
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    fn same(got: &[f64], expected: &[f64]) {
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for (g, e) in got.iter().zip(expected) {
            let ok = (g.is_nan() && e.is_nan()) || (g - e).abs() <= 1e-12 * e.abs().max(1.0);
            assert!(ok, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn sigmoid_cases() {
        let check = |x: f64, s: f64, ls: f64| {
            assert!(
                (sigmoid(x) - s).abs() <= 1e-15 * s.max(1e-300),
                "σ({x}) = {}",
                sigmoid(x)
            );
            let got = log_sigmoid(x);
            assert!(
                (got - ls).abs() <= 1e-15 * ls.abs().max(1e-300),
                "logσ({x}) = {got}"
            );
        };
        check(0.0, 0.5, -std::f64::consts::LN_2);
        check(-800.0, 0.0, -800.0);
        check(800.0, 1.0, 0.0);
        check(-40.0, 4.248354255291589e-18, -40.0);
        check(40.0, 1.0, -4.248354255291589e-18);
        check(2.0, 0.8807970779778823, -0.1269280110429725);
    }

    #[test]
    fn normalize_cases() {
        let groups = Groups::from_sizes(&[2, 1, 3]);
        let v = [1.0, 3.0, 5.0, NAN, 2.0, 2.0];
        same(
            &normalize(&v, Scope::Groups(&groups), StdKind::Population, 0.0).unwrap(),
            &[-1.0, 1.0, 0.0, NAN, 0.0, 0.0],
        );
        same(
            &normalize(&[1.0, 3.0], Scope::Batch, StdKind::Sample, 0.0).unwrap(),
            &[-(0.5f64.sqrt()), 0.5f64.sqrt()],
        );
        same(
            &normalize(
                &[1e9 + 1.0, 1e9 + 3.0],
                Scope::Batch,
                StdKind::Population,
                0.0,
            )
            .unwrap(),
            &[-1.0, 1.0],
        );
        assert!(normalize(&v, Scope::Groups(&Groups::single(2)), StdKind::Sample, 0.0).is_err());
        let mut stats = RunningStats::new();
        same(
            &normalize_running(&[1.0], &mut stats, StdKind::Population, 0.0).unwrap(),
            &[0.0],
        );
        same(
            &normalize_running(&[3.0, NAN], &mut stats, StdKind::Population, 0.0).unwrap(),
            &[1.0, NAN],
        );
    }

    #[test]
    fn clip_ceiling_min_max_cases() {
        same(
            &clip(&[-2.0, 0.5, 7.0, NAN, f64::INFINITY], -1.0, 1.0).unwrap(),
            &[-1.0, 0.5, 1.0, NAN, NAN],
        );
        assert!(clip(&[1.0], 1.0, 0.0).is_err());
        same(&ceiling(&[3.0, 5.0, -1.0], 4.0).unwrap(), &[3.0, 4.0, -1.0]);
        same(
            &min_max(&[2.0, 4.0, 3.0, NAN], Scope::Batch).unwrap(),
            &[0.0, 1.0, 0.5, NAN],
        );
        same(&min_max(&[2.0, 2.0], Scope::Batch).unwrap(), &[0.0, 0.0]);
        let mut stats = RunningStats::new();
        same(
            &clip_running(&[0.0, 2.0], &mut stats, StdKind::Population),
            &[0.0, 2.0],
        );
        same(
            &clip_running(&[10.0], &mut stats, StdKind::Population),
            &[4.0 + (56.0f64 / 3.0).sqrt()],
        );
        let mut stats = RunningStats::new();
        same(&min_max_running(&[1.0, 3.0], &mut stats), &[0.0, 1.0]);
        same(&min_max_running(&[2.0, 5.0], &mut stats), &[0.25, 1.0]);
    }

    #[test]
    fn par_cases() {
        assert_eq!(par(1.0, &[1.0, 1.0], 1.0), 0.5);
        assert!((par(1.0, &[0.0, 2.0], 3.0) - 0.5).abs() < 1e-15);
        assert_eq!(par(1.0, &[NAN, 1.0], 2.0), 0.5);
        assert!(par(1.0, &[NAN], 2.0).is_nan());
        assert!(par(NAN, &[1.0], 2.0).is_nan());
        same(
            &par_batch(&[0.0, 2.0], &[0.0, 0.0, 0.0, 0.0], 2, 1.0).unwrap(),
            &[0.5, sigmoid(2.0)],
        );
        assert!(par_batch(&[0.0], &[0.0, 0.0], 3, 1.0).is_err());
        assert!(par_batch(&[0.0], &[], 0, 1.0).is_err());
        assert!(par_batch(&[0.0], &[0.0], 1, 0.0).is_err());
    }

    #[test]
    fn centring_and_reference_cases() {
        assert_eq!(log_sigmoid_centred(2.0, 2.0), -std::f64::consts::LN_2);
        assert!(log_sigmoid_centred(NAN, 2.0).is_nan());
        assert!(log_sigmoid_centred(1.0, f64::INFINITY).is_nan());
        let q = ReferenceQuantile::Empirical { q: 0.85 };
        assert_eq!(q.reference(&[0.0, 10.0]).unwrap(), Some(8.5));
        assert_eq!(q.reference(&[NAN]).unwrap(), None);
        assert!(ReferenceQuantile::Empirical { q: 1.5 }
            .reference(&[1.0])
            .is_err());
        let normal = ReferenceQuantile::Normal { q: 0.5 };
        assert_eq!(normal.reference(&[1.0, 3.0]).unwrap(), Some(2.0));
        assert_eq!(normal.reference(&[4.0]).unwrap(), Some(4.0));
        assert_eq!(normal.reference(&[]).unwrap(), None);
        assert!(ReferenceQuantile::Normal { q: 1.0 }
            .reference(&[1.0])
            .is_err());
        // mean 2, population std 1: 2 + Φ⁻¹(0.85).
        let r = ReferenceQuantile::Normal { q: 0.85 }
            .reference(&[1.0, 3.0])
            .unwrap()
            .unwrap();
        assert!((r - (2.0 + 1.0364333894937894)).abs() < 1e-15, "{r}");
    }

    #[test]
    fn literature_transforms() {
        // MM-RLHF: β(0) = β, → β(1 + w), monotone, clamped at 1e-3.
        assert_eq!(dynamic_beta(0.0, 0.1, 0.1, 1.0), 0.1);
        assert!((dynamic_beta(1e3, 0.1, 0.1, 1.0) - 0.11).abs() < 1e-15);
        assert!(dynamic_beta(1.0, 0.1, 0.1, 1.0) > dynamic_beta(0.5, 0.1, 0.1, 1.0));
        assert_eq!(dynamic_beta(0.0, 0.0, 0.1, 1.0), 1e-3);
        assert!(dynamic_beta(NAN, 0.1, 0.1, 1.0).is_nan());
        // SAR: the query halves the perplexity -> 0.5; raises it without bound -> clipped at -1.
        let half = 2f64.ln();
        assert!(
            (self_aligned_reward(&[-1.0, -1.0], &[-1.0 + half, -1.0 + half]) - 0.5).abs() < 1e-15
        );
        assert_eq!(self_aligned_reward(&[-1.0], &[-50.0]), -1.0);
        assert_eq!(self_aligned_reward(&[-2.0, -4.0], &[-3.0]), 0.0);
        assert!(self_aligned_reward(&[], &[-1.0]).is_nan());
        assert!(self_aligned_reward(&[-1.0], &[NAN]).is_nan());
        // ONI: count decay with β = 3.
        assert_eq!(count_decayed(1.0, 1.0, 2, 10.0, 0.4, 3.0), 10.0 + 0.4 / 8.0);
        assert_eq!(count_decayed(0.0, 1.0, 1, 0.1, 0.4, 3.0), 0.4);
        assert!(count_decayed(0.0, 1.0, 0, 0.1, 0.4, 3.0).is_nan());
    }

    #[test]
    fn normal_quantiles() {
        // Values from Python's statistics.NormalDist().inv_cdf.
        let check = |p: f64, z: f64| {
            let got = normal_quantile(p);
            assert!(
                (got - z).abs() <= 1e-15 * z.abs().max(1.0),
                "Φ⁻¹({p}) = {got}, expected {z}"
            );
        };
        check(0.5, 0.0);
        check(0.85, 1.0364333894937894);
        check(0.975, 1.9599639845400536);
        check(0.025, -1.9599639845400538);
        check(1e-10, -6.361340902404056);
        check(1e-300, -37.0470962993612);
        assert!(normal_quantile(0.0).is_nan() && normal_quantile(1.0).is_nan());
    }
}
