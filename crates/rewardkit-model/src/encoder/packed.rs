//! The encoder's packed CPU path: inference without an autograd graph, and fine-tuning with a
//! backward pass written here rather than recorded by candle.
//!
//! Tokens are *packed*: the rows of every input are stacked without padding, so the matrix
//! products do no work on padding, and attention runs per input on that input's own tokens,
//! reading the query/key/value blocks of one `[tokens, 3h]` buffer in place through strides.
//! Biases and residual connections ride in the matrix products' initial destinations;
//! LayerNorm, GELU and the softmax are single passes over rows (`kernels.rs`).
//!
//! Why an own backward: recorded in candle's autograd graph, a training step spends a third of
//! its time outside the matrix products — element-wise passes on one thread, a fresh zeroed
//! tensor per operation, padded attention with its transposed copies, gradients accumulated
//! tensor by tensor (`bench/results/model_perf.md`). Here the forward pass keeps what the
//! backward pass needs (each layer's input, the query/key/value projections, the attention
//! probabilities, the sums before each LayerNorm, the feed-forward activations), and the
//! backward pass runs the chain rule layer by layer on plain buffers, adding each weight's
//! gradient straight into the trainer's accumulator with one product (`dW += dYᵀ·X`). The query,
//! key and value projections run as one product over the concatenated `[3h, h]` weight, forward
//! and backward. Every operation is deterministic (fixed row splits, sums in row order), so a
//! seeded run repeats bit for bit. The tests hold the values and every weight's gradient to the
//! composed candle path.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;

use super::kernels::{self, Dims, Dst, Heads, Src};
use super::{EncoderBackbone, Pooling};
use crate::backbone::BackwardPass;
use crate::{ModelError, RewardInput};

// Positions of the weights in `EncoderBackbone::named`, the order `from_tensors` loads them in;
// the trainer's gradient buffers use the same positions.
const WORD: usize = 0;
const POSITION: usize = 1;
const TOKEN_TYPE: usize = 2;
/// γ, then β at the next position (the same for every LayerNorm below).
const EMBEDDING_NORM: usize = 3;
const FIRST_LAYER: usize = 5;
const PER_LAYER: usize = 16;
// Within a layer, from its first position: each weight is followed by its bias.
const QUERY: usize = 0;
const KEY: usize = 2;
const VALUE: usize = 4;
const ATTENTION_OUT: usize = 6;
const ATTENTION_NORM: usize = 8;
const INTERMEDIATE: usize = 10;
const OUTPUT: usize = 12;
const OUTPUT_NORM: usize = 14;

/// Where each input's tokens sit among the packed rows.
struct Pack {
    /// Token ids per input.
    ids: Vec<Vec<u32>>,
    /// Tokens per input; an input without tokens keeps one (id 0) so that every input has a
    /// vector (mean pooling then gives it the zero vector).
    lens: Vec<usize>,
    /// First row of each input.
    offsets: Vec<usize>,
    /// All rows.
    total: usize,
}

impl Pack {
    fn new(ids: Vec<Vec<u32>>) -> Pack {
        let lens: Vec<usize> = ids.iter().map(|r| r.len().max(1)).collect();
        let offsets = lens
            .iter()
            .scan(0, |acc, &n| {
                let at = *acc;
                *acc += n;
                Some(at)
            })
            .collect();
        let total = lens.iter().sum();
        Pack {
            ids,
            lens,
            offsets,
            total,
        }
    }

    /// Whether attention is worth splitting over threads: several inputs and enough work.
    fn parallel(&self, h: usize) -> bool {
        let work: usize = self.lens.iter().map(|&n| n * n * h * 2).sum();
        kernels::threads() > 1 && self.lens.len() > 1 && work >= 1 << 16
    }
}

