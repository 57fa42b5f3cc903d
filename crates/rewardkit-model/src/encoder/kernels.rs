//! Fused CPU kernels for the encoder: LayerNorm, masked softmax and GELU as single passes over
//! rows (with their backward passes, as candle custom ops), a bias-fused matrix product, and a
//! work-sized split of rows over threads.
//!
//! Why: candle runs each element-wise operation as its own pass, on one thread, into a freshly
//! allocated tensor, and records it in the autograd graph. The composed LayerNorm in
//! [`super::layer_norm`] is eight such passes; the attention softmax is five more, plus a
//! mask addition; GELU computes `erf` in `f64` on one thread. At MiniLM sizes that is as much
//! time as the matrix products (see `bench/results/model_perf.md`). Here each is one pass,
//! split by rows over the threads candle's matrix products use (`RAYON_NUM_THREADS`), and only
//! when the work is large enough to pay for the hand-off.
//!
//! The custom ops have backward passes (LayerNorm: Ba et al. 2016, the usual closed form
//! `dx = σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`; softmax: `ds = p·(g − Σ p·g)`; GELU
//! (Hendrycks & Gimpel 2016): `d/dx x·Φ(x) = Φ(x) + x·φ(x)`), so the training path uses them
//! too; the tests check values and gradients against the composed, differentiable versions.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Work (multiply–adds or element visits) below which a kernel stays on the calling thread:
/// handing rows to another thread costs a few microseconds.
const PARALLEL_WORK: usize = 1 << 15;

/// Keeps freed tensor buffers in the process (glibc only; once per process).
///
/// A training step allocates and frees hundreds of multi-megabyte buffers. glibc returns a
/// buffer above its mmap threshold to the kernel on free and trims the top of the heap above
/// its trim threshold, so the next allocation of the same size page-faults and zero-fills
/// every page again: 15–20% of a MiniLM training step in `perf`. Raising both thresholds
/// (mmap to glibc's maximum, 32 MB) makes the allocator reuse the memory, as PyTorch's caching
/// CPU allocator does. The cost is that the process keeps its peak heap.
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator parameters; it is called before the encoder
        // allocates its working buffers and glibc serialises it with allocations.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        });
    }
}

/// Threads for the kernels and matrix products: candle's setting (`RAYON_NUM_THREADS`, else
/// every core), as a count of rayon tasks.
pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// Calls `f(row_index, row)` for each `width`-wide row of `data`, on several threads when the
/// rows carry more than [`PARALLEL_WORK`] units of work (`cost` per element).
pub(crate) fn for_rows(
    data: &mut [f32],
    width: usize,
    cost: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let rows = data.len() / width.max(1);
    let threads = threads();
    if threads <= 1 || data.len() * cost < PARALLEL_WORK || rows < 2 {
        data.chunks_mut(width)
            .enumerate()
            .for_each(|(i, row)| f(i, row));
        return;
    }
    let per_task = rows.div_ceil(threads * 4).max(1);
    data.par_chunks_mut(per_task * width)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (j, row) in chunk.chunks_mut(width).enumerate() {
                f(task * per_task + j, row);
            }
        });
}

/// `out[r] = x[r]·wᵀ + bias` for `rows` rows: `x` is `[rows, inp]`, `w` is `[out, inp]`
/// (PyTorch's `Linear` layout), `out` is `[rows, out]`. One `gemm` call with the bias as the
/// initial destination.
pub(crate) fn linear(x: &[f32], rows: usize, inp: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
    linear_into(x, rows, inp, w, bias, None, out, bias.len());
}

