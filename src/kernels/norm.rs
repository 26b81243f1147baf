//! Batch normalisation over the last (channel) axis of NHWC / (N, C) data.
//!
//! Statistics are per channel over all `rows = N·H·W` positions, accumulated
//! in f64 over a fixed number of row blocks (parallel, each block in memory
//! order) summed in block order, so they are deterministic. Running statistics follow the Keras convention
//! `running = momentum·running + (1 − momentum)·batch` with the *unbiased*
//! batch variance (as PyTorch stores it); normalisation in training uses the
//! biased variance.

use super::ELEM_CHUNK;
use super::isa::{active, with_set};
use rayon::prelude::*;

/// Channels per reduction task (one 64-byte line of f32).
const CH_CHUNK: usize = 16;

/// Per-channel sums `f(x_row, ch)` over rows, in f64, written to `out[ch]` as f32 via `fin`.
fn channel_reduce(
    c: usize,
    rows: usize,
    out: &mut [f32],
    f: impl Fn(usize, usize, &mut [f64]) + Sync,
    fin: impl Fn(usize, f64) -> f32 + Sync,
) {
    out.par_chunks_mut(CH_CHUNK).enumerate().for_each(|(k, o)| {
        let c0 = k * CH_CHUNK;
        let mut acc = [0f64; CH_CHUNK];
        for r in 0..rows {
            f(r * c + c0, c0, &mut acc[..o.len()]);
        }
        for (j, v) in o.iter_mut().enumerate() {
            *v = fin(c0 + j, acc[j]);
        }
    });
}

/// Row blocks of a per-channel reduction: a fixed number (not the thread
/// count), so the sums are the same whatever the pool size.
const ROW_BLOCKS: usize = 8;
/// Channels one pass of [`channel_reduce2`] reduces (its partials live on the stack).
const CH_PASS: usize = 256;
/// Rows summed in f32 before each flush into the f64 block partials: the
/// f32 sums stay within a few ulp (≤ 32 terms), and the f64 work (half
/// the vector width, conversions) is a small part of the pass.
const F32_RUN: usize = 32;

/// Two per-channel sums over the rows (`f(r, c0, a, b)` adds row `r`'s
/// channels `c0 .. c0 + a.len()` into both accumulators); `fin(ch, a, b)`
/// gives the outputs. Parallel over [`ROW_BLOCKS`] contiguous blocks of
/// rows, each walking its rows in memory order in runs of [`F32_RUN`]
/// summed in f32 (vectorised across channels at the kernel set's width)
/// and flushed into f64; the block partials are summed in block order:
/// deterministic, and every task streams its own part of the tensor
/// instead of every task striding over all of it.
fn channel_reduce2(
    c: usize,
    rows: usize,
    out_a: &mut [f32],
    out_b: &mut [f32],
    f: impl Fn(usize, usize, &mut [f32], &mut [f32]) + Sync,
    fin: impl Fn(usize, f64, f64) -> (f32, f32) + Sync,
) {
    let set = active();
    let mut parts = [[0f64; 2 * CH_PASS]; ROW_BLOCKS];
    for c0 in (0..c).step_by(CH_PASS) {
        let w = CH_PASS.min(c - c0);
        parts.par_iter_mut().enumerate().for_each(|(blk, p)| {
            with_set(set, || {
                let (pa, pb) = p.split_at_mut(CH_PASS);
                let (pa, pb) = (&mut pa[..w], &mut pb[..w]);
                pa.fill(0.0);
                pb.fill(0.0);
                let (mut ra, mut rb) = ([0f32; CH_PASS], [0f32; CH_PASS]);
                let (ra, rb) = (&mut ra[..w], &mut rb[..w]);
                let (lo, hi) = (blk * rows / ROW_BLOCKS, (blk + 1) * rows / ROW_BLOCKS);
                for run in (lo..hi).step_by(F32_RUN) {
                    ra.fill(0.0);
                    rb.fill(0.0);
                    for r in run..(run + F32_RUN).min(hi) {
                        f(r, c0, ra, rb);
                    }
                    for (s, v) in pa.iter_mut().zip(ra.iter()) {
                        *s += *v as f64;
                    }
                    for (s, v) in pb.iter_mut().zip(rb.iter()) {
                        *s += *v as f64;
                    }
                }
            })
        });
        for j in 0..w {
            let (mut a, mut b) = (0f64, 0f64);
            for p in &parts {
                a += p[j];
                b += p[CH_PASS + j];
            }
            (out_a[c0 + j], out_b[c0 + j]) = fin(c0 + j, a, b);
        }
    }
}