/// What the backward pass needs from one layer's forward pass (all row-major, `T` = packed
/// tokens). Inference uses the same buffers without keeping them: it sizes only `qkv`, `ctx`,
/// `mid` and `inner` (normalising and activating in place) and reuses them for every layer.
#[derive(Default)]
struct LayerTape {
    /// The layer's input `x`, `[T, h]`.
    input: Vec<f32>,
    /// The query, key and value weights stacked, `[3h, h]` (kept only when taping).
    qkv_weight: Vec<f32>,
    /// `x·W_qkvᵀ + b_qkv`, `[T, 3h]`.
    qkv: Vec<f32>,
    /// Attention probabilities, `heads·n·n` per input (kept only when taping).
    probs: Vec<f32>,
    /// The attention context, `[T, h]`.
    ctx: Vec<f32>,
    /// `ctx·W_aoᵀ + b_ao + x`, before the attention LayerNorm.
    attention_sum: Vec<f32>,
    /// Its LayerNorm, the feed-forward input.
    mid: Vec<f32>,
    /// `mid·W_iᵀ + b_i`, `[T, inter]`.
    inner_pre: Vec<f32>,
    /// `gelu(inner_pre)`.
    inner: Vec<f32>,
    /// `inner·W_oᵀ + b_o + mid`, before the output LayerNorm (whose result is the layer's
    /// output).
    output_sum: Vec<f32>,
}

impl LayerTape {
    /// Sizes the buffers for `total` tokens: all of them when `keep`ing for the backward pass;
    /// otherwise only those inference uses (it normalises and activates in place).
    fn sized(&mut self, total: usize, h: usize, inter: usize, keep: bool) {
        let mut buffers = vec![
            (&mut self.qkv, 3 * h),
            (&mut self.ctx, h),
            (&mut self.mid, h),
            (&mut self.inner, inter),
        ];
        if keep {
            buffers.extend([
                (&mut self.attention_sum, h),
                (&mut self.inner_pre, inter),
                (&mut self.output_sum, h),
            ]);
        }
        for (buffer, width) in buffers {
            buffer.resize(total * width, 0.0);
        }
    }
}

/// A batch's forward pass kept for the encoder's own backward pass (see the module docs).
pub(super) struct Tape<'a> {
    encoder: &'a EncoderBackbone,
    pack: Pack,
    /// Word + position + token-type embeddings, before their LayerNorm.
    embedded: Vec<f32>,
    layers: Vec<LayerTape>,
}

impl EncoderBackbone {
    fn heads(&self) -> Heads {
        let (h, heads) = (self.bert.hidden_size, self.bert.num_attention_heads);
        Heads {
            h,
            heads,
            d: h / heads,
            scale: 1.0 / ((h / heads) as f32).sqrt(),
        }
    }