/// [`linear`] with two extras: a `residual` (`[rows, out]`) added to every output row (the
/// residual connection rides in the product's initial destination, like the bias), and an output
/// row stride `out_stride ≥ out`, so that the query, key and value projections can write their
/// column blocks of one `[rows, 3·h]` buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_into(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    out_stride: usize,
) {
    let n = bias.len();
    assert_eq!(x.len(), rows * inp, "linear: x is not [rows, in]");
    assert_eq!(w.len(), n * inp, "linear: W is not [out, in]");
    if rows == 0 {
        return;
    }
    for r in 0..rows {
        let row = &mut out[r * out_stride..r * out_stride + n];
        match residual {
            Some(res) => row
                .iter_mut()
                .zip(bias.iter().zip(&res[r * n..(r + 1) * n]))
                .for_each(|(o, (b, x))| *o = b + x),
            None => row.copy_from_slice(bias),
        }
    }
    matmul(
        Dims { m: rows, n, k: inp },
        Dst {
            data: out,
            stride: out_stride,
            accumulate: true,
        },
        Src::rows(x, inp),
        Src::cols(w, inp),
        true,
    );
}

/// The shape of a matrix product: `[m, k] · [k, n]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// A product's destination: row-major rows `stride` apart in `data`; with `accumulate` the
/// product is added to what is there, otherwise it replaces it.
pub(crate) struct Dst<'a> {
    pub data: &'a mut [f32],
    pub stride: usize,
    pub accumulate: bool,
}

/// A product's operand: element `(i, j)` at `data[i·row + j·col]`.
#[derive(Clone, Copy)]
pub(crate) struct Src<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