/// Training-mode forward. `x`, `y`: rows × `c`. Writes the batch mean and
/// `1/sqrt(var + eps)` into `save_mean`/`save_invstd` (needed by
/// [`batch_norm_train_backward`]) and updates the running statistics.
/// `relu` applies a ReLU to `y` in the same pass.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_forward(
    x: &[f32],
    y: &mut [f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    momentum: f32,
    running_mean: &mut [f32],
    running_var: &mut [f32],
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
    relu: bool,
) {
    assert_eq!(x.len(), y.len(), "batch_norm: lengths");
    assert_eq!(x.len() % c, 0, "batch_norm: channels");
    for s in [
        gamma.len(),
        beta.len(),
        running_mean.len(),
        running_var.len(),
        save_mean.len(),
        save_invstd.len(),
    ] {
        assert_eq!(s, c, "batch_norm: per-channel length");
    }
    let rows = x.len() / c;
    let inv_n = 1.0 / rows as f64;
    // One pass: sums of (x − k) and (x − k)² with the shift k = first row
    // (avoids cancellation when |mean| ≫ std); biased variance goes to
    // save_invstd temporarily.
    let shift = &x[..c];
    channel_reduce2(
        c,
        rows,
        save_mean,
        save_invstd,
        |r, c0, s1, s2| {
            let w = s1.len();
            let (xr, k) = (&x[r * c + c0..][..w], &shift[c0..c0 + w]);
            for (((a, b), &v), &k) in s1.iter_mut().zip(s2.iter_mut()).zip(xr).zip(k) {
                let d = v - k;
                *a += d;
                *b += d * d;
            }
        },
        |ch, s1, s2| {
            let m = s1 * inv_n;
            (
                (shift[ch] as f64 + m) as f32,
                (s2 * inv_n - m * m).max(0.0) as f32,
            )
        },
    );
    let unbias = if rows > 1 {
        rows as f32 / (rows - 1) as f32
    } else {
        1.0
    };
    for ch in 0..c {
        let var = save_invstd[ch];
        running_mean[ch] = momentum * running_mean[ch] + (1.0 - momentum) * save_mean[ch];
        running_var[ch] = momentum * running_var[ch] + (1.0 - momentum) * var * unbias;
        save_invstd[ch] = 1.0 / (var + eps).sqrt();
    }
    let map = BnAffine {
        mean: save_mean,
        invstd: save_invstd,
        gamma,
        beta,
        relu,
        residual: None,
    };
    affine(x, y, &map);
}

/// The per-channel map of a BatchNorm with fixed statistics:
/// `y = (x − mean)·(invstd·gamma) + beta`, then `max(y, 0)` if `relu`.
/// Applying a following ReLU here (the plan fuses it when the BatchNorm is
/// its only input) saves a full read and write of the activation; and a
/// convolution applies the whole map to each output tile while it is still
/// in cache ([`super::conv::conv2d_forward_bn`]). Every path evaluates the
/// same expression, so fused and unfused results agree bit for bit.
///
/// `residual` (the conv epilogue only) adds the other input of a following
/// two-input Add before the ReLU: a residual block's `relu(bn(conv) + skip)`
/// in one pass. `a + b` is exact-commutative, so this equals the Add kernel.
#[derive(Clone, Copy, Debug)]
pub struct BnAffine<'a> {
    pub mean: &'a [f32],
    pub invstd: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub relu: bool,
    /// Added elementwise (same layout as the output) before the ReLU.
    pub residual: Option<&'a [f32]>,
}

