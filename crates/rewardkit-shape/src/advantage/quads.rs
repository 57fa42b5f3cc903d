//! The group pass over groups of one fixed size, four groups at a time, in AVX.
//!
//! A group's advantages wait on its statistics, and its statistics are a chain of dependent
//! additions and two combines of four lanes: one group at a time, the processor spends most of
//! its time waiting for the chain (the work per group is small). Here four consecutive groups
//! are summed side by side, so that their four chains overlap, and the combines and divisions
//! run once for the four on registers holding one group per lane. Every group's sums are exactly
//! those of [`Kernel::signal`](crate::simd::Kernel::signal) (lane `j` of group `g` accumulates
//! its elements `4c + j` in chunk order, then `(l₀ + l₁) + (l₂ + l₃)`), and its writes are those
//! of the general pass's common case (`group_pass_with`): the same bits. Four groups that are not
//! all plain signal groups (every reward finite, not all equal) go to the general pass, one group
//! at a time.

use std::arch::x86_64::{
    __m256d, _mm256_add_pd, _mm256_and_pd, _mm256_cmp_pd, _mm256_div_pd, _mm256_max_pd,
    _mm256_movemask_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_setzero_pd, _mm256_sqrt_pd,
    _mm256_sub_pd, _CMP_EQ_OQ, _CMP_GT_OQ, _CMP_NEQ_OQ,
};
use std::ops::Range;

use super::reinforce::{Centring, Score, Sums, BLOCK};
use super::{Fast, Slot, Tally};
use crate::simd::{lanes, load, prefetch, transpose_sum, Avx, AHEAD};
use crate::StdKind;

/// The statistics of four consecutive groups of `N` values.
struct Four {
    /// Each group's `shifted_mean` (its mean minus its pivot, the group's first value).
    shifted: [f64; 4],
    /// Each group's sum of squared deviations (only when asked for; else 0).
    m2: __m256d,
    /// Bit `j` set when group `j`'s total of `x − pivot` is finite and not 0, which proves a
    /// learning signal with every value finite (then
    /// [`Kernel::signal`](crate::simd::Kernel::signal) returns `Some`); clear groups go to the
    /// general pass.
    usable: i32,
}

/// [`Four`] of the `4N` values `$x` (`N` is the caller's group size), with the sums of squares
/// if `$need_m2`. Each group's lanes get exactly the sums of `Kernel::signal`'s two passes, the
/// four groups' chunks interleaved. A macro, not a function: it must be inlined into its AVX callers (the compiler
/// does not always inline a function with target features, and a call would pass the
/// registers through memory).
macro_rules! four {
    ($x:expr, $need_m2:expr) => {{
        let (x, need_m2): (&[f64], bool) = ($x, $need_m2);
        let count = _mm256_set1_pd(N as f64);
        let zero = _mm256_setzero_pd();
        let (chunks, _) = x.as_chunks::<4>();
        let per = N / 4;
        let mut p = [zero; 4];
        for j in 0..4 {
            p[j] = _mm256_set1_pd(x[j * N]);
        }
        // First pass: Σ (x − pivot) per lane.
        let mut sum = [zero; 4];
        for c in 0..per {
            for j in 0..4 {
                let v = load(&chunks[j * per + c]);
                sum[j] = _mm256_add_pd(sum[j], _mm256_sub_pd(v, p[j]));
            }
        }
        let totals = transpose_sum(sum);
        let mean = _mm256_div_pd(totals, count);
        let means = lanes(mean);
        // Second pass: the residuals `(x − pivot) − mean`, and their squares when needed. The
        // values are loaded again (from L1, hence the opaque copy of the reference): keeping the
        // first pass's sixteen registers alive across the division would spill them to the stack,
        // which costs more.
        let chunks = std::hint::black_box(chunks);
        let mut residual = [zero; 4];
        let mut squares = [zero; 4];
        for c in 0..per {
            for j in 0..4 {
                let m = _mm256_set1_pd(means[j]);
                let e = _mm256_sub_pd(_mm256_sub_pd(load(&chunks[j * per + c]), p[j]), m);
                residual[j] = _mm256_add_pd(residual[j], e);
                if need_m2 {
                    squares[j] = _mm256_add_pd(squares[j], _mm256_mul_pd(e, e));
                }
            }
        }
        let r = transpose_sum(residual);
        let shifted = lanes(_mm256_add_pd(mean, _mm256_div_pd(r, count)));
        // `(q − r²/n).max(0)`: `max` returns its second operand for a NaN first one, as `f64::max`
        // returns the non-NaN one.
        let m2 = if need_m2 {
            let q = transpose_sum(squares);
            _mm256_max_pd(
                _mm256_sub_pd(q, _mm256_div_pd(_mm256_mul_pd(r, r), count)),
                zero,
            )
        } else {
            zero
        };
        // A group with every value equal to its pivot has every `x − pivot = 0`, so a total
        // other than 0 proves that some value differs: a learning signal, as `Kernel::signal`
        // decides with its extra comparison per value. A total of exactly 0 (every group with
        // no signal, and rarely one with) is left to the general pass, which decides; `t − t = 0`
        // exactly when `t` is finite.
        let usable = _mm256_movemask_pd(_mm256_and_pd(
            _mm256_cmp_pd::<_CMP_EQ_OQ>(_mm256_sub_pd(totals, totals), zero),
            _mm256_cmp_pd::<_CMP_NEQ_OQ>(totals, zero),
        ));
        Four {
            shifted,
            m2,
            usable,
        }
    }};
}