impl<'a> Src<'a> {
    /// A row-major matrix with rows `stride` apart.
    pub fn rows(data: &'a [f32], stride: usize) -> Src<'a> {
        Src {
            data,
            row: stride,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix with rows `stride` apart (read in place).
    pub fn cols(data: &'a [f32], stride: usize) -> Src<'a> {
        Src {
            data,
            row: 1,
            col: stride,
        }
    }

    /// Whether `rows × cols` elements fit in the slice.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row + (cols - 1) * self.col < self.data.len()
    }
}

/// `dst (+)= lhs·rhs` through `gemm`, with every operand's extent checked against its slice
/// (a failed check is a bug in the caller and panics). On several threads when `parallel` and
/// the product is large enough to pay for the hand-off.
pub(crate) fn matmul(dims: Dims, dst: Dst<'_>, lhs: Src<'_>, rhs: Src<'_>, parallel: bool) {
    let Dims { m, n, k } = dims;
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst.stride + n <= dst.data.len() && (m == 1 || dst.stride >= n),
        "matmul: destination too small for {dims:?}"
    );
    assert!(
        lhs.fits(m, k) && rhs.fits(k, n),
        "matmul: operand too small for {dims:?}"
    );
    if k == 0 {
        if !dst.accumulate {
            for r in 0..m {
                dst.data[r * dst.stride..r * dst.stride + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if parallel && threads() > 1 && m * n * k >= PARALLEL_WORK * 16 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element the product reads or writes inside its
    // slice; `dst` is borrowed mutably, so nothing else reads or writes it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.stride as isize,
            dst.accumulate,
            lhs.data.as_ptr(),
            lhs.col as isize,
            lhs.row as isize,
            rhs.data.as_ptr(),
            rhs.col as isize,
            rhs.row as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `acc[j] += Σ_r g[r·stride + j]` for `j < acc.len()`, rows `0..rows`: a bias gradient.
pub(crate) fn add_column_sums(g: &[f32], rows: usize, stride: usize, acc: &mut [f32]) {
    let n = acc.len();
    for r in 0..rows {
        acc.iter_mut()
            .zip(&g[r * stride..r * stride + n])
            .for_each(|(a, v)| *a += v);
    }
}

/// Splits `data` into consecutive chunks of the given sizes (the rest is dropped).
pub(crate) fn split_sizes(
    mut data: &mut [f32],
    sizes: impl IntoIterator<Item = usize>,
) -> Vec<&mut [f32]> {
    let mut chunks = Vec::new();
    for size in sizes {
        let (chunk, rest) = std::mem::take(&mut data).split_at_mut(size);
        chunks.push(chunk);
        data = rest;
    }
    chunks
}

/// The shape of multi-head self-attention on packed tokens: width `h`, `heads` heads of width
/// `d = h / heads`, scores scaled by `scale = 1/√d` (Vaswani et al. 2017, eq. 1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub h: usize,
    pub heads: usize,
    pub d: usize,
    pub scale: f32,
}

/// Self-attention of one input's `n` tokens: `qkv` is `[n, 3h]` (query, key and value column
/// blocks), and `ctx` (`[n, h]`) receives `softmax(scale·q·kᵀ)·v` head by head (head `j` in
/// columns `j·d .. (j+1)·d`; every element written). `probs` receives the probabilities: with
/// room for `heads·n·n` values each head keeps its own `[n, n]` block (for the backward pass),
/// otherwise it is one `[n, n]` scratch block reused by every head. Queries, keys and values are
/// read in place through strides, no transposed copies.
pub(crate) fn attend(qkv: &[f32], ctx: &mut [f32], probs: &mut [f32], n: usize, shape: Heads) {
    let Heads { h, heads, d, scale } = shape;
    let keep = probs.len() >= heads * n * n;
    for j in 0..heads {
        let at = if keep { j * n * n } else { 0 };
        let p = &mut probs[at..at + n * n];
        matmul(
            Dims { m: n, n, k: d },
            Dst {
                data: p,
                stride: n,
                accumulate: false,
            },
            Src::rows(&qkv[j * d..], 3 * h),
            Src::cols(&qkv[h + j * d..], 3 * h),
            false,
        );
        for row in p.chunks_mut(n) {
            softmax_row(row, scale, n);
        }
        matmul(
            Dims { m: n, n: d, k: n },
            Dst {
                data: &mut ctx[j * d..],
                stride: h,
                accumulate: false,
            },
            Src::rows(p, n),
            Src::rows(&qkv[2 * h + j * d..], 3 * h),
            false,
        );
    }
}

/// The backward pass of [`attend`] for one input: from `qkv`, the kept probabilities `probs`
/// (`heads·n·n`) and the gradient of the context `dctx` (`[n, h]`), writes the gradients of the
/// query, key and value blocks into `dqkv` (`[n, 3h]`, every element written). `scratch` holds
/// `n·n` values. Per head, with `P = softmax(scale·S)`, `S = q·kᵀ`, `ctx = P·v`:
/// `dP = dctx·vᵀ`, `dv = Pᵀ·dctx`, `dS = scale·P∘(dP − rowsum(P∘dP))`, `dq = dS·k`, `dk = dSᵀ·q`.
pub(crate) fn attend_backward(
    qkv: &[f32],
    probs: &[f32],
    dctx: &[f32],
    dqkv: &mut [f32],
    scratch: &mut [f32],
    n: usize,
    shape: Heads,
) {
    let Heads { h, heads, d, scale } = shape;
    let ds = &mut scratch[..n * n];
    for j in 0..heads {
        let p = &probs[j * n * n..(j + 1) * n * n];
        matmul(
            Dims { m: n, n, k: d },
            Dst {
                data: ds,
                stride: n,
                accumulate: false,
            },
            Src::rows(&dctx[j * d..], h),
            Src::cols(&qkv[2 * h + j * d..], 3 * h),
            false,
        );
        for (g, p) in ds.chunks_mut(n).zip(p.chunks(n)) {
            softmax_backward_row(p, g, scale);
        }
        fn dst(data: &mut [f32], stride: usize) -> Dst<'_> {
            Dst {
                data,
                stride,
                accumulate: false,
            }
        }
        let dims = Dims { m: n, n: d, k: n };
        matmul(
            dims,
            dst(&mut dqkv[2 * h + j * d..], 3 * h),
            Src::cols(p, n),
            Src::rows(&dctx[j * d..], h),
            false,
        );
        matmul(
            dims,
            dst(&mut dqkv[j * d..], 3 * h),
            Src::rows(ds, n),
            Src::rows(&qkv[h + j * d..], 3 * h),
            false,
        );
        matmul(
            dims,
            dst(&mut dqkv[h + j * d..], 3 * h),
            Src::cols(ds, n),
            Src::rows(&qkv[j * d..], 3 * h),
            false,
        );
    }
}

/// `x·Wᵀ + b` as one bias-fused product, with its backward: `dx = g·W`, `dW = gᵀ·x`,
/// `db = Σ_rows g`. Inputs `x` `[rows, in]`, `W` `[out, in]`, `b` `[out]`. Compared with
/// candle's `matmul(x, Wᵀ)` + `broadcast_add(b)` it saves the bias pass and, in the backward, the
/// strided accumulation of the transposed weight gradient.
pub(crate) struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "rewardkit-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, self.name())?;
        let w = contiguous(s2, l2, self.name())?;
        let b = contiguous(s3, l3, self.name())?;
        let (out, inp) = (b.len(), *l1.shape().dims().last().unwrap_or(&1));
        if w.len() != out * inp || x.len() % inp.max(1) != 0 {
            return Err(candle_core::Error::Msg(format!(
                "{}: x {:?}, W {:?}, b {:?} do not fit",
                self.name(),
                l1.shape(),
                l2.shape(),
                l3.shape()
            )));
        }
        let rows = x.len() / inp.max(1);
        let mut y = vec![0.0f32; rows * out];
        linear(x, rows, inp, w, b, &mut y);
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.matmul(w)?;
        let dw = grad.t()?.matmul(&x.detach())?;
        let db = grad.sum(0)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// LayerNorm's statistics of one row: the mean and `1/√(var + ε)` (population variance).
#[inline]
fn layer_norm_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// One row of LayerNorm in place: `(x − mean)/√(var + ε)·γ + β`, population variance.
#[inline]
pub(crate) fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let (mean, rstd) = layer_norm_stats(row, eps);
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * rstd * g + b;
    }
}

/// LayerNorm's input gradient for one row: `dx = σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`, from
/// the row's input `x` (before normalisation) and the output gradient `g`.
#[inline]
pub(crate) fn layer_norm_backward_row(
    x: &[f32],
    gamma: &[f32],
    g: &[f32],
    eps: f32,
    dx: &mut [f32],
) {
    let n = x.len() as f32;
    let (mean, rstd) = layer_norm_stats(x, eps);
    let (mut mean_gy, mut mean_gyx) = (0.0f32, 0.0f32);
    for ((xv, gv), gm) in x.iter().zip(g).zip(gamma) {
        let gy = gv * gm;
        mean_gy += gy;
        mean_gyx += gy * (xv - mean) * rstd;
    }
    mean_gy /= n;
    mean_gyx /= n;
    for (((d, xv), gv), gm) in dx.iter_mut().zip(x).zip(g).zip(gamma) {
        let xhat = (xv - mean) * rstd;
        *d = rstd * (gv * gm - mean_gy - xhat * mean_gyx);
    }
}

/// LayerNorm's parameter gradients summed over rows: `dγ += Σ g·x̂`, `dβ += Σ g`, for inputs `x`
/// and output gradients `g` (both `[rows, h]`, `h = dgamma.len()`), rows in order.
pub(crate) fn layer_norm_param_grads(
    x: &[f32],
    g: &[f32],
    eps: f32,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let h = dgamma.len();
    for (x, g) in x.chunks(h).zip(g.chunks(h)) {
        let (mean, rstd) = layer_norm_stats(x, eps);
        for j in 0..h {
            dgamma[j] += g[j] * (x[j] - mean) * rstd;
            dbeta[j] += g[j];
        }
    }
}

/// Softmax of one row in place, `scale` applied to the scores first; only the first `valid`
/// entries take part (the rest become 0). With no valid entry every entry takes part, as an
/// additive −∞-like mask on all of them would give.
#[inline]
pub(crate) fn softmax_row(row: &mut [f32], scale: f32, valid: usize) {
    let valid = if valid == 0 { row.len() } else { valid };
    let (live, dead) = row.split_at_mut(valid);
    let max = live.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in live.iter_mut() {
        *v = ((*v - max) * scale).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|v| *v *= inv);
    dead.iter_mut().for_each(|v| *v = 0.0);
}

/// The softmax backward of one row in place: `g ← scale·p·(g − Σ p·g)` for probabilities `p` =
/// softmax(scale·s) and the output gradient `g`; the result is the gradient of the scores `s`.
#[inline]
pub(crate) fn softmax_backward_row(p: &[f32], g: &mut [f32], scale: f32) {
    let dot: f32 = p.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
    for (gv, pv) in g.iter_mut().zip(p) {
        *gv = scale * pv * (*gv - dot);
    }
}

/// `erf` in `f32`: a rational approximation on [−4, 4] (the one Eigen and PyTorch vectorise),
/// max error about 1e-7, branch-free so that loops over it vectorise (plain multiply–adds:
/// `mul_add` without the `fma` target feature is a library call).
#[inline]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_5e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_5e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_2e-3;
    q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// GELU with the exact (erf) form: `x·Φ(x)`.
#[inline]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `d/dx gelu(x) = Φ(x) + x·φ(x)`.
#[inline]
pub(crate) fn gelu_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * (-0.5 * x * x).exp()
}

fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(candle_core::Error::Msg(format!(
            "{op}: expected a contiguous f32 tensor"
        ))),
    }
}