impl BnAffine<'_> {
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    #[inline(always)]
    fn value(&self, ch: usize, v: f32) -> f32 {
        bn_value(
            v,
            self.mean[ch],
            self.invstd[ch],
            self.gamma[ch],
            self.beta[ch],
        )
    }

    #[inline(always)]
    fn finish(&self, y: f32) -> f32 {
        if self.relu { y.max(0.0) } else { y }
    }

    /// `y = map(x)` for rows of `channels()` values (no residual).
    fn apply(&self, x: &[f32], y: &mut [f32]) {
        assert!(self.residual.is_none(), "BnAffine::apply: residual");
        let c = self.channels();
        for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for (ch, (y, x)) in yr.iter_mut().zip(xr).enumerate() {
                *y = self.finish(self.value(ch, *x));
            }
        }
    }

    /// `y = map(y)` for the rows of `channels()` values starting at element
    /// `offset` of the whole output (where the residual is read).
    /// Single-threaded: the caller is already one task of a parallel kernel.
    pub fn apply_inplace(&self, y: &mut [f32], offset: usize) {
        let c = self.channels();
        match self.residual {
            None => {
                for yr in y.chunks_exact_mut(c) {
                    for (ch, y) in yr.iter_mut().enumerate() {
                        *y = self.finish(self.value(ch, *y));
                    }
                }
            }
            Some(res) => {
                let res = &res[offset..offset + y.len()];
                for (yr, rr) in y.chunks_exact_mut(c).zip(res.chunks_exact(c)) {
                    for (ch, (y, r)) in yr.iter_mut().zip(rr).enumerate() {
                        *y = self.finish(self.value(ch, *y) + *r);
                    }
                }
            }
        }
    }
}

/// The BatchNorm of one value, the one expression every path evaluates.
#[inline(always)]
fn bn_value(v: f32, mean: f32, invstd: f32, gamma: f32, beta: f32) -> f32 {
    (v - mean) * (invstd * gamma) + beta
}

/// [`BnAffine::apply`] parallel over rows.
fn affine(x: &[f32], y: &mut [f32], map: &BnAffine) {
    let chunk = (ELEM_CHUNK / map.channels()).max(1) * map.channels();
    let set = active();
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(y, x)| with_set(set, || map.apply(x, y)));
}

/// `out = 1/sqrt(running_var + eps)`, the scale of an evaluation-mode BatchNorm.
pub fn batch_norm_eval_invstd(running_var: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        running_var.len(),
        "batch_norm_eval: scratch length"
    );
    for (s, v) in out.iter_mut().zip(running_var) {
        *s = 1.0 / (*v + eps).sqrt();
    }
}

/// Inference-mode forward with the running statistics; `relu` as in
/// [`batch_norm_train_forward`].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_forward(
    x: &[f32],
    y: &mut [f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    invstd_scratch: &mut [f32],
    relu: bool,
) {
    assert_eq!(x.len(), y.len(), "batch_norm_eval: lengths");
    assert_eq!(invstd_scratch.len(), c, "batch_norm_eval: scratch length");
    batch_norm_eval_invstd(running_var, eps, invstd_scratch);
    let map = BnAffine {
        mean: running_mean,
        invstd: invstd_scratch,
        gamma,
        beta,
        relu,
        residual: None,
    };
    affine(x, y, &map);
}

/// Training-mode backward: `dx` (overwritten), `dgamma`, `dbeta` (overwritten)
/// from the `save_mean`/`save_invstd` of [`batch_norm_train_forward`].
///
/// `relu`: `dy` is the gradient of `relu(bn(x))` (a ReLU fused into this
/// BatchNorm, see `train::plan::Fusion`), masked here by the sign of
/// `bn(x)` recomputed from `x` with the forward's own expression
/// ([`BnAffine`]), so the mask is exactly the ReLU's and its output is never read.
///
/// Two passes over contiguous rows: the two reductions (`Σ dy`, `Σ dy·x̂`
/// per channel) as in [`batch_norm_train_forward`]'s statistics, then `dx`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward(
    x: &[f32],
    dy: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    save_mean: &[f32],
    save_invstd: &[f32],
    relu: bool,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    assert_eq!(x.len(), dy.len(), "batch_norm_backward: lengths");
    assert_eq!(x.len(), dx.len(), "batch_norm_backward: lengths");
    assert_eq!(x.len() % c, 0, "batch_norm_backward: channels");
    for s in [gamma.len(), beta.len(), save_mean.len(), save_invstd.len()] {
        assert_eq!(s, c, "batch_norm_backward: per-channel length");
    }
    let rows = x.len() / c;
    let map = BnAffine {
        mean: save_mean,
        invstd: save_invstd,
        gamma,
        beta,
        relu,
        residual: None,
    };
    if relu {
        bn_backward_sums::<true>(x, dy, &map, dgamma, dbeta);
    } else {
        bn_backward_sums::<false>(x, dy, &map, dgamma, dbeta);
    }
    let inv_n = 1.0 / rows as f32;
    let (dgamma, dbeta) = (&*dgamma, &*dbeta);
    let chunk = (ELEM_CHUNK / c).max(1) * c;
    let set = active();
    dx.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .zip(dy.par_chunks(chunk))
        .for_each(|((dx, x), dy)| {
            with_set(set, || {
                if relu {
                    bn_backward_dx::<true>(x, dy, dx, &map, dgamma, dbeta, inv_n);
                } else {
                    bn_backward_dx::<false>(x, dy, dx, &map, dgamma, dbeta, inv_n);
                }
            })
        });
}

