//! Pooling in NHWC: max (with argmax for backward), average, global average.
//!
//! Max-pool forward is parallel over blocks of output rows, the rest over
//! images; each output (or image's gradient) is written by one task, so
//! results do not depend on the thread count.

use super::ELEM_CHUNK;
use super::conv::{GeometryError, Pads, out_dim};
use super::isa::{active, with_set};
use rayon::prelude::*;

/// Shape of one pooling layer at one batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    pub ceil_mode: bool,
}

impl Pool2dGeometry {
    /// `input` = (h, w, c), `kernel` = (k_h, k_w), `stride` = (s_h, s_w);
    /// each pad must be smaller than the window.
    pub fn new(
        batch: usize,
        input: (usize, usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: Pads,
        ceil_mode: bool,
    ) -> Result<Self, GeometryError> {
        let (in_h, in_w, c) = input;
        if batch == 0 || c == 0 {
            return Err(GeometryError::ZeroDim);
        }
        for (p, k) in [
            (pad.top, kernel.0),
            (pad.bottom, kernel.0),
            (pad.left, kernel.1),
            (pad.right, kernel.1),
        ] {
            if p >= k {
                return Err(GeometryError::PadTooLarge { pad: p, window: k });
            }
        }
        let out_h = out_dim(in_h, pad.top, pad.bottom, kernel.0, stride.0, ceil_mode)?;
        let out_w = out_dim(in_w, pad.left, pad.right, kernel.1, stride.1, ceil_mode)?;
        Ok(Self {
            batch,
            in_h,
            in_w,
            c,
            out_h,
            out_w,
            k_h: kernel.0,
            k_w: kernel.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top: pad.top,
            pad_left: pad.left,
            pad_bottom: pad.bottom,
            pad_right: pad.right,
            ceil_mode,
        })
    }
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    pub fn in_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.c
    }
    pub fn out_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.c
    }
    fn in_img(&self) -> usize {
        self.in_h * self.in_w * self.c
    }
    fn out_img(&self) -> usize {
        self.out_h * self.out_w * self.c
    }
    /// Window of output (oy, ox): clipped rows, clipped cols, and the
    /// PyTorch divisor counting padding (window clipped to the padded input).
    fn window(
        &self,
        oy: usize,
        ox: usize,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
        let hs = (oy * self.stride_h) as isize - self.pad_top as isize;
        let ws = (ox * self.stride_w) as isize - self.pad_left as isize;
        let he = (hs + self.k_h as isize).min((self.in_h + self.pad_bottom) as isize);
        let we = (ws + self.k_w as isize).min((self.in_w + self.pad_right) as isize);
        let padded = ((he - hs) * (we - ws)) as usize;
        let rows = hs.max(0) as usize..(he.min(self.in_h as isize)) as usize;
        let cols = ws.max(0) as usize..(we.min(self.in_w as isize)) as usize;
        (rows, cols, padded)
    }
}

/// Max pooling. Padding never wins (it is −∞). No argmax is stored: the
/// backward finds each window's winner again from the input and output
/// ([`max_pool2d_backward`]), which saves the index tensor's memory and
/// its writes here.
pub fn max_pool2d_forward(geo: &Pool2dGeometry, x: &[f32], y: &mut [f32]) {
    max_pool2d_rows(geo, x, y);
}

/// Max pooling over blocks of output rows (across the batch), so small
/// batches still use every core; each output element is computed by one
/// task in a fixed order, so results do not depend on the thread count. The
/// channel loop is branch-free (compare + select) so it vectorises (at the
/// kernel set's width): a data-dependent branch there mispredicts on half
/// the elements of random data.
fn max_pool2d_rows(geo: &Pool2dGeometry, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), geo.in_len(), "max_pool2d: input length");
    assert_eq!(y.len(), geo.out_len(), "max_pool2d: output length");
    let c = geo.c;
    let row_len = geo.out_w * c;
    let rows_per_task = (ELEM_CHUNK / row_len).max(1);
    let set = active();
    let one_row = |r: usize, yrow: &mut [f32]| {
        let (b, oy) = (r / geo.out_h, r % geo.out_h);
        let x = &x[b * geo.in_img()..(b + 1) * geo.in_img()];
        for (ox, yr) in yrow.chunks_exact_mut(c).enumerate() {
            yr.fill(f32::NEG_INFINITY);
            let (rows, cols, _) = geo.window(oy, ox);
            for iy in rows {
                for ix in cols.clone() {
                    let i0 = (iy * geo.in_w + ix) * c;
                    for (m, &v) in yr.iter_mut().zip(&x[i0..i0 + c]) {
                        *m = if v > *m { v } else { *m };
                    }
                }
            }
        }
    };
    y.par_chunks_mut(rows_per_task * row_len)
        .enumerate()
        .for_each(|(t, y)| {
            with_set(set, || {
                for (k, yrow) in y.chunks_exact_mut(row_len).enumerate() {
                    one_row(t * rows_per_task + k, yrow);
                }
            })
        });
}