    /// Runs `f` on every encoder weight as an `f32` slice, in `named` order.
    fn with_weights<R>(
        &self,
        f: impl FnOnce(&[&[f32]]) -> Result<R, ModelError>,
    ) -> Result<R, ModelError> {
        let guards: Vec<_> = self
            .named
            .iter()
            .map(|(_, var)| var.as_tensor().storage_and_layout())
            .collect();
        let mut weights: Vec<&[f32]> = Vec::with_capacity(guards.len());
        for (storage, layout) in &guards {
            let Storage::Cpu(cpu) = &**storage else {
                return Err(ModelError::Tensor(candle_core::Error::Msg(
                    "the packed encoder path runs on the CPU".into(),
                )));
            };
            let data = cpu.as_slice::<f32>()?;
            let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg("encoder weight is not contiguous".into())
            })?;
            weights.push(&data[start..end]);
        }
        f(&weights)
    }

    /// The inference path (no gradients, CPU): pooled vectors `[batch, hidden]`. Numerically the
    /// same function as [`EncoderBackbone::hidden_states`] followed by pooling (the tests
    /// compare them).
    pub(super) fn forward_packed(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        let pack = Pack::new(self.token_rows(inputs)?);
        let (pooled, _) = self.with_weights(|w| Ok(self.run_packed(&pack, w, None)))?;
        Ok(Tensor::from_vec(
            pooled,
            (inputs.len(), self.bert.hidden_size),
            &self.device,
        )?)
    }

    /// The training path on the CPU: pooled vectors (no autograd graph) and the tape of the
    /// forward pass, whose [`BackwardPass::backward`] adds every encoder weight's gradient.
    pub(super) fn forward_taped(
        &self,
        inputs: &[RewardInput],
    ) -> Result<(Tensor, Tape<'_>), ModelError> {
        let pack = Pack::new(self.token_rows(inputs)?);
        let mut layers = Vec::with_capacity(self.layers.len());
        let (pooled, embedded) =
            self.with_weights(|w| Ok(self.run_packed(&pack, w, Some(&mut layers))))?;
        let pooled = Tensor::from_vec(pooled, (inputs.len(), self.bert.hidden_size), &self.device)?;
        Ok((
            pooled,
            Tape {
                encoder: self,
                pack,
                embedded,
                layers,
            },
        ))
    }

    /// The forward pass on packed tokens: pooled vectors and the embeddings before their
    /// LayerNorm. With a `tape`, every layer's [`LayerTape`] is pushed onto it; without, one set
    /// of buffers serves every layer.
    fn run_packed(
        &self,
        pack: &Pack,
        w: &[&[f32]],
        mut tape: Option<&mut Vec<LayerTape>>,
    ) -> (Vec<f32>, Vec<f32>) {
        let shape = self.heads();
        let (h, inter) = (shape.h, self.bert.intermediate_size);
        let eps = self.bert.layer_norm_eps as f32;
        let t = pack.total;
        let embedded = self.embed(pack, w);
        let mut x = embedded.clone();
        layer_norm_rows(&mut x, w, EMBEDDING_NORM, eps);
        let mut scratch = LayerTape::default();
        for l in 0..self.layers.len() {
            let base = FIRST_LAYER + PER_LAYER * l;
            let p = |at: usize| w[base + at];
            let mut a = match tape {
                Some(_) => LayerTape::default(),
                None => std::mem::take(&mut scratch),
            };
            let keep = tape.is_some();
            a.sized(t, h, inter, keep);
            a.input = x;
            if keep {
                a.qkv_weight = [p(QUERY), p(KEY), p(VALUE)].concat();
                let bias = [p(QUERY + 1), p(KEY + 1), p(VALUE + 1)].concat();
                kernels::linear(&a.input, t, h, &a.qkv_weight, &bias, &mut a.qkv);
                a.probs = vec![0.0; pack.lens.iter().map(|n| shape.heads * n * n).sum()];
                attention(&a.qkv, &mut a.ctx, Some(&mut a.probs), pack, shape);
            } else {
                // Inference: three products into the column blocks (stacking the weights would
                // copy them on every call).
                for (j, at) in [QUERY, KEY, VALUE].into_iter().enumerate() {
                    let out = &mut a.qkv[j * h..];
                    kernels::linear_into(&a.input, t, h, p(at), p(at + 1), None, out, 3 * h);
                }
                attention(&a.qkv, &mut a.ctx, None, pack, shape);
            }
            // Inference normalises and activates in place; the tape keeps the inputs of both.
            let attention_sum = if keep {
                &mut a.attention_sum
            } else {
                &mut a.mid
            };
            let (ao_w, ao_b) = (p(ATTENTION_OUT), p(ATTENTION_OUT + 1));
            kernels::linear_into(&a.ctx, t, h, ao_w, ao_b, Some(&a.input), attention_sum, h);
            if keep {
                a.mid.copy_from_slice(&a.attention_sum);
            }
            layer_norm_rows(&mut a.mid, w, base + ATTENTION_NORM, eps);
            let inner_pre = if keep { &mut a.inner_pre } else { &mut a.inner };
            kernels::linear(
                &a.mid,
                t,
                h,
                p(INTERMEDIATE),
                p(INTERMEDIATE + 1),
                inner_pre,
            );
            if keep {
                a.inner.copy_from_slice(&a.inner_pre);
            }
            kernels::for_rows(&mut a.inner, inter, 16, |_, row| {
                row.iter_mut().for_each(|v| *v = kernels::gelu(*v))
            });
            let (o_w, o_b) = (p(OUTPUT), p(OUTPUT + 1));
            x = if keep {
                kernels::linear_into(
                    &a.inner,
                    t,
                    inter,
                    o_w,
                    o_b,
                    Some(&a.mid),
                    &mut a.output_sum,
                    h,
                );
                a.output_sum.clone()
            } else {
                // The layer's input is no longer needed: its buffer takes the output.
                let mut next = std::mem::take(&mut a.input);
                kernels::linear_into(&a.inner, t, inter, o_w, o_b, Some(&a.mid), &mut next, h);
                next
            };
            layer_norm_rows(&mut x, w, base + OUTPUT_NORM, eps);
            match tape.as_mut() {
                Some(tape) => tape.push(a),
                None => scratch = a,
            }
        }
        (self.pool_packed(&x, pack), embedded)
    }

    /// Word + position + token-type (type 0) embeddings of the packed tokens.
    fn embed(&self, pack: &Pack, w: &[&[f32]]) -> Vec<f32> {
        let h = self.bert.hidden_size;
        let (word, position, token_type) = (w[WORD], w[POSITION], w[TOKEN_TYPE]);
        let mut x = vec![0.0f32; pack.total * h];
        for (s, ids) in pack.ids.iter().enumerate() {
            for p in 0..pack.lens[s] {
                let id = ids.get(p).copied().unwrap_or(0) as usize;
                let out = &mut x[(pack.offsets[s] + p) * h..(pack.offsets[s] + p + 1) * h];
                let (wv, pv) = (&word[id * h..(id + 1) * h], &position[p * h..(p + 1) * h]);
                for j in 0..h {
                    out[j] = wv[j] + pv[j] + token_type[j];
                }
            }
        }
        x
    }

    /// Pools the packed token vectors into one vector per input.
    fn pool_packed(&self, x: &[f32], pack: &Pack) -> Vec<f32> {
        let h = self.bert.hidden_size;
        let mut pooled = vec![0.0f32; pack.lens.len() * h];
        for (s, out) in pooled.chunks_mut(h).enumerate() {
            if pack.ids[s].is_empty() && self.config.pooling == Pooling::Mean {
                continue; // no tokens: the zero vector, as the masked mean gives
            }
            let tokens = &x[pack.offsets[s] * h..(pack.offsets[s] + pack.lens[s]) * h];
            match self.config.pooling {
                Pooling::Cls => out.copy_from_slice(&tokens[..h]),
                Pooling::Mean => {
                    for token in tokens.chunks(h) {
                        out.iter_mut().zip(token).for_each(|(o, t)| *o += t);
                    }
                    let inv = 1.0 / pack.lens[s] as f32;
                    out.iter_mut().for_each(|o| *o *= inv);
                }
            }
        }
        pooled
    }
}

