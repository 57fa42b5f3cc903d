//! The group pass over groups of one fixed size, four groups at a time, in AVX.
//!
//! A group's advantages wait on its statistics, and its statistics are a chain of dependent
//! additions and two combines of four lanes: one group at a time, the processor spends most of
//! its time waiting for the chain (the work per group is small). Here four consecutive groups
//! are summed side by side, so that their four chains overlap, and the combines and divisions
//! run once for the four on registers holding one group per lane. Every group's sums are exactly
//! those of [`Kernel::signal`](crate::simd::Kernel::signal) (lane `j` of group `g` accumulates
//! its elements `4c + j` in chunk order, then `(l₀ + l₁) + (l₂ + l₃)`), and its writes are those
//! of [`Fast::write`]: the same bits. Four groups that are not all signal groups with every
//! reward finite go to the general pass, one group at a time.

use std::arch::x86_64::{
    __m256d, _mm256_add_pd, _mm256_cmp_pd, _mm256_div_pd, _mm256_hadd_pd, _mm256_loadu_pd,
    _mm256_max_pd, _mm256_movemask_pd, _mm256_mul_pd, _mm256_or_pd, _mm256_permute2f128_pd,
    _mm256_set1_pd, _mm256_setzero_pd, _mm256_sqrt_pd, _mm256_storeu_pd, _mm256_sub_pd, _CMP_EQ_OQ,
    _CMP_GT_OQ, _CMP_NEQ_UQ,
};
use std::ops::Range;

use super::{Fast, Slot, Tally};
use crate::simd::Avx;
use crate::StdKind;

