//! The advantage estimators of `rewardkit-shape` on decoded rewards, groups and options: never a
//! panic; a bad request is an `Err`; the output obeys the documented NaN rule; and the result is
//! the same to the bit whichever entry point, group layout and thread count computes it.
//!
//!     cargo +nightly fuzz run shape_advantages corpus/shape_advantages seeds/shape_advantages \
//!         -- -timeout=5 -rss_limit_mb=2048
//!
//! # Decoding (missing bytes read as 0)
//!
//! 1. `method` byte, mod 6: GRPO, Dr.GRPO, RLOO, REINFORCE++, REINFORCE++-baseline, GAE.
//! 2. `options` byte: GRPO's scale (mod 3: group, batch, none), bit 2 the std kind (sample,
//!    population), bits 3-5 ε from [`EPSILONS`] (three of them invalid); for GAE, γ and λ from
//!    [`DISCOUNTS`] (bits 0-2, 3-5; two invalid) and bit 6 a bootstrap value per episode.
//! 3. `flags` byte: bit 0 filters zero-variance groups; bits 1-2 the layout (0 `uniform`,
//!    1 `from_sizes`, 2 `from_sizes` with one sample too many, an error; 3 as 1); bits 3 to 6
//!    all set tile the input (rewards and sizes repeated) past 65,536 samples, the parallel
//!    path's threshold (a tiled input takes up to ~0.2 s under ASAN, so only one in 16).
//! 4. `size` byte: the uniform group size (mod 20; 0 is an error), or the number of size bytes
//!    that follow (mod 16), each a group or episode size mod 12 (0 allowed). The sizes repeat
//!    until they cover the samples; the last group is cut to fit.
//! 5. The rest: values, each a tag byte and its payload ([`value`]): raw `f64` bits, small
//!    multiples of 1/8, the same offset by 1e9 or 1e15, specials (NaN, ±∞, subnormals, ±1e308,
//!    `f64::MAX`, −0), or 0/1. GAE takes the first half as rewards, the second as values, and
//!    bootstrap values from the same list.
//!
//! # Checks
//!
//! * A valid request is `Ok`, an invalid one `Err` from both `advantages` and
//!   `advantages_into` (and from `gae` and `gae_into`).
//! * Length; `summary.masked` = the non-finite rewards; `summary.filtered` = the samples of
//!   groups of two or more finite rewards, all equal, when filtering.
//! * The `Advantages` doc's NaN rule: NaN exactly for masked and filtered samples, checked when
//!   every finite reward is below 1e300 in magnitude (its proviso on overflow).
//! * `advantages` and `advantages_into` (into a buffer of garbage) give the same bits and summary.
//! * The consecutive groups and the same groups scattered (`from_labels`, rows interleaved one
//!   per group in turn, each group's members in order) give the same bits and summary; not for
//!   GRPO with batch scaling, whose batch std sums the rewards in input order.
//! * A rayon pool of 1 thread and of 3 give the same bits.
//! * GRPO (group or no scaling), Dr.GRPO and RLOO: each group's advantages sum to 0 up to
//!   rounding (`8·K·ε·Σ|A|`) when its finite rewards are below 1e100 in magnitude.
//! * GAE: lengths; `masked_episodes` = the episodes with a non-finite reward, value or bootstrap
//!   value; their steps NaN in both outputs; no NaN in an episode whose inputs are all below
//!   1e100 in magnitude; `gae_into` and `gae` and both pools give the same bits.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rayon::{ThreadPool, ThreadPoolBuilder};
use rewardkit_shape::{
    advantages, advantages_into, gae, gae_into, Estimator, Groups, StdKind, StdScope,
};