/// `dx` (overwritten) of [`max_pool2d_forward`] from its input `x`, output
/// `y` and `dy`. Each window's gradient goes to its winner: the first
/// element in row-major window order equal to the window's maximum, or the
/// window's first element when none is (every value NaN) — the element a
/// forward scan keeping the first strict maximum would have picked.
pub fn max_pool2d_backward(geo: &Pool2dGeometry, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert_eq!(x.len(), geo.in_len(), "max_pool2d_backward: x length");
    assert_eq!(dx.len(), geo.in_len(), "max_pool2d_backward: dx length");
    assert_eq!(y.len(), geo.out_len(), "max_pool2d_backward: y length");
    assert_eq!(dy.len(), geo.out_len(), "max_pool2d_backward: dy length");
    if geo.tiles_input() {
        return max_pool2d_backward_tiled(geo, x, y, dy, dx);
    }
    let c = geo.c;
    dx.par_chunks_mut(geo.in_img())
        .zip(x.par_chunks(geo.in_img()))
        .zip(
            dy.par_chunks(geo.out_img())
                .zip(y.par_chunks(geo.out_img())),
        )
        .for_each(|((dx, x), (dy, y))| {
            dx.fill(0.0);
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    let (rows, cols, _) = geo.window(oy, ox);
                    let o = (oy * geo.out_w + ox) * c;
                    for ch in 0..c {
                        let m = y[o + ch];
                        let first = (rows.start * geo.in_w + cols.start) * c + ch;
                        let won = rows
                            .clone()
                            .flat_map(|iy| {
                                cols.clone().map(move |ix| (iy * geo.in_w + ix) * c + ch)
                            })
                            .find(|&i| x[i] == m)
                            .unwrap_or(first);
                        dx[won] += dy[o + ch];
                    }
                }
            }
        });
}

impl Pool2dGeometry {
    /// Windows that tile the input exactly (stride = window, no padding,
    /// nothing left over): every input element is in exactly one window.
    fn tiles_input(&self) -> bool {
        self.stride_h == self.k_h
            && self.stride_w == self.k_w
            && self.pad_top + self.pad_left + self.pad_bottom + self.pad_right == 0
            && self.out_h * self.k_h == self.in_h
            && self.out_w * self.k_w == self.in_w
    }
}

/// Channels whose "winner found" flags one pass of the tiled backward keeps.
const CH_BLOCK: usize = 64;

/// Max-pool backward when the windows tile the input: each input element
/// is written once with its window's gradient if it is the winner and 0
/// otherwise — no zero fill, no scatter. Parallel over blocks of output
/// rows (across the batch); per window and block of channels, the window's
/// elements are visited in row-major order with a flag per channel.
fn max_pool2d_backward_tiled(
    geo: &Pool2dGeometry,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let c = geo.c;
    let out_row = geo.out_w * c;
    let in_rows = geo.k_h * geo.in_w * c;
    let rows_per_task = (ELEM_CHUNK / in_rows).max(1);
    let set = active();
    dx.par_chunks_mut(rows_per_task * in_rows)
        .zip(x.par_chunks(rows_per_task * in_rows))
        .enumerate()
        .for_each(|(t, (dxb, xb))| {
            with_set(set, || {
                for (k, (dxr, xr)) in dxb
                    .chunks_exact_mut(in_rows)
                    .zip(xb.chunks_exact(in_rows))
                    .enumerate()
                {
                    let r = t * rows_per_task + k; // b·out_h + oy
                    let (g, m) = (&dy[r * out_row..][..out_row], &y[r * out_row..][..out_row]);
                    window_row_backward(geo, xr, m, g, dxr);
                }
            })
        });
}

