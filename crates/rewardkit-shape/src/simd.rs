//! Kernels for the group statistics: portable code, and an x86-64 copy in AVX instructions
//! chosen at run time.
//!
//! Rust compiles for the baseline x86-64 CPU (SSE2, two `f64` per register) unless told
//! otherwise, and the four-lane sums of [`Centre::of_slice`] come out as scalar instructions
//! there. Every x86-64 CPU of the last decade has AVX (four `f64` per register), so the hot
//! loops are also compiled for it and picked once per call after a CPU check. The AVX copy
//! computes exactly the same lanes in the same order (a `ymm` register *is* the four lanes; no
//! fused multiply-add, which would round differently), so both kernels give bit-identical
//! results; a unit test and `.ci/shape.sh` hold them to that.

use crate::stats::Centre;

/// How a group's statistics are computed; the rest of the estimator is generic over it.
pub(crate) trait Kernel: Copy + Send + Sync {
    /// [`Centre::of_slice`] of a group's rewards.
    fn centre(self, values: &[f64]) -> Centre;

    /// `(pivot, shifted_mean, m2)` of [`Kernel::centre`] when every value is finite, their sum
    /// too, and not all are equal (a group with a learning signal); `None` otherwise, and then
    /// the caller asks [`Kernel::centre`].
    #[inline(always)]
    fn signal(self, values: &[f64]) -> Option<(f64, f64, f64)> {
        let centre = self.centre(values);
        (centre.count == values.len() && centre.count >= 2 && !centre.constant).then_some((
            centre.pivot,
            centre.shifted_mean,
            centre.m2,
        ))
    }
}

/// The portable kernel: the compiler's code for the build target.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    fn centre(self, values: &[f64]) -> Centre {
        Centre::of_slice_inline(values)
    }
}