/// ε values: three valid, one huge, three invalid.
const EPSILONS: [f64; 8] = [0.0, 1e-6, 1e-8, 1.0, 1e300, -1e-8, f64::NAN, f64::INFINITY];
/// γ and λ values: six valid, two invalid.
const DISCOUNTS: [f64; 8] = [0.0, 0.5, 0.99, 1.0, 1.0, 1e-300, -0.1, 1.5];
/// Special rewards.
const SPECIALS: [f64; 12] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    5e-324,
    -2.2e-308,
    1e308,
    -1e308,
    f64::MAX,
    -0.0,
    f64::MIN_POSITIVE,
    1e300,
    -1e300,
];
/// Inputs are tiled past this many samples (above `PARALLEL_SAMPLES`, 65,536).
const TILED: usize = 70_000;

/// The fuzz input, read front to back; 0 once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn small(&mut self) -> f64 {
        f64::from(self.byte() as i8) / 8.0
    }
}

/// One value: a tag byte, then its payload.
fn value(input: &mut Bytes) -> f64 {
    match input.byte() % 8 {
        0 => {
            let mut bits = [0u8; 8];
            bits.iter_mut().for_each(|b| *b = input.byte());
            f64::from_le_bytes(bits)
        }
        1 | 2 => input.small(),
        3 => 1e9 + input.small(),
        4 => 1e15 + input.small(),
        5 => SPECIALS[usize::from(input.byte()) % SPECIALS.len()],
        6 => f64::from(input.byte() & 1),
        _ => -1e9 + input.small() / 1024.0,
    }
}