/// Fused LayerNorm over the last dimension: inputs `x`, `γ`, `β`.
pub(crate) struct LayerNormOp {
    pub eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "rewardkit-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, self.name())?;
        let gamma = contiguous(s2, l2, self.name())?;
        let beta = contiguous(s3, l3, self.name())?;
        let h = gamma.len();
        let mut out = x.to_vec();
        for_rows(&mut out, h, 8, |_, row| {
            layer_norm_row(row, gamma, beta, self.eps)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.elem_count();
        let rows = x.elem_count() / h;
        let packed = x.contiguous()?.apply_op3_no_bwd(
            &gamma.contiguous()?,
            &grad.contiguous()?,
            &LayerNormBackward { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, rows, 1)?.reshape(h)?;
        let dbeta = packed.narrow(0, rows + 1, 1)?.reshape(h)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// LayerNorm's backward in one pass: `[rows + 2, h]` = `dx` rows, then `dγ`, then `dβ`.
struct LayerNormBackward {
    eps: f32,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "rewardkit-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, self.name())?;
        let gamma = contiguous(s2, l2, self.name())?;
        let grad = contiguous(s3, l3, self.name())?;
        let h = gamma.len();
        let rows = x.len() / h;
        let mut out = vec![0.0f32; (rows + 2) * h];
        let (dx, sums) = out.split_at_mut(rows * h);
        for_rows(dx, h, 12, |r, dx| {
            let rows = r * h..(r + 1) * h;
            layer_norm_backward_row(&x[rows.clone()], gamma, &grad[rows], self.eps, dx)
        });
        let (dgamma, dbeta) = sums.split_at_mut(h);
        layer_norm_param_grads(x, grad, self.eps, dgamma, dbeta);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, h))))
    }
}

