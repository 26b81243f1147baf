//! Dilated convolution (taps `dilation` apart; dilation 1 on both axes runs
//! the ordinary paths instead, untouched): im2col with dilated taps + the
//! same GEMM as the undilated im2col path, forward and backward.
//!
//! - Forward: tiles of [`TILE_ROWS`] output pixels, each gathered into an
//!   im2col tile (`[ky][kx][ci]` columns, taps `d` apart) and multiplied by
//!   the HWIO weight viewed as a `k_cols × out_c` matrix, per group.
//! - dX: per image (images write disjoint parts of dX), each tile's column
//!   gradient `dY·Wᵀ` is scattered back onto the taps (col2im).
//! - dW and db: per work slot, `colᵀ·dY` and column sums of dY into the
//!   slot's partial sums, reduced in slot order (deterministic).
//!
//! The window spans `d(f − 1) + 1` input pixels, so
//! `out = ⌊(n + p_total − d(f − 1) − 1)/s⌋ + 1`; the MACs per output are
//! those of the undilated kernel.

use super::geometry::{Conv2dGeometry, GeometryError, Pads, TILE_ROWS, tile_span};
use super::partials::{add_column_sums, reduce_slots, slot_partials};
use crate::kernels::gemm::{MatRef, sgemm};
use crate::kernels::norm::BnAffine;
use rayon::prelude::*;

/// A dilated convolution's geometry: [`Conv2dGeometry`] with the real kernel
/// size (`k_h`, `k_w`: weight shape and im2col width) and output size
/// resolved for the dilated window, plus the dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DilatedConv2d {
    pub geo: Conv2dGeometry,
    /// `(d_h, d_w)`, each at least 1.
    pub dilation: (usize, usize),
}