fn pools() -> &'static (ThreadPool, ThreadPool) {
    static POOLS: OnceLock<(ThreadPool, ThreadPool)> = OnceLock::new();
    POOLS.get_or_init(|| {
        let pool = |n| {
            ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("pool")
        };
        (pool(1), pool(3))
    })
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Group sizes covering `n` samples: `sizes` repeated (zeros dropped), the last group cut to fit.
fn cover(sizes: &[usize], n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut total = 0;
    if sizes.iter().all(|&s| s == 0) {
        return if n > 0 { vec![n] } else { vec![] };
    }
    for &s in sizes.iter().cycle().filter(|&&s| s > 0) {
        if total >= n {
            break;
        }
        let s = s.min(n - total);
        out.push(s);
        total += s;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let method = input.byte() % 6;
    let options = input.byte();
    let flags = input.byte();
    let size = input.byte();
    let layout = (flags >> 1) % 4;
    let sizes: Vec<usize> = if layout == 0 {
        vec![usize::from(size % 20)]
    } else {
        (0..size % 16)
            .map(|_| usize::from(input.byte() % 12))
            .collect()
    };
    let mut values = Vec::new();
    while !input.0.is_empty() {
        values.push(value(&mut input));
    }
    if flags & 0x78 == 0x78 && !values.is_empty() {
        let base = values.len();
        while values.len() < TILED {
            values.extend_from_within(..base);
        }
    }
    if method == 5 {
        check_gae(options, &sizes, &values);
        return;
    }
    let std = if options & 4 == 0 {
        StdKind::Sample
    } else {
        StdKind::Population
    };
    let epsilon = EPSILONS[usize::from(options >> 3) % 8];
    let estimator = match method {
        0 => Estimator::Grpo {
            scale: [StdScope::Group, StdScope::Batch, StdScope::None][usize::from(options % 3)],
            std,
            epsilon,
        },
        1 => Estimator::DrGrpo,
        2 => Estimator::Rloo,
        _ => Estimator::ReinforcePlusPlus {
            baseline: method == 4,
            std,
            epsilon,
        },
    };
    let filter = flags & 1 != 0;
    let rewards = values;
    let n = rewards.len();
    let (groups, sizes) = if layout == 0 {
        match Groups::uniform(n, sizes[0]) {
            Ok(groups) => (groups, cover(&[sizes[0]], n)),
            Err(_) => {
                assert_eq!(sizes[0], 0, "uniform refused size {}", sizes[0]);
                return;
            }
        }
    } else {
        let mut sizes = cover(&sizes, n);
        if layout == 2 {
            sizes.push(1);
        }
        (Groups::from_sizes(&sizes), sizes)
    };
    let (one, three) = pools();
    let has_epsilon = matches!(
        estimator,
        Estimator::Grpo { .. } | Estimator::ReinforcePlusPlus { .. }
    );
    let bad_request = layout == 2 || (has_epsilon && !(epsilon.is_finite() && epsilon >= 0.0));
    let got = one.install(|| advantages(&rewards, &groups, &estimator, filter));
    let mut into = vec![12345.678; n];
    let got_into = advantages_into(&rewards, &groups, &estimator, filter, &mut into);
    if bad_request {
        assert!(got.is_err() && got_into.is_err(), "bad request accepted");
        return;
    }
    let got = got.expect("a valid request");
    let summary_into = got_into.expect("a valid request");
    let out = &got.values;
    assert_eq!(out.len(), n);
    assert!(
        same_bits(out, &into),
        "advantages_into differs from advantages"
    );
    assert_eq!(got.summary, summary_into);

    // Counts and the NaN rule.
    let masked = rewards.iter().filter(|x| !x.is_finite()).count();
    assert_eq!(got.summary.masked, masked);
    let mut filtered = vec![false; n];
    let mut start = 0;
    for &s in &sizes {
        let members = &rewards[start..start + s];
        let mut finite = members.iter().filter(|x| x.is_finite());
        let first = finite.next();
        let constant = first.is_some_and(|f| finite.clone().count() > 0 && finite.all(|x| x == f));
        if filter && constant {
            filtered[start..start + s]
                .iter_mut()
                .for_each(|f| *f = true);
        }
        start += s;
    }
    let filtered_count = (0..n)
        .filter(|&i| filtered[i] && rewards[i].is_finite())
        .count();
    assert_eq!(got.summary.filtered, filtered_count, "filtered count");
    if rewards.iter().all(|x| !x.is_finite() || x.abs() < 1e300) {
        for i in 0..n {
            let expect_nan = !rewards[i].is_finite() || filtered[i];
            assert_eq!(
                out[i].is_nan(),
                expect_nan,
                "sample {i}: reward {}, advantage {}",
                rewards[i],
                out[i]
            );
        }
    }

    // Thread-count independence.
    let got3 = three
        .install(|| advantages(&rewards, &groups, &estimator, filter))
        .expect("valid");
    assert!(
        same_bits(out, &got3.values),
        "1 thread and 3 threads differ"
    );
    assert_eq!(got.summary, got3.summary);

    // The same groups scattered: one member of each group in turn.
    let batch_scaled = matches!(
        estimator,
        Estimator::Grpo {
            scale: StdScope::Batch,
            ..
        }
    );
    if !batch_scaled {
        let mut starts = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for &s in &sizes {
            starts.push(at);
            at += s;
        }
        let mut order = Vec::with_capacity(n); // order[k] = the consecutive index of row k
        let mut labels = Vec::with_capacity(n);
        let longest = sizes.iter().copied().max().unwrap_or(0);
        for round in 0..longest {
            for (g, &s) in sizes.iter().enumerate() {
                if round < s {
                    order.push(starts[g] + round);
                    labels.push(g);
                }
            }
        }
        let scattered_rewards: Vec<f64> = order.iter().map(|&i| rewards[i]).collect();
        let scattered = Groups::from_labels(&labels);
        let got_s = advantages(&scattered_rewards, &scattered, &estimator, filter).expect("valid");
        for (k, &i) in order.iter().enumerate() {
            assert_eq!(
                got_s.values[k].to_bits(),
                out[i].to_bits(),
                "scattered row {k} (sample {i}): {} vs {}",
                got_s.values[k],
                out[i]
            );
        }
        assert_eq!(got.summary, got_s.summary);
    }

    // Group-centred estimators: each group's advantages sum to 0 up to rounding.
    let centred = match estimator {
        Estimator::Grpo { scale, .. } => scale != StdScope::Batch,
        Estimator::DrGrpo | Estimator::Rloo => true,
        Estimator::ReinforcePlusPlus { .. } => false,
    };
    if centred {
        let mut start = 0;
        for &s in &sizes {
            let members = start..start + s;
            start += s;
            if rewards[members.clone()]
                .iter()
                .any(|x| x.is_finite() && x.abs() >= 1e100)
            {
                continue;
            }
            let finite: Vec<f64> = out[members]
                .iter()
                .copied()
                .filter(|a| !a.is_nan())
                .collect();
            let sum: f64 = finite.iter().sum();
            let scale: f64 = finite.iter().map(|a| a.abs()).sum();
            let tolerance = 8.0 * finite.len() as f64 * f64::EPSILON * scale + 1e-290;
            assert!(
                sum.abs() <= tolerance,
                "group sum {sum}, Σ|A| {scale}: {finite:?}"
            );
        }
    }
});