/// Runs the group pass over `groups` (consecutive, `N` members each but perhaps the last;
/// `out` indexed from `offsets[groups.start]`) four at a time with `fast`'s writes, and hands
/// every run of groups it does not do itself to `slow`; returns the counts of both. `N` is a positive multiple of 4.
#[target_feature(enable = "avx")]
pub(super) fn pass<const N: usize, T: Slot>(
    _avx: Avx,
    rewards: &[f64],
    offsets: &[usize],
    groups: Range<usize>,
    fast: Fast,
    out: &mut [T],
    mut slow: impl FnMut(Range<usize>, &mut [T]) -> Tally,
) -> Tally {
    let mut tally = Tally::default();
    let base = offsets[groups.start];
    let count = _mm256_set1_pd(N as f64);
    let zero = _mm256_setzero_pd();
    let mut g = groups.start;
    while g + 4 <= groups.end {
        let start = offsets[g];
        // Only the last group may be short; four groups spanning 4N have N members each.
        if offsets[g + 4] - start != 4 * N {
            break;
        }
        let x = &rewards[start..start + 4 * N];
        let (chunks, _) = x.as_chunks::<4>();
        let per = N / 4;
        let mut p = [zero; 4];
        for j in 0..4 {
            p[j] = _mm256_set1_pd(x[j * N]);
        }
        // First pass: Σ (x − pivot) per lane, and whether some x ≠ pivot.
        let mut sum = [zero; 4];
        let mut differ = [zero; 4];
        for c in 0..per {
            for j in 0..4 {
                let v = load(&chunks[j * per + c]);
                sum[j] = _mm256_add_pd(sum[j], _mm256_sub_pd(v, p[j]));
                differ[j] = _mm256_or_pd(differ[j], _mm256_cmp_pd::<_CMP_NEQ_UQ>(v, p[j]));
            }
        }
        let totals = transpose_sum(sum);
        let mean = _mm256_div_pd(totals, count);
        let means = lanes(mean);
        // Second pass: the residuals `(x − pivot) − mean`, and their squares when needed. The
        // values are loaded again (from L1, hence the opaque copy of the reference): keeping
        // the first pass's sixteen registers alive across the division would spill them to the
        // stack, which costs more.
        let chunks = std::hint::black_box(chunks);
        let mut residual = [zero; 4];
        let mut squares = [zero; 4];
        for c in 0..per {
            for j in 0..4 {
                let m = _mm256_set1_pd(means[j]);
                let e = _mm256_sub_pd(_mm256_sub_pd(load(&chunks[j * per + c]), p[j]), m);
                residual[j] = _mm256_add_pd(residual[j], e);
                if matches!(fast, Fast::Divide { .. }) {
                    squares[j] = _mm256_add_pd(squares[j], _mm256_mul_pd(e, e));
                }
            }
        }
        let r = transpose_sum(residual);
        let shifted = lanes(_mm256_add_pd(mean, _mm256_div_pd(r, count)));
        // `t − t = 0` exactly when `t` is finite.
        let mut usable = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_EQ_OQ>(
            _mm256_sub_pd(totals, totals),
            zero,
        ));
        for (j, differ) in differ.iter().enumerate() {
            if _mm256_movemask_pd(*differ) == 0 {
                usable &= !(1 << j);
            }
        }
        let mut divisors = [1.0; 4];
        if let Fast::Divide { std, epsilon } = fast {
            // `Centre::std`: √(M2 / n) or √(M2 / (n − 1)), then + ε, which must be > 0.
            let q = transpose_sum(squares);
            let m2 = _mm256_max_pd(
                _mm256_sub_pd(q, _mm256_div_pd(_mm256_mul_pd(r, r), count)),
                zero,
            );
            let by = match std {
                StdKind::Population => N as f64,
                StdKind::Sample => (N - 1) as f64,
            };
            let d = _mm256_add_pd(
                _mm256_sqrt_pd(_mm256_div_pd(m2, _mm256_set1_pd(by))),
                _mm256_set1_pd(epsilon),
            );
            usable &= _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(d, zero));
            divisors = lanes(d);
        }
        let at = start - base;
        if usable != 0b1111 {
            tally = tally.add(slow(g..g + 4, &mut out[at..at + 4 * N]));
            g += 4;
            continue;
        }
        let out = &mut out[at..at + 4 * N];
        for j in 0..4 {
            let src: &[f64; N] = x[j * N..(j + 1) * N].try_into().expect("N values");
            let dst: &mut [T; N] = (&mut out[j * N..(j + 1) * N]).try_into().expect("N slots");
            let (pivot, mean) = (x[j * N], shifted[j]);
            match fast {
                Fast::Divide { .. } => {
                    let d = divisors[j];
                    for (slot, &v) in dst.iter_mut().zip(src) {
                        slot.put(((v - pivot) - mean) / d);
                    }
                }
                Fast::LeaveOneOut => {
                    let k = N as f64;
                    let m = k / (k - 1.0);
                    for (slot, &v) in dst.iter_mut().zip(src) {
                        slot.put(((v - pivot) - mean) * m);
                    }
                }
                Fast::Centre => {
                    for (slot, &v) in dst.iter_mut().zip(src) {
                        slot.put((v - pivot) - mean);
                    }
                }
            }
        }
        tally.finite += 4 * N;
        tally.written += 4 * N;
        g += 4;
    }
    if g < groups.end {
        let at = offsets[g] - base;
        tally = tally.add(slow(g..groups.end, &mut out[at..]));
    }
    tally
}

/// The four-lane combine `(l₀ + l₁) + (l₂ + l₃)` of each of four registers, one per lane of the
/// result: `hadd` adds lanes 0+1 and 2+3 of two registers at once, then the halves are added.
#[target_feature(enable = "avx")]
#[inline]
fn transpose_sum(v: [__m256d; 4]) -> __m256d {
    let low = _mm256_hadd_pd(v[0], v[1]);
    let high = _mm256_hadd_pd(v[2], v[3]);
    _mm256_add_pd(
        _mm256_permute2f128_pd::<0x20>(low, high),
        _mm256_permute2f128_pd::<0x31>(low, high),
    )
}

/// Four `f64` into a register.
#[target_feature(enable = "avx")]
#[inline]
fn load(chunk: &[f64; 4]) -> __m256d {
    // SAFETY: `chunk` is four readable `f64`; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_pd(chunk.as_ptr()) }
}

/// A register's four `f64`, lane 0 first.
#[target_feature(enable = "avx")]
#[inline]
fn lanes(v: __m256d) -> [f64; 4] {
    let mut out = [0.0; 4];
    // SAFETY: `out` is four writable `f64`; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_pd(out.as_mut_ptr(), v) };
    out
}