/// `dy` masked by a fused ReLU (`RELU`): zero where `bn(x) ≤ 0`, exactly
/// where the ReLU's output is 0 (its gradient at 0 is 0).
#[inline(always)]
fn relu_masked<const RELU: bool>(bn: f32, dy: f32) -> f32 {
    if !RELU || bn > 0.0 { dy } else { 0.0 }
}

/// Pass 1 of [`batch_norm_train_backward`]: `dbeta = Σ dy`, `dgamma = Σ dy·x̂`.
fn bn_backward_sums<const RELU: bool>(
    x: &[f32],
    dy: &[f32],
    map: &BnAffine,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let c = map.channels();
    channel_reduce2(
        c,
        x.len() / c,
        dbeta,
        dgamma,
        |r, c0, sb, sg| {
            let w = sb.len();
            let off = r * c + c0;
            let (xr, dr) = (&x[off..off + w], &dy[off..off + w]);
            let (mean, invstd) = (&map.mean[c0..c0 + w], &map.invstd[c0..c0 + w]);
            let (gamma, beta) = (&map.gamma[c0..c0 + w], &map.beta[c0..c0 + w]);
            let sg = &mut sg[..w];
            for j in 0..w {
                let v = xr[j];
                let bn = bn_value(v, mean[j], invstd[j], gamma[j], beta[j]);
                let d = relu_masked::<RELU>(bn, dr[j]);
                sb[j] += d;
                sg[j] += d * ((v - mean[j]) * invstd[j]);
            }
        },
        |_, b, g| (b as f32, g as f32),
    );
}

/// Pass 2 of [`batch_norm_train_backward`] over whole rows:
/// `dx = γ·invstd·(dy − (dβ + x̂·dγ)/n)`.
#[inline(always)]
fn bn_backward_dx<const RELU: bool>(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    map: &BnAffine,
    dgamma: &[f32],
    dbeta: &[f32],
    inv_n: f32,
) {
    let c = map.channels();
    let (mean, invstd) = (&map.mean[..c], &map.invstd[..c]);
    let (gamma, beta) = (&map.gamma[..c], &map.beta[..c]);
    let (dgamma, dbeta) = (&dgamma[..c], &dbeta[..c]);
    for ((dxr, xr), dyr) in dx
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c))
        .zip(dy.chunks_exact(c))
    {
        for ch in 0..c {
            let v = xr[ch];
            let bn = bn_value(v, mean[ch], invstd[ch], gamma[ch], beta[ch]);
            let d = relu_masked::<RELU>(bn, dyr[ch]);
            let xh = (v - mean[ch]) * invstd[ch];
            let k = gamma[ch] * invstd[ch];
            dxr[ch] = k * (d - (dbeta[ch] + xh * dgamma[ch]) * inv_n);
        }
    }
}