/// `softmax(scale·s)` over the last dimension with key padding masked: inputs the scores
/// `[batch, heads, q, k]` and the mask `[batch, k]` (1 = token, 0 = padding).
pub(crate) struct MaskedSoftmaxOp {
    pub scale: f32,
}

impl CustomOp2 for MaskedSoftmaxOp {
    fn name(&self) -> &'static str {
        "rewardkit-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = contiguous(s1, l1, self.name())?;
        let mask = contiguous(s2, l2, self.name())?;
        let dims = l1.shape().dims();
        let (b, k) = (dims[0], dims[dims.len() - 1]);
        if mask.len() != b * k {
            return Err(candle_core::Error::Msg(format!(
                "{}: mask of {} values for {b} rows of {k} keys",
                self.name(),
                mask.len()
            )));
        }
        // Padding is at the end of each row, so the valid keys are a prefix.
        let valid: Vec<usize> = mask
            .chunks(k)
            .map(|m| m.iter().filter(|&&v| v > 0.5).count())
            .collect();
        let per_batch = scores.len() / b;
        let mut out = scores.to_vec();
        for_rows(&mut out, k, 6, |r, row| {
            softmax_row(row, self.scale, valid[r * k / per_batch])
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        probs: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ds = probs
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward { scale: self.scale })?;
        Ok((Some(ds), None))
    }
}