/// A vector with room for `n` `f64`, asked to be backed by transparent huge pages when it is
/// large (4 MiB or more), as NumPy does for its arrays (`numpy/_core/src/multiarray/alloc.c`).
///
/// A fresh output of a million values is 8 MiB the allocator often takes straight from the
/// kernel; writing it then costs a page fault for each of its 2048 pages of 4 KiB (in a virtual
/// machine, microseconds each: more than the arithmetic), or four for pages of 2 MiB. The
/// request changes no value, only how the memory is mapped, and is ignored where transparent
/// huge pages are off.
pub(crate) fn output_vec(n: usize) -> Vec<f64> {
    let values = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    if n * size_of::<f64>() >= 4 << 20 {
        const PAGE: usize = 4096;
        let start = values.as_ptr() as usize;
        let end = start + n * size_of::<f64>();
        let (first, last) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        // SAFETY: `first..last` lies inside the vector's allocation (page-aligned inward), which
        // this function owns; MADV_HUGEPAGE is advice about how to back that range and changes
        // neither its contents nor its validity. A failure is harmless and ignored.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
    values
}

/// How far ahead of the values being computed a streaming pass asks for its input to be brought
/// into the cache ([`prefetch`]): 4,096 values (32 KiB). On the machine this was measured on (an
/// AMD EPYC virtual machine) the hardware prefetcher did not keep the stream far enough ahead on
/// its own. With the hint in the four-groups-at-a-time passes, on one thread over a million
/// rewards in groups of 16, the median call went from 1.52 to 1.11 ms (RLOO), 1.60 to 1.41 ms
/// (GRPO) and 2.62 to 2.36 ms (REINFORCE++-baseline): medians of 8–12 alternating runs of 51
/// calls, idle machine. 512 and 2,048 values ahead helped less, 8,192 no more; a hint per group
/// in REINFORCE++-baseline's second pass did not help.
pub(crate) const AHEAD: usize = 4096;

/// Asks for `values[from..from + len]` to be brought into the cache, when that range lies in
/// `values`: a hint, with no effect on any result (nothing on other architectures).
#[inline(always)]
pub(crate) fn prefetch(values: &[f64], from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(ahead) = values.get(from..from + len) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for line in (0..len).step_by(8) {
            // SAFETY: a prefetch reads nothing and cannot fault; the address is inside `ahead`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().wrapping_add(line).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, from, len);
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{lanes, load, transpose_sum, Avx};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256d, _mm256_add_pd, _mm256_castpd256_pd128, _mm256_cmp_pd, _mm256_extractf128_pd,
        _mm256_hadd_pd, _mm256_loadu_pd, _mm256_movemask_pd, _mm256_mul_pd, _mm256_or_pd,
        _mm256_permute2f128_pd, _mm256_set1_pd, _mm256_setzero_pd, _mm256_storeu_pd, _mm256_sub_pd,
        _mm_add_pd, _mm_cvtsd_f64, _mm_unpackhi_pd, _CMP_NEQ_UQ,
    };

    use super::Kernel;
    use crate::stats::{self, Centre, LanePasses};

    /// The AVX kernel. A value of this type exists only on a CPU with AVX ([`Avx::detect`]),
    /// which is what makes calling the `#[target_feature]` functions below sound.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx {
        _detected: (),
    }

    impl Avx {
        /// The kernel, if this CPU has AVX (the check is cached by the standard library).
        pub(crate) fn detect() -> Option<Avx> {
            std::arch::is_x86_feature_detected!("avx").then_some(Avx { _detected: () })
        }
    }

    impl Kernel for Avx {
        #[inline(always)]
        fn centre(self, values: &[f64]) -> Centre {
            Centre::of_slice_with(values, self)
        }

        /// Both passes without a branch between them (the second runs whatever the first
        /// found), so that nothing stands between one group's arithmetic and the next; the
        /// same sums as [`Centre::of_slice_with`], used only where it would have used them.
        #[inline(always)]
        fn signal(self, values: &[f64]) -> Option<(f64, f64, f64)> {
            let &pivot = values.first()?;
            if values.len() < 2 || !values.len().is_multiple_of(4) {
                let centre = self.centre(values);
                return (centre.count == values.len() && centre.count >= 2 && !centre.constant)
                    .then_some((centre.pivot, centre.shifted_mean, centre.m2));
            }
            let n = values.len() as f64;
            // SAFETY: `self` exists only if the CPU has AVX (`Avx::detect`).
            let (total, differ) = unsafe { first(values, pivot) };
            let mean = total / n;
            // SAFETY: as above.
            let (r, q) = unsafe { second(values, pivot, mean) };
            (total.is_finite() && differ).then(|| (pivot, mean + r / n, (q - r * r / n).max(0.0)))
        }
    }

    /// The passes as calls of `#[target_feature(enable = "avx")]` functions: in a caller
    /// compiled for AVX they inline, intrinsics included, and a group of known size unrolls.
    impl LanePasses for Avx {
        #[inline(always)]
        fn first(self, values: &[f64], pivot: f64) -> (f64, bool) {
            // SAFETY: `self` exists only if the CPU has AVX (`Avx::detect`).
            unsafe { first(values, pivot) }
        }

        #[inline(always)]
        fn second(self, values: &[f64], pivot: f64, mean: f64) -> (f64, f64) {
            // SAFETY: as above.
            unsafe { second(values, pivot, mean) }
        }
    }

    /// [`crate::stats::PortableLanes::first`]: a register holds the four lane sums; `x ≠ pivot`
    /// is `vcmpneq_uqpd` (true for NaN, like Rust's `!=`).
    #[target_feature(enable = "avx")]
    #[inline]
    fn first(values: &[f64], pivot: f64) -> (f64, bool) {
        let (chunks, tail) = values.as_chunks::<4>();
        let p = _mm256_set1_pd(pivot);
        let mut sum = _mm256_setzero_pd();
        let mut differ = _mm256_setzero_pd();
        for chunk in chunks {
            let x = load(chunk);
            sum = _mm256_add_pd(sum, _mm256_sub_pd(x, p));
            differ = _mm256_or_pd(differ, _mm256_cmp_pd::<_CMP_NEQ_UQ>(x, p));
        }
        let mut differ = _mm256_movemask_pd(differ) != 0;
        if tail.is_empty() {
            return (combine(sum), differ);
        }
        let mut lanes = lanes(sum);
        for &x in tail {
            lanes[0] += x - pivot;
            differ |= x != pivot;
        }
        (stats::combine(lanes), differ)
    }

    /// [`crate::stats::PortableLanes::second`].
    #[target_feature(enable = "avx")]
    #[inline]
    fn second(values: &[f64], pivot: f64, mean: f64) -> (f64, f64) {
        let (chunks, tail) = values.as_chunks::<4>();
        let p = _mm256_set1_pd(pivot);
        let m = _mm256_set1_pd(mean);
        let mut residual = _mm256_setzero_pd();
        let mut squares = _mm256_setzero_pd();
        for chunk in chunks {
            let e = _mm256_sub_pd(_mm256_sub_pd(load(chunk), p), m);
            residual = _mm256_add_pd(residual, e);
            squares = _mm256_add_pd(squares, _mm256_mul_pd(e, e));
        }
        if tail.is_empty() {
            return combine2(residual, squares);
        }
        let (mut residual, mut squares) = (lanes(residual), lanes(squares));
        for &x in tail {
            let e = (x - pivot) - mean;
            residual[0] += e;
            squares[0] += e * e;
        }
        (stats::combine(residual), stats::combine(squares))
    }

    /// [`combine`] of two registers at once: `hadd` gives `[r₀ + r₁, q₀ + q₁, r₂ + r₃, q₂ + q₃]`,
    /// then the halves are added.
    #[target_feature(enable = "avx")]
    #[inline]
    fn combine2(r: __m256d, q: __m256d) -> (f64, f64) {
        let pairs = _mm256_hadd_pd(r, q);
        let both = _mm_add_pd(
            _mm256_castpd256_pd128(pairs),
            _mm256_extractf128_pd::<1>(pairs),
        );
        (
            _mm_cvtsd_f64(both),
            _mm_cvtsd_f64(_mm_unpackhi_pd(both, both)),
        )
    }

    /// `(l₀ + l₁) + (l₂ + l₃)` of a register's lanes, in registers.
    #[target_feature(enable = "avx")]
    #[inline]
    fn combine(v: __m256d) -> f64 {
        let pairs = _mm256_hadd_pd(v, v);
        _mm_cvtsd_f64(_mm_add_pd(
            _mm256_castpd256_pd128(pairs),
            _mm256_extractf128_pd::<1>(pairs),
        ))
    }

    /// The four-lane combine `(l₀ + l₁) + (l₂ + l₃)` of each of four registers, one per lane of
    /// the result (four groups' statistics at once, `advantage/quads.rs`): `hadd` adds lanes
    /// 0+1 and 2+3 of two registers at once, then the halves are added.
    #[target_feature(enable = "avx")]
    #[inline]
    pub(crate) fn transpose_sum(v: [__m256d; 4]) -> __m256d {
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
    pub(crate) fn load(chunk: &[f64; 4]) -> __m256d {
        // SAFETY: `chunk` is four readable `f64`; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_pd(chunk.as_ptr()) }
    }

    /// A register's four `f64`, lane 0 first.
    #[target_feature(enable = "avx")]
    #[inline]
    pub(crate) fn lanes(v: __m256d) -> [f64; 4] {
        let mut out = [0.0; 4];
        // SAFETY: `out` is four writable `f64`; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr(), v) };
        out
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn avx_kernel_equals_the_portable_one() {
        let Some(avx) = Avx::detect() else {
            eprintln!("skipped: this CPU has no AVX");
            return;
        };
        let mut state = 5u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut cases: Vec<Vec<f64>> = Vec::new();
        for len in 0..70 {
            cases.push((0..len).map(|_| next() * 10.0 - 5.0).collect());
            cases.push((0..len).map(|_| 1e9 + (next() * 4.0).floor()).collect());
            cases.push(vec![0.5; len]);
        }
        let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -0.0, 0.0];
        for &special in &specials {
            for len in [1, 2, 4, 5, 8, 16, 17] {
                for at in 0..len {
                    let mut values = vec![0.0; len];
                    values.iter_mut().for_each(|v| *v = next());
                    values[at] = special;
                    cases.push(values.clone());
                    values.iter_mut().for_each(|v| *v = 1e308);
                    values[at] = special;
                    cases.push(values);
                }
            }
        }
        for values in &cases {
            let portable = Portable.centre(values);
            let fast = avx.centre(values);
            assert_eq!(format!("{fast:?}"), format!("{portable:?}"), "{values:?}");
            // `None` sends the caller to `centre`, which is checked above; a `Some` must be the
            // portable one.
            if let Some(signal) = avx.signal(values) {
                let portable = Portable.signal(values);
                assert_eq!(
                    format!("{:?}", Some(signal)),
                    format!("{portable:?}"),
                    "{values:?}"
                );
            }
        }
    }
}