/// LayerNorm of every row in place, with the γ at position `at` of `w` and the β after it.
fn layer_norm_rows(x: &mut [f32], w: &[&[f32]], at: usize, eps: f32) {
    let (gamma, beta) = (w[at], w[at + 1]);
    kernels::for_rows(x, gamma.len(), 8, |_, row| {
        kernels::layer_norm_row(row, gamma, beta, eps)
    });
}

/// Self-attention of every input ([`kernels::attend`]), the inputs split over the threads.
/// With `probs` (room for `heads·n·n` values per input) the probabilities are kept.
fn attention(qkv: &[f32], ctx: &mut [f32], probs: Option<&mut [f32]>, pack: &Pack, shape: Heads) {
    let h = shape.h;
    let ctx = kernels::split_sizes(ctx, pack.lens.iter().map(|n| n * h));
    let probs: Vec<Option<&mut [f32]>> = match probs {
        Some(probs) => kernels::split_sizes(probs, pack.lens.iter().map(|n| shape.heads * n * n))
            .into_iter()
            .map(Some)
            .collect(),
        None => pack.lens.iter().map(|_| None).collect(),
    };
    let run = |(s, (ctx, probs)): (usize, (&mut [f32], Option<&mut [f32]>))| {
        let (n, at) = (pack.lens[s], pack.offsets[s] * 3 * h);
        let qkv = &qkv[at..at + n * 3 * h];
        match probs {
            Some(probs) => kernels::attend(qkv, ctx, probs, n, shape),
            None => kernels::attend(qkv, ctx, &mut vec![0.0; n * n], n, shape),
        }
    };
    let tasks: Vec<_> = ctx.into_iter().zip(probs).enumerate().collect();
    if pack.parallel(h) {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
}

/// The backward pass of [`attention`]: `dqkv` (`[T, 3h]`, every element written) from the kept
/// `qkv` and `probs` and the context gradient `dctx`.
fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    dctx: &[f32],
    dqkv: &mut [f32],
    pack: &Pack,
    shape: Heads,
) {
    let h = shape.h;
    let dqkv = kernels::split_sizes(dqkv, pack.lens.iter().map(|n| n * 3 * h));
    let prob_starts: Vec<usize> = pack
        .lens
        .iter()
        .scan(0, |acc, &n| {
            let at = *acc;
            *acc += shape.heads * n * n;
            Some(at)
        })
        .collect();
    let run = |(s, dqkv): (usize, &mut [f32])| {
        let (n, row) = (pack.lens[s], pack.offsets[s]);
        let probs = &probs[prob_starts[s]..prob_starts[s] + shape.heads * n * n];
        let qkv = &qkv[row * 3 * h..(row + n) * 3 * h];
        let dctx = &dctx[row * h..(row + n) * h];
        kernels::attend_backward(qkv, probs, dctx, dqkv, &mut vec![0.0; n * n], n, shape);
    };
    if pack.parallel(h) {
        dqkv.into_par_iter().enumerate().for_each(run);
    } else {
        dqkv.into_iter().enumerate().for_each(run);
    }
}