/// One row of tiled windows: `x`/`dx` the `k_h` input rows, `m`/`g` the
/// output row's maxima and gradients.
#[inline(always)]
fn window_row_backward(geo: &Pool2dGeometry, x: &[f32], m: &[f32], g: &[f32], dx: &mut [f32]) {
    let c = geo.c;
    let line = geo.in_w * c;
    for ox in 0..geo.out_w {
        for c0 in (0..c).step_by(CH_BLOCK) {
            let w = CH_BLOCK.min(c - c0);
            let (mw, gw) = (&m[ox * c + c0..][..w], &g[ox * c + c0..][..w]);
            // All ones while channel j's winner is still to come: the
            // loop is bitwise selects, so it vectorises.
            let mut open = [u32::MAX; CH_BLOCK];
            let open = &mut open[..w];
            for ky in 0..geo.k_h {
                for kx in 0..geo.k_w {
                    let i0 = ky * line + (ox * geo.k_w + kx) * c + c0;
                    let (xs, ds) = (&x[i0..i0 + w], &mut dx[i0..i0 + w]);
                    for j in 0..w {
                        let hit = if xs[j] == mw[j] { open[j] } else { 0 };
                        open[j] &= !hit;
                        ds[j] = f32::from_bits(gw[j].to_bits() & hit);
                    }
                }
            }
            // No element equals the maximum (all NaN): the first one, which
            // was written 0, wins.
            let i0 = (ox * geo.k_w) * c + c0;
            for (j, d) in dx[i0..i0 + w].iter_mut().enumerate() {
                *d = f32::from_bits(d.to_bits() | (gw[j].to_bits() & open[j]));
            }
        }
    }
}

/// Average pooling. `count_include_pad = true` divides by the window clipped
/// to the padded input (PyTorch's default, Keras has no padding); `false`
/// divides by the number of real input elements in the window.
pub fn avg_pool2d_forward(geo: &Pool2dGeometry, x: &[f32], y: &mut [f32], count_include_pad: bool) {
    assert_eq!(x.len(), geo.in_len(), "avg_pool2d: input length");
    assert_eq!(y.len(), geo.out_len(), "avg_pool2d: output length");
    let c = geo.c;
    y.par_chunks_mut(geo.out_img())
        .zip(x.par_chunks(geo.in_img()))
        .for_each(|(y, x)| {
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    let o = (oy * geo.out_w + ox) * c;
                    let yr = &mut y[o..o + c];
                    yr.fill(0.0);
                    let (rows, cols, padded) = geo.window(oy, ox);
                    let div = if count_include_pad {
                        padded
                    } else {
                        rows.len() * cols.len()
                    };
                    for iy in rows {
                        for ix in cols.clone() {
                            let i0 = (iy * geo.in_w + ix) * c;
                            for (a, v) in yr.iter_mut().zip(&x[i0..i0 + c]) {
                                *a += *v;
                            }
                        }
                    }
                    let inv = 1.0 / div as f32;
                    yr.iter_mut().for_each(|v| *v *= inv);
                }
            }
        });
}

/// `dx` (overwritten) of [`avg_pool2d_forward`].
pub fn avg_pool2d_backward(
    geo: &Pool2dGeometry,
    dy: &[f32],
    dx: &mut [f32],
    count_include_pad: bool,
) {
    assert_eq!(dx.len(), geo.in_len(), "avg_pool2d_backward: dx length");
    assert_eq!(dy.len(), geo.out_len(), "avg_pool2d_backward: dy length");
    let c = geo.c;
    dx.par_chunks_mut(geo.in_img())
        .zip(dy.par_chunks(geo.out_img()))
        .for_each(|(dx, dy)| {
            dx.fill(0.0);
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    let o = (oy * geo.out_w + ox) * c;
                    let (rows, cols, padded) = geo.window(oy, ox);
                    let div = if count_include_pad {
                        padded
                    } else {
                        rows.len() * cols.len()
                    };
                    let inv = 1.0 / div as f32;
                    for iy in rows {
                        for ix in cols.clone() {
                            let i0 = (iy * geo.in_w + ix) * c;
                            for (d, g) in dx[i0..i0 + c].iter_mut().zip(&dy[o..o + c]) {
                                *d += *g * inv;
                            }
                        }
                    }
                }
            }
        });
}

/// Global average pool: `x` (N, H, W, C) → `y` (N, C), `hw` = H·W.
pub fn global_avg_pool_forward(x: &[f32], y: &mut [f32], hw: usize, c: usize) {
    assert_eq!(x.len(), y.len() * hw, "global_avg_pool: lengths");
    assert_eq!(y.len() % c, 0);
    let inv = 1.0 / hw as f32;
    y.par_chunks_mut(c)
        .zip(x.par_chunks(hw * c))
        .for_each(|(y, x)| {
            y.fill(0.0);
            for px in x.chunks_exact(c) {
                for (a, v) in y.iter_mut().zip(px) {
                    *a += *v;
                }
            }
            y.iter_mut().for_each(|v| *v *= inv);
        });
}