/// Backward of [`batch_norm_eval_forward`] (a frozen affine map): `dx =
/// dy·gamma/sqrt(running_var + eps)`. `dgamma`/`dbeta` (overwritten) only if given.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_backward(
    x: &[f32],
    dy: &[f32],
    c: usize,
    gamma: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    assert_eq!(x.len(), dy.len(), "batch_norm_eval_backward: lengths");
    assert_eq!(x.len(), dx.len(), "batch_norm_eval_backward: lengths");
    let rows = x.len() / c;
    let chunk = (ELEM_CHUNK / c).max(1) * c;
    dx.par_chunks_mut(chunk)
        .zip(dy.par_chunks(chunk))
        .for_each(|(dx, dy)| {
            for (dxr, dyr) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)) {
                for ch in 0..c {
                    dxr[ch] = dyr[ch] * gamma[ch] / (running_var[ch] + eps).sqrt();
                }
            }
        });
    if let Some(dbeta) = dbeta {
        channel_reduce(
            c,
            rows,
            dbeta,
            |off, _, acc| {
                for (a, v) in acc.iter_mut().zip(&dy[off..]) {
                    *a += *v as f64;
                }
            },
            |_, s| s as f32,
        );
    }
    if let Some(dgamma) = dgamma {
        channel_reduce(
            c,
            rows,
            dgamma,
            |off, c0, acc| {
                for (j, a) in acc.iter_mut().enumerate() {
                    let ch = c0 + j;
                    let xh = (x[off + j] - running_mean[ch]) / (running_var[ch] + eps).sqrt();
                    *a += dy[off + j] as f64 * xh as f64;
                }
            },
            |_, s| s as f32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    #[test]
    fn train_forward_stats_and_running_update() {
        let c = 3;
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect(); // channel ch: ch, ch+3, ch+6, ch+9
        let mut y = vec![0.0; 12];
        let (mut rm, mut rv) = (vec![1.0; c], vec![1.0; c]);
        let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
        batch_norm_train_forward(
            &x, &mut y, c, &[1.0; 3], &[0.0; 3], 0.0, 0.9, &mut rm, &mut rv, &mut sm, &mut si,
            false,
        );
        assert_eq!(sm, vec![4.5, 5.5, 6.5]);
        // biased var of {0,3,6,9} = 11.25, unbiased 15
        assert!((si[0] - 1.0 / 11.25f32.sqrt()).abs() < 1e-6);
        assert!((rm[0] - (0.9 + 0.1 * 4.5)).abs() < 1e-6);
        assert!((rv[0] - (0.9 + 0.1 * 15.0)).abs() < 1e-5);
        let m: f32 = (0..4).map(|r| y[r * c]).sum();
        assert!(m.abs() < 1e-6);
    }

    #[test]
    fn stats_stable_with_large_mean() {
        let mut rng = Rng::new(23);
        let (rows, c) = (4096, 2);
        let x: Vec<f32> = rng.vec(rows * c).iter().map(|v| 1.0e4 + v).collect();
        let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
        let (mut rm, mut rv) = (vec![0.0; c], vec![0.0; c]);
        let mut y = vec![0.0; x.len()];
        batch_norm_train_forward(
            &x, &mut y, c, &[1.0; 2], &[0.0; 2], 0.0, 0.0, &mut rm, &mut rv, &mut sm, &mut si,
            false,
        );
        for ch in 0..c {
            let vals: Vec<f64> = (0..rows).map(|r| x[r * c + ch] as f64).collect();
            let m = vals.iter().sum::<f64>() / rows as f64;
            let v = vals.iter().map(|t| (t - m) * (t - m)).sum::<f64>() / rows as f64;
            assert!((sm[ch] as f64 - m).abs() < 1e-3);
            assert!(
                ((1.0 / (si[ch] as f64 * si[ch] as f64)) - v).abs() < 1e-4 * v.max(1e-3),
                "{v}"
            );
        }
    }

    #[test]
    fn train_gradients() {
        let mut rng = Rng::new(21);
        for (rows, c) in [(6, 3), (10, 20)] {
            let mut x = rng.vec(rows * c);
            let mut gamma = rng.vec(c);
            let mut beta = rng.vec(c);
            let r = rng.vec(rows * c);
            let eps = 1e-3;
            let fwd = |x: &[f32], g: &[f32], b: &[f32], sm: &mut [f32], si: &mut [f32]| {
                let mut y = vec![0.0; x.len()];
                let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
                batch_norm_train_forward(
                    x, &mut y, c, g, b, eps, 0.9, &mut rm, &mut rv, sm, si, false,
                );
                dot64(&y, &r)
            };
            let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
            fwd(&x, &gamma, &beta, &mut sm, &mut si);
            let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            batch_norm_train_backward(
                &x, &r, c, &gamma, &beta, &sm, &si, false, &mut dx, &mut dg, &mut db,
            );
            let mut s = (vec![0.0; c], vec![0.0; c]);
            let (g0, b0) = (gamma.clone(), beta.clone());
            // Normalisation amplifies f32 rounding by invstd (~2 here); eps 1e-2 keeps
            // the central-difference truncation error ~1e-4.
            check("bn dx", &mut x, &dx, 1e-2, |x| {
                fwd(x, &g0, &b0, &mut s.0, &mut s.1)
            });
            let x0 = x.clone();
            check("bn dgamma", &mut gamma, &dg, 1e-2, |g| {
                fwd(&x0, g, &b0, &mut s.0, &mut s.1)
            });
            check("bn dbeta", &mut beta, &db, 1e-2, |b| {
                fwd(&x0, &g0, b, &mut s.0, &mut s.1)
            });
        }
    }

    /// The fused BatchNorm+ReLU backward equals the ReLU's backward (masking
    /// with the forward's output) followed by the plain BatchNorm backward,
    /// bit for bit, with ties at 0 (beta = 0, x = mean on some rows) and
    /// more channels than one reduction pass.
    #[test]
    fn fused_relu_backward_equals_relu_then_batch_norm() {
        let mut rng = Rng::new(24);
        for (rows, c) in [(37, 3), (300, 40), (5, 300)] {
            let mut x = rng.vec(rows * c);
            x.copy_within(..c, c);
            let gamma = rng.vec(c);
            let mut beta = rng.vec(c);
            beta[0] = 0.0;
            let dy = rng.vec(rows * c);
            let (mut y, mut rm, mut rv) = (vec![0.0; x.len()], vec![0.0; c], vec![1.0; c]);
            let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
            batch_norm_train_forward(
                &x, &mut y, c, &gamma, &beta, 1e-3, 0.9, &mut rm, &mut rv, &mut sm, &mut si, true,
            );
            assert!(y.contains(&0.0));
            let mut masked = vec![0.0; x.len()];
            crate::kernels::activation::relu_backward(&y, &dy, &mut masked);
            let mut want = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            batch_norm_train_backward(
                &x,
                &masked,
                c,
                &gamma,
                &beta,
                &sm,
                &si,
                false,
                &mut want.0,
                &mut want.1,
                &mut want.2,
            );
            let mut got = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            batch_norm_train_backward(
                &x, &dy, c, &gamma, &beta, &sm, &si, true, &mut got.0, &mut got.1, &mut got.2,
            );
            assert_eq!(got, want, "rows {rows}, c {c}");
        }
    }

    #[test]
    fn eval_gradients() {
        let mut rng = Rng::new(22);
        let (rows, c) = (5, 4);
        let mut x = rng.vec(rows * c);
        let mut gamma = rng.vec(c);
        let mut beta = rng.vec(c);
        let rm = rng.vec(c);
        let rv: Vec<f32> = rng.vec(c).iter().map(|v| v.abs() + 0.5).collect();
        let r = rng.vec(rows * c);
        let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
            let mut y = vec![0.0; x.len()];
            let mut s = vec![0.0; c];
            batch_norm_eval_forward(x, &mut y, c, g, b, &rm, &rv, 1e-3, &mut s, false);
            dot64(&y, &r)
        };
        let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        batch_norm_eval_backward(
            &x,
            &r,
            c,
            &gamma,
            &rm,
            &rv,
            1e-3,
            &mut dx,
            Some(&mut dg),
            Some(&mut db),
        );
        let (g0, b0) = (gamma.clone(), beta.clone());
        check("bn eval dx", &mut x, &dx, 1e-2, |x| fwd(x, &g0, &b0));
        let x0 = x.clone();
        check("bn eval dgamma", &mut gamma, &dg, 1e-2, |g| {
            fwd(&x0, g, &b0)
        });
        check("bn eval dbeta", &mut beta, &db, 1e-2, |b| fwd(&x0, &g0, b));
    }
}
