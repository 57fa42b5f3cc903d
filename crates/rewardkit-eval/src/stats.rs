//! Statistics: a seeded generator, percentile intervals, McNemar's test, correlations.
//!
//! Everything here is deterministic given its inputs and seed, so a report can be reproduced
//! bit for bit: the generator is SplitMix64 (Steele, Lea & Flood 2014), written out here rather
//! than taken from a crate whose stream might change between versions.

use serde::Serialize;

/// SplitMix64: a small, fast, well-mixed 64-bit generator; fully determined by its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias (rejection sampling).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0) has no values; this is a bug");
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted values with linear interpolation between order
/// statistics (NumPy's default `linear` method); NaN for no values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let position = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let below = position.floor() as usize;
            let above = (below + 1).min(n - 1);
            let fraction = position - below as f64;
            sorted[below] + (sorted[above] - sorted[below]) * fraction
        }
    }
}

/// A confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// The percentile bootstrap interval of replicates at the given confidence (e.g. 0.95 takes the
/// 2.5% and 97.5% quantiles; Efron & Tibshirani 1993, §13.3). Non-finite replicates are ignored.
pub fn percentile_interval(replicates: &[f64], confidence: f64) -> Interval {
    let mut sorted: Vec<f64> = replicates
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Interval {
        low: quantile_sorted(&sorted, tail),
        high: quantile_sorted(&sorted, 1.0 - tail),
    }
}

/// Two-sided bootstrap p-value for "the difference is zero": twice the smaller share of
/// replicates on either side of zero (ties at zero count half to each side), at most 1.
pub fn bootstrap_p_value(differences: &[f64]) -> f64 {
    let finite: Vec<f64> = differences
        .iter()
        .copied()
        .filter(|d| d.is_finite())
        .collect();
    if finite.is_empty() {
        return f64::NAN;
    }
    let n = finite.len() as f64;
    let zero = finite.iter().filter(|&&d| d == 0.0).count() as f64;
    let below = finite.iter().filter(|&&d| d < 0.0).count() as f64 + zero / 2.0;
    let above = finite.iter().filter(|&&d| d > 0.0).count() as f64 + zero / 2.0;
    (2.0 * below.min(above) / n).min(1.0)
}

/// McNemar's test on the discordant counts of a paired binary comparison.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct McNemar {
    /// Items the first reward gets right and the second wrong.
    pub first_only: u64,
    /// Items the second reward gets right and the first wrong.
    pub second_only: u64,
    /// Items both get right.
    pub both: u64,
    /// Items both get wrong.
    pub neither: u64,
    /// Exact two-sided p-value: binomial test of `first_only` out of the discordant pairs at
    /// p = 1/2 (McNemar 1947; the exact form as in statsmodels' `mcnemar(exact=True)`).
    pub p_exact: f64,
    /// Chi-square statistic with Edwards' continuity correction, `(|b − c| − 1)² / (b + c)`.
    pub chi_square: f64,
    /// Its p-value (chi-square with 1 degree of freedom).
    pub p_chi_square: f64,
}

impl McNemar {
    /// The test from the four cell counts.
    pub fn new(first_only: u64, second_only: u64, both: u64, neither: u64) -> McNemar {
        let discordant = first_only + second_only;
        let (p_exact, chi_square, p_chi_square) = if discordant == 0 {
            (1.0, 0.0, 1.0)
        } else {
            let smaller = first_only.min(second_only);
            let p_exact = (2.0 * binomial_cdf_half(smaller, discordant)).min(1.0);
            let gap = (first_only as f64 - second_only as f64).abs() - 1.0;
            let chi = gap.max(0.0).powi(2) / discordant as f64;
            (p_exact, chi, chi_square_1_sf(chi))
        };
        McNemar {
            first_only,
            second_only,
            both,
            neither,
            p_exact,
            chi_square,
            p_chi_square,
        }
    }
}