/// GAE over episodes of `sizes` (covering half the values), rewards the first half of `values`,
/// critic values the second.
fn check_gae(options: u8, sizes: &[usize], values: &[f64]) {
    let gamma = DISCOUNTS[usize::from(options & 7)];
    let lambda = DISCOUNTS[usize::from((options >> 3) & 7)];
    let n = values.len() / 2;
    let (rewards, critic) = (&values[..n], &values[n..2 * n]);
    let lengths = cover(sizes, n);
    let bootstrap: Option<Vec<f64>> = (options & 64 != 0 && !values.is_empty()).then(|| {
        (0..lengths.len())
            .map(|e| values[(e * 7 + 1) % values.len()])
            .collect()
    });
    let bootstrap = bootstrap.as_deref();
    let (one, three) = pools();
    let got = one.install(|| gae(rewards, critic, &lengths, bootstrap, gamma, lambda));
    let mut adv = vec![12345.678; n];
    let mut ret = vec![12345.678; n];
    let got_into = gae_into(
        rewards, critic, &lengths, bootstrap, gamma, lambda, &mut adv, &mut ret,
    );
    let valid = |d: f64| (0.0..=1.0).contains(&d);
    if !(valid(gamma) && valid(lambda)) {
        assert!(got.is_err() && got_into.is_err(), "bad discount accepted");
        return;
    }
    let got = got.expect("a valid request");
    assert_eq!(got_into.expect("a valid request"), got.masked_episodes);
    assert_eq!((got.advantages.len(), got.returns.len()), (n, n));
    assert!(
        same_bits(&got.advantages, &adv) && same_bits(&got.returns, &ret),
        "gae_into differs"
    );
    let got3 = three
        .install(|| gae(rewards, critic, &lengths, bootstrap, gamma, lambda))
        .expect("valid");
    assert!(
        same_bits(&got.advantages, &got3.advantages) && same_bits(&got.returns, &got3.returns),
        "1 thread and 3 threads differ"
    );
    let mut masked = 0;
    let mut start = 0;
    for (e, &len) in lengths.iter().enumerate() {
        let steps = start..start + len;
        start += len;
        let bad = rewards[steps.clone()]
            .iter()
            .chain(&critic[steps.clone()])
            .any(|x| !x.is_finite())
            || bootstrap.is_some_and(|b| !b[e].is_finite());
        masked += usize::from(bad);
        let sane = rewards[steps.clone()]
            .iter()
            .chain(&critic[steps.clone()])
            .chain(bootstrap.map(|b| &b[e]))
            .all(|x| x.abs() < 1e100);
        for t in steps {
            let nan = (got.advantages[t].is_nan(), got.returns[t].is_nan());
            if bad {
                assert_eq!(
                    nan,
                    (true, true),
                    "episode {e} is masked, step {t} is not NaN"
                );
            } else if sane {
                assert_eq!(
                    nan,
                    (false, false),
                    "episode {e}, step {t}: NaN from finite inputs"
                );
            }
        }
    }
    assert_eq!(got.masked_episodes, masked, "masked episodes");
}