impl DilatedConv2d {
    /// As [`Conv2dGeometry::new`], with taps `dilation` apart.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        input: (usize, usize, usize),
        out_c: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: Pads,
        groups: usize,
        dilation: (usize, usize),
    ) -> Result<Self, GeometryError> {
        let span = |k: usize, d: usize| -> Result<usize, GeometryError> {
            if k == 0 || d == 0 {
                return Err(GeometryError::ZeroDim);
            }
            (k - 1).checked_mul(d).and_then(|s| s.checked_add(1)).ok_or(
                GeometryError::WindowTooLarge {
                    window: usize::MAX,
                    padded: 0,
                },
            )
        };
        let window = (span(kernel.0, dilation.0)?, span(kernel.1, dilation.1)?);
        let mut geo = Conv2dGeometry::new(batch, input, out_c, window, stride, pad, groups)?;
        geo.k_h = kernel.0;
        geo.k_w = kernel.1;
        Ok(Self { geo, dilation })
    }

    /// `geo` (as built for the undilated kernel) with taps `dilation` apart.
    pub fn dilate(geo: Conv2dGeometry, dilation: (usize, usize)) -> Result<Self, GeometryError> {
        Self::new(
            geo.batch,
            (geo.in_h, geo.in_w, geo.in_c),
            geo.out_c,
            (geo.k_h, geo.k_w),
            (geo.stride_h, geo.stride_w),
            geo.pads(),
            geo.groups,
            dilation,
        )
    }

    /// Same geometry, another batch size.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.geo = self.geo.with_batch(batch);
        self
    }

    /// Scratch floats that suffice for forward and backward: one im2col
    /// tile per slot, plus each slot's dW and db partial sums.
    pub fn workspace_len(&self) -> usize {
        let g = &self.geo;
        g.slots * (TILE_ROWS * g.k_cols() + g.weight_len() + g.out_c)
    }

    /// Copies im2col rows `m0 .. m0+count` of group `g` into `buf`.
    fn im2col(&self, x: &[f32], g: usize, m0: usize, count: usize, buf: &mut [f32]) {
        let geo = &self.geo;
        let (dh, dw) = self.dilation;
        let cg = geo.cin_g();
        let kc = geo.k_cols();
        let plane = geo.out_h * geo.out_w;
        for (r, row) in buf[..count * kc].chunks_exact_mut(kc).enumerate() {
            let m = m0 + r;
            let (b, oy, ox) = (m / plane, m % plane / geo.out_w, m % geo.out_w);
            let iy0 = (oy * geo.stride_h) as isize - geo.pad_top as isize;
            let ix0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
            for (t, px) in row.chunks_exact_mut(cg).enumerate() {
                let iy = iy0 + (t / geo.k_w * dh) as isize;
                let ix = ix0 + (t % geo.k_w * dw) as isize;
                if iy < 0 || ix < 0 || iy as usize >= geo.in_h || ix as usize >= geo.in_w {
                    px.fill(0.0);
                } else {
                    let start =
                        ((b * geo.in_h + iy as usize) * geo.in_w + ix as usize) * geo.in_c + g * cg;
                    px.copy_from_slice(&x[start..start + cg]);
                }
            }
        }
    }

    /// Adds im2col-shaped `cols` (rows `m0 .. m0+count`, group `g`) onto
    /// their taps in `dx`, which holds the images from `b0` on.
    fn col2im_add(
        &self,
        cols: &[f32],
        g: usize,
        m0: usize,
        count: usize,
        b0: usize,
        dx: &mut [f32],
    ) {
        let geo = &self.geo;
        let (dh, dw) = self.dilation;
        let cg = geo.cin_g();
        let kc = geo.k_cols();
        let plane = geo.out_h * geo.out_w;
        for (r, row) in cols[..count * kc].chunks_exact(kc).enumerate() {
            let m = m0 + r;
            let (b, oy, ox) = (m / plane - b0, m % plane / geo.out_w, m % geo.out_w);
            let iy0 = (oy * geo.stride_h) as isize - geo.pad_top as isize;
            let ix0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
            for (t, px) in row.chunks_exact(cg).enumerate() {
                let iy = iy0 + (t / geo.k_w * dh) as isize;
                let ix = ix0 + (t % geo.k_w * dw) as isize;
                if iy >= 0 && ix >= 0 && (iy as usize) < geo.in_h && (ix as usize) < geo.in_w {
                    let start =
                        ((b * geo.in_h + iy as usize) * geo.in_w + ix as usize) * geo.in_c + g * cg;
                    for (d, v) in dx[start..start + cg].iter_mut().zip(px) {
                        *d += v;
                    }
                }
            }
        }
    }

    fn check_lens(&self, x: usize, w: usize, y: usize, bias: Option<usize>) {
        let g = &self.geo;
        assert_eq!(x, g.in_len(), "dilated conv2d: input length");
        assert_eq!(w, g.weight_len(), "dilated conv2d: weight length");
        assert_eq!(y, g.out_len(), "dilated conv2d: output length");
        if let Some(b) = bias {
            assert_eq!(b, g.out_c, "dilated conv2d: bias length");
        }
    }

    /// `y = conv(x, w) + bias`, then the evaluation-mode BatchNorm `bn` (with
    /// its residual and ReLU) when given. `ws` needs
    /// [`DilatedConv2d::workspace_len`] floats.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&BnAffine>,
        y: &mut [f32],
        ws: &mut [f32],
    ) {
        self.check_lens(x.len(), w.len(), y.len(), bias.map(<[f32]>::len));
        let geo = &self.geo;
        let (oc, og, kc) = (geo.out_c, geo.cout_g(), geo.k_cols());
        let rows = geo.rows();
        let tl = TILE_ROWS * kc;
        let tiles = rows.div_ceil(TILE_ROWS);
        let slots = geo.slots.min(tiles).max(1);
        assert!(
            ws.len() >= slots * tl,
            "dilated conv2d: workspace too small"
        );
        // Each slot takes a contiguous run of `per_slot` output tiles.
        let per_slot = tiles.div_ceil(slots);
        y.par_chunks_mut(per_slot * TILE_ROWS * oc)
            .zip(ws[..slots * tl].par_chunks_mut(tl))
            .enumerate()
            .for_each(|(s, (y_run, buf))| {
                for (j, yt) in y_run.chunks_mut(TILE_ROWS * oc).enumerate() {
                    let m0 = (s * per_slot + j) * TILE_ROWS;
                    let count = yt.len() / oc;
                    let beta = match bias {
                        Some(bias) => {
                            yt.chunks_exact_mut(oc)
                                .for_each(|r| r.copy_from_slice(bias));
                            1.0
                        }
                        None => 0.0,
                    };
                    for g in 0..geo.groups {
                        self.im2col(x, g, m0, count, buf);
                        let a = MatRef::row_major(buf, kc);
                        let b = MatRef::row_major(&w[g * og..], oc);
                        sgemm(count, og, kc, 1.0, a, b, beta, &mut yt[g * og..], oc);
                    }
                    if let Some(bn) = bn {
                        bn.apply_inplace(yt, m0 * oc);
                    }
                }
            });
    }

    /// Gradients of [`DilatedConv2d::forward`] (without BatchNorm): `dx`,
    /// `dw`, `db` are overwritten when given.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: Option<&mut [f32]>,
        db: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        self.check_lens(x.len(), w.len(), dy.len(), db.as_ref().map(|b| b.len()));
        assert!(
            ws.len() >= self.workspace_len(),
            "dilated conv2d: workspace too small"
        );
        if let Some(dx) = dx {
            assert_eq!(dx.len(), x.len(), "dilated conv2d: dx length");
            self.backward_input(w, dy, dx, ws);
        }
        if dw.is_some() || db.is_some() {
            self.backward_params(x, dy, dw, db, ws);
        }
    }

    /// `dx`: per run of images, each tile's `dY·Wᵀ` scattered onto its taps.
    fn backward_input(&self, w: &[f32], dy: &[f32], dx: &mut [f32], ws: &mut [f32]) {
        let geo = &self.geo;
        let (oc, og, kc) = (geo.out_c, geo.cout_g(), geo.k_cols());
        let plane = geo.out_h * geo.out_w;
        let img = geo.in_h * geo.in_w * geo.in_c;
        let tl = TILE_ROWS * kc;
        let slots = geo.slots.min(geo.batch).max(1);
        let per_slot = geo.batch.div_ceil(slots);
        dx.par_chunks_mut(per_slot * img)
            .zip(ws[..slots * tl].par_chunks_mut(tl))
            .enumerate()
            .for_each(|(s, (dx, buf))| {
                dx.fill(0.0);
                let b0 = s * per_slot;
                let images = dx.len() / img;
                let (lo, hi) = (b0 * plane, (b0 + images) * plane);
                for m0 in (lo..hi).step_by(TILE_ROWS) {
                    let count = TILE_ROWS.min(hi - m0);
                    for g in 0..geo.groups {
                        let a = MatRef::row_major(&dy[m0 * oc + g * og..], oc);
                        let b = MatRef::transposed(&w[g * og..], oc);
                        sgemm(count, kc, og, 1.0, a, b, 0.0, buf, kc);
                        self.col2im_add(buf, g, m0, count, b0, dx);
                    }
                }
            });
    }

    /// `dw = colᵀ·dY`, `db` = column sums of dY, per slot then reduced.
    fn backward_params(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: Option<&mut [f32]>,
        db: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let geo = &self.geo;
        let (oc, og, kc) = (geo.out_c, geo.cout_g(), geo.k_cols());
        let rows = geo.rows();
        let (tl, wl) = (TILE_ROWS * kc, geo.weight_len());
        let tiles = rows.div_ceil(TILE_ROWS);
        let slots = geo.slots.min(tiles).max(1);
        let per_slot = tiles.div_ceil(slots);
        let want_dw = dw.is_some();
        let slot_len = tl + wl + oc;
        ws[..slots * slot_len]
            .par_chunks_mut(slot_len)
            .enumerate()
            .for_each(|(s, slot)| {
                let (buf, pw, pb) = slot_partials(slot, tl, wl);
                let first = s * per_slot;
                for t in first..(first + per_slot).min(tiles) {
                    let (m0, count) = tile_span(t, rows);
                    let dyt = &dy[m0 * oc..(m0 + count) * oc];
                    add_column_sums(dyt, oc, pb);
                    if !want_dw {
                        continue;
                    }
                    for g in 0..geo.groups {
                        self.im2col(x, g, m0, count, buf);
                        let a = MatRef::transposed(buf, kc);
                        let b = MatRef::row_major(&dyt[g * og..], oc);
                        sgemm(kc, og, count, 1.0, a, b, 1.0, &mut pw[g * og..], oc);
                    }
                }
            });
        if let Some(dw) = dw {
            reduce_slots(ws, slots, slot_len, tl, dw);
        }
        if let Some(db) = db {
            reduce_slots(ws, slots, slot_len, tl + wl, db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    /// Straight from the definition: every output, every tap.
    fn reference(conv: &DilatedConv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let g = &conv.geo;
        let (dh, dw) = conv.dilation;
        let (cg, og) = (g.cin_g(), g.cout_g());
        let mut y = vec![0.0; g.out_len()];
        for b in 0..g.batch {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for co in 0..g.out_c {
                        let grp = co / og;
                        let mut acc = bias.map_or(0.0, |b| b[co]) as f64;
                        for ky in 0..g.k_h {
                            for kx in 0..g.k_w {
                                let iy = (oy * g.stride_h + ky * dh) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride_w + kx * dw) as isize - g.pad_left as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy as usize >= g.in_h
                                    || ix as usize >= g.in_w
                                {
                                    continue;
                                }
                                for ci in 0..cg {
                                    let xi = ((b * g.in_h + iy as usize) * g.in_w + ix as usize)
                                        * g.in_c
                                        + grp * cg
                                        + ci;
                                    let wi = ((ky * g.k_w + kx) * cg + ci) * g.out_c + co;
                                    acc += x[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                        y[((b * g.out_h + oy) * g.out_w + ox) * g.out_c + co] = acc as f32;
                    }
                }
            }
        }
        y
    }

    /// 2 images 9×8×4 → 6 filters, 3×2 kernel, dilation (2, 3), stride (1, 2),
    /// padding [2, 1, 1, 3], and a grouped variant.
    fn cases() -> Vec<DilatedConv2d> {
        [(1, 6), (2, 6)]
            .into_iter()
            .map(|(groups, out_c)| {
                DilatedConv2d::new(
                    2,
                    (9, 8, 4),
                    out_c,
                    (3, 2),
                    (1, 2),
                    Pads::new(2, 1, 1, 3),
                    groups,
                    (2, 3),
                )
                .unwrap()
            })
            .chain([DilatedConv2d::new(
                3,
                (7, 7, 3),
                5,
                (3, 3),
                (2, 2),
                Pads::uniform(2),
                1,
                (2, 2),
            )
            .unwrap()])
            .collect()
    }

    #[test]
    fn output_size_follows_the_dilated_window() {
        // out = ⌊(n + p − d(f−1) − 1)/s⌋ + 1: h (9 + 3 − 4 − 1)/1 + 1 = 8, w (8 + 4 − 3 − 1)/2 + 1 = 5.
        let c = &cases()[0];
        assert_eq!((c.geo.out_h, c.geo.out_w), (8, 5));
        assert_eq!(c.geo.weight_len(), 3 * 2 * 4 * 6);
        let too_big = DilatedConv2d::new(1, (4, 4, 1), 1, (3, 3), (1, 1), Pads::NONE, 1, (2, 2));
        assert!(matches!(too_big, Err(GeometryError::WindowTooLarge { .. })));
        assert!(
            DilatedConv2d::new(1, (4, 4, 1), 1, (3, 3), (1, 1), Pads::NONE, 1, (0, 1)).is_err()
        );
    }

    #[test]
    fn forward_matches_the_definition() {
        for conv in cases() {
            let g = &conv.geo;
            let mut rng = Rng::new(51);
            let x = rng.vec(g.in_len());
            let w = rng.vec(g.weight_len());
            let bias = rng.vec(g.out_c);
            let mut y = vec![0.0; g.out_len()];
            let mut ws = vec![0.0; conv.workspace_len()];
            conv.forward(&x, &w, Some(&bias), None, &mut y, &mut ws);
            let want = reference(&conv, &x, &w, Some(&bias));
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b} ({conv:?})");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for conv in cases() {
            let g = conv.geo;
            let mut rng = Rng::new(52);
            let mut x = rng.vec(g.in_len());
            let mut w = rng.vec(g.weight_len());
            let mut bias = rng.vec(g.out_c);
            let r = rng.vec(g.out_len());
            let mut ws = vec![0.0; conv.workspace_len()];
            let (mut dx, mut dw, mut db) = (
                vec![9.0; x.len()],
                vec![9.0; w.len()],
                vec![9.0; bias.len()],
            );
            conv.backward(
                &x,
                &w,
                &r,
                Some(&mut dx),
                Some(&mut dw),
                Some(&mut db),
                &mut ws,
            );
            let loss =
                |x: &[f32], w: &[f32], b: &[f32]| dot64(&reference(&conv, x, w, Some(b)), &r);
            let (w0, b0) = (w.clone(), bias.clone());
            check("dilated dx", &mut x, &dx, 1e-2, |x| loss(x, &w0, &b0));
            let x0 = x.clone();
            check("dilated dw", &mut w, &dw, 1e-2, |w| loss(&x0, w, &b0));
            let w0 = w.clone();
            check("dilated db", &mut bias, &db, 1e-2, |b| loss(&x0, &w0, b));
        }
    }
}