/// `P(X ≤ k)` for `X ~ Binomial(n, 1/2)`, summed in log space so large `n` does not underflow.
pub fn binomial_cdf_half(k: u64, n: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    // log C(n, j) by the recurrence C(n, j) = C(n, j − 1) (n − j + 1) / j.
    let mut log_choose = 0.0f64;
    let mut terms = Vec::with_capacity(k as usize + 1);
    for j in 0..=k {
        if j > 0 {
            log_choose += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        terms.push(log_choose - ln_half_n);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

/// Survival function of the chi-square distribution with one degree of freedom:
/// `P(X > x) = erfc(sqrt(x / 2))`.
pub fn chi_square_1_sf(x: f64) -> f64 {
    if x <= 0.0 {
        1.0
    } else {
        erfc((x / 2.0).sqrt())
    }
}

/// The complementary error function, by the Chebyshev fit of Numerical Recipes (3rd ed., §6.2,
/// `erfccheb`-style `erfc` with fractional error below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The logistic sigmoid, computed without overflow for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Pearson's correlation; NaN when either side is constant or there are fewer than 2 points.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return f64::NAN;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks with ties sharing their average rank (1-based), as Spearman's correlation needs.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rank correlation (Pearson's on average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Mean, standard deviation (sample), minimum, quartiles and maximum of some values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// First quartile.
    pub q25: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q75: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// Summarises finite values (non-finite ones are skipped); all NaN for none.
    pub fn of(values: &[f64]) -> Summary {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            sorted.iter().sum::<f64>() / n as f64
        };
        let std = match n {
            0 => f64::NAN,
            1 => 0.0,
            _ => (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt(),
        };
        Summary {
            count: n,
            mean,
            std,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            q25: quantile_sorted(&sorted, 0.25),
            median: quantile_sorted(&sorted, 0.5),
            q75: quantile_sorted(&sorted, 0.75),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn the_generator_is_seeded_and_uniform_enough() {
        // Reference values of SplitMix64 from seed 1234567 (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        let mut counts = [0usize; 4];
        let mut rng = SplitMix64::new(7);
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        for count in counts {
            assert!((9_500..10_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0, .25, .5, .975, 1]) = 1, 1.75, 2.5, 3.925, 4
        for (q, expected) in [
            (0.0, 1.0),
            (0.25, 1.75),
            (0.5, 2.5),
            (0.975, 3.925),
            (1.0, 4.0),
        ] {
            assert!(close(quantile_sorted(&sorted, q), expected, 1e-12), "{q}");
        }
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn mcnemar_matches_hand_computation() {
        // b = 10, c = 2: exact p = 2 * P(X <= 2 | n = 12) = 2 * 79 / 4096 = 0.03857421875.
        let m = McNemar::new(10, 2, 50, 5);
        assert!(close(m.p_exact, 158.0 / 4096.0, 1e-12), "{}", m.p_exact);
        // chi2 = (|10 - 2| - 1)^2 / 12 = 49 / 12; p = erfc(sqrt(49/24)) = 0.043308142...
        assert!(close(m.chi_square, 49.0 / 12.0, 1e-12));
        assert!(
            close(m.p_chi_square, 0.043_308_142, 1e-6),
            "{}",
            m.p_chi_square
        );
        let none = McNemar::new(0, 0, 3, 1);
        assert_eq!((none.p_exact, none.p_chi_square), (1.0, 1.0));
        // Symmetric and capped at 1.
        assert_eq!(McNemar::new(3, 3, 0, 0).p_exact, 1.0);
        // Large n does not underflow: b = 600, c = 400, exact p ≈ 2.6e-10.
        let big = McNemar::new(600, 400, 0, 0);
        assert!(big.p_exact > 1e-11 && big.p_exact < 1e-9, "{}", big.p_exact);
    }

    #[test]
    fn erfc_and_sigmoid_values() {
        for (x, expected) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (-1.0, 1.842_700_793),
        ] {
            assert!(close(erfc(x), expected, 2e-7), "erfc({x}) = {}", erfc(x));
        }
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(close(sigmoid(1.0), 0.731_058_578_6, 1e-9));
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) <= 1.0);
    }

    #[test]
    fn correlations() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(pearson(&x, &[2.0, 4.0, 6.0, 8.0, 10.0]), 1.0, 1e-12));
        assert!(close(
            spearman(&x, &[1.0, 4.0, 9.0, 16.0, 100.0]),
            1.0,
            1e-12
        ));
        assert!(pearson(&x, &[1.0; 5]).is_nan());
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0]),
            [1.5, 3.0, 1.5, 4.0]
        );
        // scipy.stats.spearmanr([1,2,3,4],[1,3,2,4]).correlation = 0.8
        assert!(close(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]),
            0.8,
            1e-12
        ));
    }

    #[test]
    fn intervals_and_p_values() {
        let replicates: Vec<f64> = (0..=100).map(f64::from).collect();
        let ci = percentile_interval(&replicates, 0.9);
        assert!(
            close(ci.low, 5.0, 1e-12) && close(ci.high, 95.0, 1e-12),
            "{ci:?}"
        );
        assert_eq!(bootstrap_p_value(&[1.0, 2.0, 3.0, -1.0]), 0.5);
        assert_eq!(bootstrap_p_value(&[0.0, 0.0]), 1.0);
        let s = Summary::of(&[1.0, 2.0, 3.0, f64::NAN]);
        assert_eq!((s.count, s.mean, s.median, s.std), (3, 2.0, 2.0, 1.0));
    }
}