/// `dW += dYᵀ·X` for a linear layer `Y = X·Wᵀ + b` over `rows` rows: `dy` is `[rows, out]` with
/// rows `dy_stride` apart, `x` is `[rows, inp]`, `dw` is `[out, inp]`; and `db += Σ_rows dY`.
fn linear_param_grads(
    dy: &[f32],
    dy_stride: usize,
    x: &[f32],
    rows: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (out, inp) = (db.len(), dw.len() / db.len().max(1));
    kernels::matmul(
        Dims {
            m: out,
            n: inp,
            k: rows,
        },
        Dst {
            data: dw,
            stride: inp,
            accumulate: true,
        },
        Src::cols(dy, dy_stride),
        Src::rows(x, inp),
        true,
    );
    kernels::add_column_sums(dy, rows, dy_stride, db);
}

/// Two distinct gradient buffers at once (`i < j`).
fn pair(grads: &mut [Vec<f32>], i: usize, j: usize) -> (&mut Vec<f32>, &mut Vec<f32>) {
    let (a, b) = grads.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

/// LayerNorm backward over rows: `dx` from the inputs `x` (before normalisation) and the output
/// gradient `g`, and the γ/β gradients (positions `at`, `at + 1`) added into `grads`.
#[allow(clippy::too_many_arguments)]
fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    dx: &mut [f32],
    w: &[&[f32]],
    grads: &mut [Vec<f32>],
    at: usize,
    eps: f32,
) {
    let gamma = w[at];
    let h = gamma.len();
    kernels::for_rows(dx, h, 12, |r, dx| {
        let rows = r * h..(r + 1) * h;
        kernels::layer_norm_backward_row(&x[rows.clone()], gamma, &g[rows], eps, dx)
    });
    let (dgamma, dbeta) = pair(grads, at, at + 1);
    kernels::layer_norm_param_grads(x, g, eps, dgamma, dbeta);
}