/// Softmax backward: `scale·p·(g − Σ p·g)` per row; inputs `p` and `g`.
struct SoftmaxBackward {
    scale: f32,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "rewardkit-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = contiguous(s1, l1, self.name())?;
        let g = contiguous(s2, l2, self.name())?;
        let k = *l1.shape().dims().last().unwrap_or(&1);
        let mut out = vec![0.0f32; p.len()];
        for_rows(&mut out, k, 4, |r, row| {
            row.copy_from_slice(&g[r * k..(r + 1) * k]);
            softmax_backward_row(&p[r * k..(r + 1) * k], row, self.scale);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU (erf form) as one pass, with its backward.
pub(crate) struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "rewardkit-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let mut out = x.to_vec();
        let width = *l.shape().dims().last().unwrap_or(&1);
        for_rows(&mut out, width, 16, |_, row| {
            row.iter_mut().for_each(|v| *v = gelu(*v))
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            x.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &GeluBackward)?,
        ))
    }
}

/// `g·gelu'(x)`; inputs `x` and `g`.
struct GeluBackward;

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "rewardkit-gelu-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, self.name())?;
        let g = contiguous(s2, l2, self.name())?;
        let width = *l1.shape().dims().last().unwrap_or(&1);
        let mut out = g.to_vec();
        for_rows(&mut out, width, 20, |r, row| {
            let x = &x[r * width..(r + 1) * width];
            row.iter_mut()
                .zip(x)
                .for_each(|(o, &xv)| *o *= gelu_grad(xv));
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        crate::encoder::testing::seeded_tensor(&mut { seed }, shape, 2.0, 0.0)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn check(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
        let d = max_diff(a, b);
        assert!(d <= tol, "{what}: max difference {d} > {tol}");
    }

    #[test]
    fn erf_matches_f64_erf() {
        let mut worst = 0.0f64;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let exact = candle_core::cpu::erf::erf_f64(x as f64);
            worst = worst.max((erf(x) as f64 - exact).abs());
        }
        assert!(worst < 1e-6, "worst erf error {worst}");
    }

    #[test]
    fn layer_norm_matches_the_composed_one_in_value_and_gradient() {
        for (shape, seed) in [(vec![3, 5, 8], 1), (vec![2, 1, 384], 2), (vec![70, 384], 3)] {
            let h = *shape.last().unwrap();
            let x = Var::from_tensor(&random(&shape, seed)).unwrap();
            let gamma = Var::from_tensor(&random(&[h], seed + 10)).unwrap();
            let beta = Var::from_tensor(&random(&[h], seed + 20)).unwrap();
            let weights = random(&shape, seed + 30);
            let fused = x
                .apply_op3(&gamma, &beta, LayerNormOp { eps: 1e-12 })
                .unwrap();
            let composed = super::super::layer_norm(&x, &gamma, &beta, 1e-12).unwrap();
            check("value", &fused, &composed, 1e-5);
            let g1 = (fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (composed * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, var) in [("x", &x), ("gamma", &gamma), ("beta", &beta)] {
                let (a, b) = (g1.get(var).unwrap(), g2.get(var).unwrap());
                check(
                    name,
                    a,
                    b,
                    1e-3 * max_diff(b, &b.zeros_like().unwrap()).max(1.0),
                );
            }
        }
    }

    #[test]
    fn masked_softmax_matches_the_composed_one_in_value_and_gradient() {
        for (b, heads, q, k, lens, seed) in [
            (2, 3, 4, 4, vec![4, 2], 1u64),
            (3, 2, 5, 5, vec![1, 5, 3], 2),
            (1, 12, 7, 7, vec![7], 3),
        ] {
            let scores = Var::from_tensor(&random(&[b, heads, q, k], seed)).unwrap();
            let mask: Vec<f32> = lens
                .iter()
                .flat_map(|&n| (0..k).map(move |j| if j < n { 1.0 } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (b, k), &Device::Cpu).unwrap();
            let scale = 0.35;
            let fused = scores.apply_op2(&mask, MaskedSoftmaxOp { scale }).unwrap();
            let bias = ((mask.clone() - 1.0).unwrap() * 1e9)
                .unwrap()
                .reshape((b, 1, 1, k))
                .unwrap();
            let s = (scores.as_tensor() * scale as f64)
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let max = s.max_keepdim(D::Minus1).unwrap().detach();
            let e = s.broadcast_sub(&max).unwrap().exp().unwrap();
            let composed = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
            check("value", &fused, &composed, 1e-6);
            let weights = random(&[b, heads, q, k], seed + 5);
            let g1 = (fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (composed * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            check(
                "gradient",
                g1.get(&scores).unwrap(),
                g2.get(&scores).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn gelu_matches_candles_erf_gelu_in_value_and_gradient() {
        for (shape, seed) in [(vec![4, 6], 1u64), (vec![3, 1536], 2)] {
            let x = Var::from_tensor(&random(&shape, seed)).unwrap();
            let fused = x.apply_op1(GeluOp).unwrap();
            let reference = x.gelu_erf().unwrap();
            check("value", &fused, &reference, 1e-6);
            let g1 = fused.sum_all().unwrap().backward().unwrap();
            let g2 = reference.sum_all().unwrap().backward().unwrap();
            check("gradient", g1.get(&x).unwrap(), g2.get(&x).unwrap(), 1e-5);
        }
    }

    #[test]
    fn linear_op_matches_candles_product_in_value_and_gradient() {
        for (rows, inp, out, seed) in [(1, 3, 2, 1u64), (9, 16, 5, 2), (70, 384, 96, 3)] {
            let x = Var::from_tensor(&random(&[rows, inp], seed)).unwrap();
            let w = Var::from_tensor(&random(&[out, inp], seed + 1)).unwrap();
            let b = Var::from_tensor(&random(&[out], seed + 2)).unwrap();
            let fused = x.apply_op3(&w, &b, LinearOp).unwrap();
            let reference = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            check("value", &fused, &reference, 1e-4);
            let weights = random(&[rows, out], seed + 3);
            let g1 = (fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (reference * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, var) in [("x", &x), ("w", &w), ("b", &b)] {
                check(name, g1.get(var).unwrap(), g2.get(var).unwrap(), 1e-3);
            }
        }
    }

    #[test]
    fn linear_matches_a_matrix_product_plus_bias() {
        for (rows, inp, out, seed) in [(1, 3, 2, 1u64), (7, 16, 5, 2), (130, 384, 96, 3)] {
            let x = random(&[rows, inp], seed);
            let w = random(&[out, inp], seed + 1);
            let bias = random(&[out], seed + 2);
            let reference = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let mut got = vec![0.0; rows * out];
            linear(
                &x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                rows,
                inp,
                &w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                &bias.to_vec1::<f32>().unwrap(),
                &mut got,
            );
            let got = Tensor::from_vec(got, (rows, out), &Device::Cpu).unwrap();
            check("linear", &got, &reference, 1e-4);
        }
    }
}