/// `dx` (overwritten, N×H×W×C) of [`global_avg_pool_forward`] from `dy` (N×C).
pub fn global_avg_pool_backward(dy: &[f32], dx: &mut [f32], hw: usize, c: usize) {
    assert_eq!(dx.len(), dy.len() * hw, "global_avg_pool_backward: lengths");
    let inv = 1.0 / hw as f32;
    dx.par_chunks_mut(hw * c)
        .zip(dy.par_chunks(c))
        .for_each(|(dx, dy)| {
            for px in dx.chunks_exact_mut(c) {
                for (d, g) in px.iter_mut().zip(dy) {
                    *d = *g * inv;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    #[test]
    fn ceil_mode_sizes_match_pytorch() {
        // nn.MaxPool2d(2, 2, ceil_mode=True) on 5 → 3 (floor mode → 2).
        let g = Pool2dGeometry::new(1, (5, 5, 1), (2, 2), (2, 2), Pads::NONE, true).unwrap();
        assert_eq!((g.out_h, g.out_w), (3, 3));
        let g = Pool2dGeometry::new(1, (5, 5, 1), (2, 2), (2, 2), Pads::NONE, false).unwrap();
        assert_eq!((g.out_h, g.out_w), (2, 2));
        // PyTorch: MaxPool2d(3, 2, padding=1, ceil_mode=True) on 6 → 4, on 7 → 4
        let g = Pool2dGeometry::new(1, (6, 7, 1), (3, 3), (2, 2), Pads::uniform(1), true).unwrap();
        assert_eq!((g.out_h, g.out_w), (4, 4));
        // The rule that drops a window starting in the right padding:
        // n=5, k=2, s=2, p=1 → ceil(5/2)+1 = 4, but window 3 would start at 6 ≥ 5+1 → 3.
        let g = Pool2dGeometry::new(1, (5, 5, 1), (2, 2), (2, 2), Pads::uniform(1), true).unwrap();
        assert_eq!((g.out_h, g.out_w), (3, 3));
        assert!(
            Pool2dGeometry::new(1, (4, 4, 1), (2, 2), (2, 2), Pads::new(2, 0, 0, 0), false)
                .is_err()
        );
    }

    fn geos() -> Vec<Pool2dGeometry> {
        vec![
            Pool2dGeometry::new(2, (6, 6, 3), (2, 2), (2, 2), Pads::NONE, false).unwrap(),
            // leftover last row and column: not tiled, the scatter path
            Pool2dGeometry::new(2, (7, 5, 3), (2, 2), (2, 2), Pads::NONE, false).unwrap(),
            Pool2dGeometry::new(1, (4, 6, 3), (2, 3), (2, 3), Pads::NONE, false).unwrap(),
            Pool2dGeometry::new(1, (5, 7, 2), (3, 3), (2, 2), Pads::new(1, 1, 1, 1), true).unwrap(),
            Pool2dGeometry::new(2, (5, 5, 2), (3, 2), (1, 2), Pads::new(0, 2, 1, 0), true).unwrap(),
        ]
    }

    #[test]
    fn avg_pool_divisors() {
        // 3×3 input of ones, 2×2 window stride 2, pad 1 everywhere.
        let g = Pool2dGeometry::new(1, (3, 3, 1), (2, 2), (2, 2), Pads::uniform(1), false).unwrap();
        let x = vec![1.0; 9];
        let mut y = vec![0.0; g.out_len()];
        avg_pool2d_forward(&g, &x, &mut y, true);
        assert_eq!(y, vec![0.25, 0.5, 0.5, 1.0]);
        avg_pool2d_forward(&g, &x, &mut y, false);
        assert_eq!(y, vec![1.0; 4]);
    }

    /// The winner a forward scan keeping the first strict maximum picks
    /// (the old argmax rule), by brute force.
    fn argmax_reference(geo: &Pool2dGeometry, x: &[f32]) -> Vec<usize> {
        let mut am = Vec::with_capacity(geo.out_len());
        for b in 0..geo.batch {
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    let (rows, cols, _) = geo.window(oy, ox);
                    for ch in 0..geo.c {
                        let at = |iy: usize, ix: usize| {
                            b * geo.in_img() + (iy * geo.in_w + ix) * geo.c + ch
                        };
                        let (mut best, mut m) = (at(rows.start, cols.start), f32::NEG_INFINITY);
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                if x[at(iy, ix)] > m {
                                    (best, m) = (at(iy, ix), x[at(iy, ix)]);
                                }
                            }
                        }
                        am.push(best);
                    }
                }
            }
        }
        am
    }

    #[test]
    fn max_pool_values_and_gradient() {
        let mut rng = Rng::new(11);
        for geo in geos() {
            let mut x = rng.vec(geo.in_len());
            let r = rng.vec(geo.out_len());
            let mut y = vec![0.0; geo.out_len()];
            max_pool2d_forward(&geo, &x, &mut y);
            let am = argmax_reference(&geo, &x);
            for (i, &v) in y.iter().enumerate() {
                assert_eq!(v, x[am[i]]);
            }
            let mut dx = vec![0.0; geo.in_len()];
            max_pool2d_backward(&geo, &x, &y, &r, &mut dx);
            // eps small enough that no window's winner changes (inputs are
            // random in [-1,1), gaps between them ≫ 1e-3).
            check("max_pool dx", &mut x, &dx, 1e-3, |x| {
                let mut y = vec![0.0; geo.out_len()];
                max_pool2d_forward(&geo, x, &mut y);
                dot64(&y, &r)
            });
        }
    }

    /// Ties (ReLU zeros, repeated values), −∞ and all-NaN windows: the
    /// gradient goes exactly where the first-strict-maximum rule puts it,
    /// on the tiled and the general path, for more channels than one block.
    #[test]
    fn max_pool_backward_routes_ties_and_nan_like_an_argmax() {
        let mut rng = Rng::new(14);
        let tiled = Pool2dGeometry::new(2, (4, 6, 70), (2, 2), (2, 2), Pads::NONE, false).unwrap();
        let general =
            Pool2dGeometry::new(1, (5, 5, 3), (3, 3), (2, 2), Pads::uniform(1), false).unwrap();
        for geo in [tiled, general] {
            let mut x: Vec<f32> = rng
                .vec(geo.in_len())
                .iter()
                .map(|v| (v * 2.0).round().max(0.0))
                .collect();
            x[0] = f32::NEG_INFINITY;
            for i in [geo.c, 2 * geo.c + 1] {
                x[i] = f32::NAN;
            }
            // One all-NaN window on channel 1 of the first output.
            let (rows, cols, _) = geo.window(0, 0);
            for iy in rows {
                for ix in cols.clone() {
                    x[(iy * geo.in_w + ix) * geo.c + 1] = f32::NAN;
                }
            }
            let mut y = vec![0.0; geo.out_len()];
            max_pool2d_forward(&geo, &x, &mut y);
            let dy = rng.vec(geo.out_len());
            let mut dx = vec![0.0; geo.in_len()];
            max_pool2d_backward(&geo, &x, &y, &dy, &mut dx);
            let mut want = vec![0.0; geo.in_len()];
            for (i, &w) in argmax_reference(&geo, &x).iter().enumerate() {
                want[w] += dy[i];
            }
            assert_eq!(dx, want, "{geo:?}");
        }
    }

    #[test]
    fn avg_pool_gradient() {
        let mut rng = Rng::new(12);
        for geo in geos() {
            for cip in [true, false] {
                let mut x = rng.vec(geo.in_len());
                let r = rng.vec(geo.out_len());
                let mut dx = vec![0.0; geo.in_len()];
                avg_pool2d_backward(&geo, &r, &mut dx, cip);
                check("avg_pool dx", &mut x, &dx, 1e-2, |x| {
                    let mut y = vec![0.0; geo.out_len()];
                    avg_pool2d_forward(&geo, x, &mut y, cip);
                    dot64(&y, &r)
                });
            }
        }
    }

    #[test]
    fn global_avg_pool_gradient() {
        let mut rng = Rng::new(13);
        let (n, hw, c) = (2, 6, 3);
        let mut x = rng.vec(n * hw * c);
        let r = rng.vec(n * c);
        let mut dx = vec![0.0; x.len()];
        global_avg_pool_backward(&r, &mut dx, hw, c);
        check("gap dx", &mut x, &dx, 1e-2, |x| {
            let mut y = vec![0.0; n * c];
            global_avg_pool_forward(x, &mut y, hw, c);
            dot64(&y, &r)
        });
    }
}