impl Tape<'_> {
    /// The chain rule through the kept forward pass (see the module docs), adding every
    /// weight's gradient into `grads` (positions as in `named`).
    fn backward_with(&self, w: &[&[f32]], dpooled: &[f32], grads: &mut [Vec<f32>]) {
        let encoder = self.encoder;
        let shape = encoder.heads();
        let (h, inter) = (shape.h, encoder.bert.intermediate_size);
        let eps = encoder.bert.layer_norm_eps as f32;
        let (pack, t) = (&self.pack, self.pack.total);

        // Pooling.
        let mut dx = vec![0.0f32; t * h];
        for (s, g) in dpooled.chunks(h).enumerate() {
            let first = pack.offsets[s] * h;
            match encoder.config.pooling {
                Pooling::Cls => dx[first..first + h].copy_from_slice(g),
                Pooling::Mean if pack.ids[s].is_empty() => {}
                Pooling::Mean => {
                    let inv = 1.0 / pack.lens[s] as f32;
                    for row in dx[first..first + pack.lens[s] * h].chunks_mut(h) {
                        row.iter_mut().zip(g).for_each(|(d, g)| *d = g * inv);
                    }
                }
            }
        }

        let mut d_sum = vec![0.0f32; t * h];
        let mut d_mid = vec![0.0f32; t * h];
        let mut d_inner = vec![0.0f32; t * inter];
        let mut d_qkv = vec![0.0f32; t * 3 * h];
        for (l, a) in self.layers.iter().enumerate().rev() {
            let base = FIRST_LAYER + PER_LAYER * l;
            // Output LayerNorm, then output = inner·W_oᵀ + b_o + mid.
            layer_norm_backward(
                &a.output_sum,
                &dx,
                &mut d_sum,
                w,
                grads,
                base + OUTPUT_NORM,
                eps,
            );
            let (dw, db) = pair(grads, base + OUTPUT, base + OUTPUT + 1);
            linear_param_grads(&d_sum, h, &a.inner, t, dw, db);
            input_grad(&d_sum, h, w[base + OUTPUT], inter, &mut d_inner, false);
            kernels::for_rows(&mut d_inner, inter, 20, |r, row| {
                let pre = &a.inner_pre[r * inter..(r + 1) * inter];
                row.iter_mut()
                    .zip(pre)
                    .for_each(|(g, &x)| *g *= kernels::gelu_grad(x));
            });
            // inner_pre = mid·W_iᵀ + b_i; mid also feeds the output's residual connection.
            let (dw, db) = pair(grads, base + INTERMEDIATE, base + INTERMEDIATE + 1);
            linear_param_grads(&d_inner, inter, &a.mid, t, dw, db);
            d_mid.copy_from_slice(&d_sum);
            input_grad(&d_inner, inter, w[base + INTERMEDIATE], h, &mut d_mid, true);
            // Attention LayerNorm, then attention_sum = ctx·W_aoᵀ + b_ao + input.
            layer_norm_backward(
                &a.attention_sum,
                &d_mid,
                &mut d_sum,
                w,
                grads,
                base + ATTENTION_NORM,
                eps,
            );
            let (dw, db) = pair(grads, base + ATTENTION_OUT, base + ATTENTION_OUT + 1);
            linear_param_grads(&d_sum, h, &a.ctx, t, dw, db);
            let d_ctx = &mut d_mid;
            input_grad(&d_sum, h, w[base + ATTENTION_OUT], h, d_ctx, false);
            attention_backward(&a.qkv, &a.probs, d_ctx, &mut d_qkv, pack, shape);
            // qkv = input·W_qkvᵀ + b_qkv; the input also feeds the attention's residual.
            for (j, at) in [QUERY, KEY, VALUE].into_iter().enumerate() {
                let (dw, db) = pair(grads, base + at, base + at + 1);
                linear_param_grads(&d_qkv[j * h..], 3 * h, &a.input, t, dw, db);
            }
            std::mem::swap(&mut dx, &mut d_sum);
            input_grad(&d_qkv, 3 * h, &a.qkv_weight, h, &mut dx, true);
        }

        // Embedding LayerNorm, then the embedding rows each token used.
        layer_norm_backward(
            &self.embedded,
            &dx,
            &mut d_sum,
            w,
            grads,
            EMBEDDING_NORM,
            eps,
        );
        for (s, ids) in pack.ids.iter().enumerate() {
            for p in 0..pack.lens[s] {
                let id = ids.get(p).copied().unwrap_or(0) as usize;
                let g = &d_sum[(pack.offsets[s] + p) * h..(pack.offsets[s] + p + 1) * h];
                for (at, row) in [(WORD, id), (POSITION, p), (TOKEN_TYPE, 0)] {
                    grads[at][row * h..(row + 1) * h]
                        .iter_mut()
                        .zip(g)
                        .for_each(|(a, g)| *a += g);
                }
            }
        }
    }
}

/// `dx (+)= dY·W` for a linear layer with weight `w` (`[out, inp]`): `dy` is `[rows, out]`
/// (`out = dy_stride`), `dx` is `[rows, inp]`.
fn input_grad(dy: &[f32], out: usize, w: &[f32], inp: usize, dx: &mut [f32], accumulate: bool) {
    let rows = dx.len() / inp.max(1);
    kernels::matmul(
        Dims {
            m: rows,
            n: inp,
            k: out,
        },
        Dst {
            data: dx,
            stride: inp,
            accumulate,
        },
        Src::rows(dy, out),
        Src::rows(w, inp),
        true,
    );
}

impl BackwardPass for Tape<'_> {
    fn backward(self: Box<Self>, grad: &[f32], grads: &mut [Vec<f32>]) -> Result<(), ModelError> {
        let encoder = self.encoder;
        let h = encoder.bert.hidden_size;
        if grad.len() != self.pack.lens.len() * h {
            return Err(ModelError::Tensor(candle_core::Error::Msg(format!(
                "encoder backward: {} gradient values for {} vectors of width {h}",
                grad.len(),
                self.pack.lens.len()
            ))));
        }
        encoder.with_weights(|w| {
            let fits =
                grads.len() == w.len() && grads.iter().zip(w).all(|(g, w)| g.len() == w.len());
            if !fits {
                return Err(ModelError::Tensor(candle_core::Error::Msg(
                    "encoder backward: gradient buffers do not match the encoder's weights".into(),
                )));
            }
            self.backward_with(w, grad, grads);
            Ok(())
        })
    }
}