/// Runs the group pass over `groups` (consecutive, `N` members each but perhaps the last;
/// `out` indexed from `offsets[groups.start]`) four at a time with `fast`'s writes, and hands
/// every run of groups it does not do itself to `slow`; returns the counts of both. `N` is a
/// positive multiple of 4.
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
    let zero = _mm256_setzero_pd();
    let mut g = groups.start;
    while g + 4 <= groups.end {
        let start = offsets[g];
        // Only the last group may be short; four groups spanning 4N have N members each.
        if offsets[g + 4] - start != 4 * N {
            break;
        }
        let x = &rewards[start..start + 4 * N];
        prefetch(rewards, start + AHEAD, 4 * N);
        let need_m2 = matches!(fast, Fast::Divide { .. });
        let Four {
            shifted,
            m2,
            mut usable,
        } = four!(x, need_m2);
        let mut divisors = [1.0; 4];
        if let Fast::Divide { std, epsilon } = fast {
            // `Centre::std`: √(M2 / n) or √(M2 / (n − 1)), then + ε, which must be > 0.
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

/// REINFORCE++'s phase 1 ([`super::reinforce`], with or without the baseline) over `groups` (consecutive, `N`
/// members each but perhaps the last; starting at a block boundary): each group's score rule
/// into `scores` (indexed from `groups.start`) and each block's sums into `blocks`, four groups
/// at a time; any four that are not all plain signal groups, and the last groups, go to `slow`,
/// which adds them to the block it is given. Groups are added to their block in group order
/// either way, so the sums are those of the one-at-a-time pass.
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
pub(super) fn scores<const N: usize, C: Centring>(
    _avx: Avx,
    rewards: &[f64],
    offsets: &[usize],
    groups: Range<usize>,
    centring: C,
    scores: &mut [Score],
    blocks: &mut Vec<Sums>,
    mut slow: impl FnMut(Range<usize>, &mut [Score], &mut Sums) -> Tally,
) -> Tally {
    let mut tally = Tally::default();
    let mut block = Sums::default();
    let first = groups.start;
    let mut g = first;
    while g < groups.end {
        if g > first && g.is_multiple_of(BLOCK) {
            blocks.push(std::mem::take(&mut block));
        }
        let start = offsets[g];
        // Only the last group may be short; four groups spanning 4N have N members each.
        if g + 4 <= groups.end && offsets[g + 4] - start == 4 * N {
            let x = &rewards[start..start + 4 * N];
            prefetch(rewards, start + AHEAD, 4 * N);
            let Four {
                shifted,
                m2,
                usable,
                ..
            } = four!(x, true);
            if usable == 0b1111 {
                let m2 = lanes(m2);
                for j in 0..4 {
                    let (pivot, mean) = (x[j * N], shifted[j]);
                    scores[g + j - first] = Score { pivot, mean };
                    block = centring.add(block, centring.sums(N, pivot, mean, m2[j], true));
                }
                tally.finite += 4 * N;
                g += 4;
                continue;
            }
        }
        // One block at most: four groups, or the last ones (fewer than four, or a short one),
        // which lie in one block as blocks hold a multiple of four groups.
        let stop = if g + 4 <= groups.end {
            g + 4
        } else {
            groups.end
        };
        tally = tally.add(slow(
            g..stop,
            &mut scores[g - first..stop - first],
            &mut block,
        ));
        g = stop;
    }
    if groups.end > first {
        blocks.push(block);
    }
    tally
}
