//! 2-D convolution in NHWC with HWIO weights, forward and backward.
//!
//! - Input `x`: `[batch][in_h][in_w][in_c]`, output `y`: `[batch][out_h][out_w][out_c]`.
//! - Weight `w`: HWIO, `[k_h][k_w][in_c/groups][out_c]`; output channel `co`
//!   belongs to group `co / (out_c/groups)` and sees input channels
//!   `g·in_c/groups ..`. With this layout the im2col matrix (rows = output
//!   pixels, columns = `[ky][kx][ci]`) times the weight viewed as a
//!   `(k_h·k_w·in_c/groups) × out_c` row-major matrix is the output.
//! - Bias: `[out_c]`, optional.
//!
//! Forward is im2col + GEMM, done in tiles of [`TILE_ROWS`] output pixels so
//! the column tile stays in L2; 1×1 unpadded convolutions skip im2col and run
//! the GEMM on the input directly (NHWC makes it a pixels × channels matrix;
//! strides just skip rows). Backward: d_input = dY·Wᵀ then col2im, per image
//! (no write races); d_weight = colᵀ·dY with per-slot partial sums reduced in
//! slot order; d_bias = column sums of dY, likewise.

use super::SendPtr;
use super::gemm::{MatRef, sgemm};
use super::norm::BnAffine;
use rayon::prelude::*;

/// Invalid convolution / pooling geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("a dimension is zero")]
    ZeroDim,
    #[error("window {window} larger than padded input {padded}")]
    WindowTooLarge { window: usize, padded: usize },
    #[error("channels {in_c} → {out_c} not divisible by groups {groups}")]
    Groups {
        in_c: usize,
        out_c: usize,
        groups: usize,
    },
    #[error("padding {pad} not smaller than window {window}")]
    PadTooLarge { pad: usize, window: usize },
}

/// Output pixels per im2col tile.
pub const TILE_ROWS: usize = 120;
/// Widest output row the direct path handles (its row table lives on the stack).
const DIRECT_MAX_PIXELS: usize = 1024;

/// Shape of one conv layer at one batch size. Construct with [`Conv2dGeometry::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    pub groups: usize,
    /// Independent work slots (each with its own scratch in the workspace);
    /// fixed at construction from the rayon pool size, and part of what makes
    /// results deterministic.
    pub slots: usize,
}

/// `floor((n + pad_total − f)/s) + 1`.
pub(crate) fn out_dim(n: usize, pad: usize, f: usize, s: usize) -> Result<usize, GeometryError> {
    if n == 0 || f == 0 || s == 0 {
        return Err(GeometryError::ZeroDim);
    }
    if f > n + pad {
        return Err(GeometryError::WindowTooLarge {
            window: f,
            padded: n + pad,
        });
    }
    Ok((n + pad - f) / s + 1)
}

impl Conv2dGeometry {
    /// `input` = (h, w, c), `kernel` = (k_h, k_w), `stride` = (s_h, s_w),
    /// `pad` = [top, left, bottom, right].
    pub fn new(
        batch: usize,
        input: (usize, usize, usize),
        out_c: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: [usize; 4],
        groups: usize,
    ) -> Result<Self, GeometryError> {
        let (in_h, in_w, in_c) = input;
        if batch == 0 || in_c == 0 || out_c == 0 || groups == 0 {
            return Err(GeometryError::ZeroDim);
        }
        if !in_c.is_multiple_of(groups) || !out_c.is_multiple_of(groups) {
            return Err(GeometryError::Groups {
                in_c,
                out_c,
                groups,
            });
        }
        let out_h = out_dim(in_h, pad[0] + pad[2], kernel.0, stride.0)?;
        let out_w = out_dim(in_w, pad[1] + pad[3], kernel.1, stride.1)?;
        Ok(Self {
            batch,
            in_h,
            in_w,
            in_c,
            out_h,
            out_w,
            out_c,
            k_h: kernel.0,
            k_w: kernel.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top: pad[0],
            pad_left: pad[1],
            pad_bottom: pad[2],
            pad_right: pad[3],
            groups,
            slots: rayon::current_num_threads().max(8),
        })
    }

    /// Same geometry, another batch size.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    pub fn in_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn out_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.cin_g() * self.out_c
    }
    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.in_c / self.groups
    }
    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.out_c / self.groups
    }
    /// Columns of the im2col matrix (per group): `k_h·k_w·in_c/groups`.
    pub fn k_cols(&self) -> usize {
        self.k_h * self.k_w * self.cin_g()
    }
    /// Output pixels, the GEMM's M: `batch·out_h·out_w`.
    pub fn rows(&self) -> usize {
        self.batch * self.out_h * self.out_w
    }
    /// Multiply-accumulates of the forward pass.
    pub fn macs(&self) -> u64 {
        self.rows() as u64 * self.k_cols() as u64 * self.out_c as u64
    }
    /// 1×1, stride 1, no padding: the input already is the im2col matrix.
    /// (Strided 1×1 convs go through im2col, which for them is a cheap row
    /// gather, so the GEMM runs on full tiles.)
    pub fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.pad_bottom == 0
            && self.pad_right == 0
    }
    fn tile_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            TILE_ROWS * self.k_cols()
        }
    }
    /// Scratch floats needed by [`conv2d_forward`].
    pub fn forward_workspace_len(&self) -> usize {
        let packed = super::gemm::packed_b_len(self.k_cols(), self.out_c);
        let direct = match self.direct_tiling() {
            Some((_, band)) => packed + self.slots * band,
            None => 0,
        };
        let pooled = match self.direct_tiling_pool2() {
            Some((tr, band)) => packed + self.slots * (band + tr * self.out_w * self.out_c),
            None => 0,
        };
        let pointwise = if self.is_direct_pointwise() {
            packed
        } else {
            0
        };
        (self.slots * self.tile_len())
            .max(direct)
            .max(pooled)
            .max(pointwise)
    }
    /// Whether [`conv2d_forward_bn`] can apply a 2×2 stride-2 max pool to
    /// its output tiles (direct path, even output size).
    pub fn can_fuse_max_pool2(&self) -> bool {
        self.direct_tiling_pool2().is_some()
    }
    /// Direct tiling with an even number of output rows per tile, so each
    /// tile holds whole 2×2 pooling windows.
    fn direct_tiling_pool2(&self) -> Option<(usize, usize)> {
        let (tr, _) = self.direct_tiling()?;
        if !self.out_h.is_multiple_of(2) || !self.out_w.is_multiple_of(2) {
            return None;
        }
        let tr = (tr.max(2) & !1).min(self.out_h);
        Some((tr, self.band_len(tr)))
    }
    /// Floats of the zero-padded input band read by `tr` output rows.
    fn band_len(&self, tr: usize) -> usize {
        let band_h = (tr - 1) * self.stride_h + self.k_h;
        let band_w = self.in_w + self.pad_left + self.pad_right;
        band_h * band_w * self.in_c
    }
    /// A pointwise conv with groups = 1: the microkernel reads its input
    /// rows in place (no band, no im2col).
    fn is_direct_pointwise(&self) -> bool {
        self.is_pointwise() && self.groups == 1 && self.out_w <= DIRECT_MAX_PIXELS
    }
    /// Tiling of the direct weight gradient: as [`Self::direct_tiling`], or
    /// for a direct pointwise conv the same row tiles with no band.
    fn direct_dw_tiling(&self) -> Option<(usize, usize)> {
        if self.is_direct_pointwise() {
            return Some(((TILE_ROWS / self.out_w).clamp(1, self.out_h), 0));
        }
        self.direct_tiling()
    }
    /// Direct (implicit im2col) forward: output rows per tile and the floats
    /// of one zero-padded input band. None when the im2col path is used.
    fn direct_tiling(&self) -> Option<(usize, usize)> {
        if self.groups != 1 || self.is_pointwise() || self.out_w > DIRECT_MAX_PIXELS {
            return None;
        }
        let tr = (TILE_ROWS / self.out_w).clamp(1, self.out_h);
        Some((tr, self.band_len(tr)))
    }
    /// Scratch floats needed by [`conv2d_backward`].
    pub fn backward_workspace_len(&self) -> usize {
        let scratch = match self.direct_tiling() {
            Some((_, band)) => band.max(self.tile_len()),
            None => self.tile_len(),
        };
        let params = self.slots * (scratch + self.weight_len() + self.out_c);
        let input = match self.transposed() {
            Some(t) => self.weight_len() + t.forward_workspace_len(),
            None => {
                super::gemm::packed_b_len(self.out_c, self.k_cols()) + self.slots * self.tile_len()
            }
        };
        params.max(input)
    }
    /// For stride 1 (not pointwise): the geometry of the convolution that maps
    /// dY to dX — same kernel flipped, channels swapped, padding `k − 1 − p`.
    fn transposed(&self) -> Option<Conv2dGeometry> {
        // Its GEMM has N = in_c/groups: narrow N wastes the 16-wide microkernel.
        let ok = self.stride_h == 1
            && self.stride_w == 1
            && self.cin_g() >= 16
            && !self.is_pointwise()
            && self.pad_top < self.k_h
            && self.pad_bottom < self.k_h
            && self.pad_left < self.k_w
            && self.pad_right < self.k_w;
        ok.then(|| Conv2dGeometry {
            batch: self.batch,
            in_h: self.out_h,
            in_w: self.out_w,
            in_c: self.out_c,
            out_h: self.in_h,
            out_w: self.in_w,
            out_c: self.in_c,
            k_h: self.k_h,
            k_w: self.k_w,
            stride_h: 1,
            stride_w: 1,
            pad_top: self.k_h - 1 - self.pad_top,
            pad_left: self.k_w - 1 - self.pad_left,
            pad_bottom: self.k_h - 1 - self.pad_bottom,
            pad_right: self.k_w - 1 - self.pad_right,
            groups: self.groups,
            slots: self.slots,
        })
    }
    /// Scratch floats that suffice for every conv call of this geometry.
    pub fn workspace_len(&self) -> usize {
        self.forward_workspace_len()
            .max(self.backward_workspace_len())
    }
}

/// Copies im2col rows `m0 .. m0+count` (global output-pixel index) of group
/// `g` into `buf` (row-major, `k_cols` wide).
fn im2col(geo: &Conv2dGeometry, x: &[f32], g: usize, m0: usize, count: usize, buf: &mut [f32]) {
    let kc = geo.k_cols();
    let cg = geo.cin_g();
    let plane = geo.out_h * geo.out_w;
    let (mut b, rem) = (m0 / plane, m0 % plane);
    let (mut oy, mut ox) = (rem / geo.out_w, rem % geo.out_w);
    let run = geo.k_w * cg;
    for row in buf[..count * kc].chunks_exact_mut(kc) {
        let iy0 = (oy * geo.stride_h) as isize - geo.pad_top as isize;
        let ix0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
        let full_x = ix0 >= 0 && ix0 as usize + geo.k_w <= geo.in_w;
        for (ky, seg) in row.chunks_exact_mut(run).enumerate() {
            let iy = iy0 + ky as isize;
            if iy < 0 || iy as usize >= geo.in_h {
                seg.fill(0.0);
                continue;
            }
            let base = (b * geo.in_h + iy as usize) * geo.in_w;
            if full_x && geo.groups == 1 {
                let start = (base + ix0 as usize) * geo.in_c;
                seg.copy_from_slice(&x[start..start + run]);
                continue;
            }
            for (kx, px) in seg.chunks_exact_mut(cg).enumerate() {
                let ix = ix0 + kx as isize;
                if ix < 0 || ix as usize >= geo.in_w {
                    px.fill(0.0);
                } else {
                    let start = (base + ix as usize) * geo.in_c + g * cg;
                    px.copy_from_slice(&x[start..start + cg]);
                }
            }
        }
        ox += 1;
        if ox == geo.out_w {
            ox = 0;
            oy += 1;
            if oy == geo.out_h {
                oy = 0;
                b += 1;
            }
        }
    }
}

/// Adds im2col-shaped rows (pixels `p0 .. p0+count` of image `b`, group `g`)
/// back into that image's input gradient `dx_img` (`[in_h][in_w][in_c]`).
fn col2im_add(
    geo: &Conv2dGeometry,
    buf: &[f32],
    g: usize,
    p0: usize,
    count: usize,
    dx_img: &mut [f32],
) {
    let kc = geo.k_cols();
    let cg = geo.cin_g();
    let (mut oy, mut ox) = (p0 / geo.out_w, p0 % geo.out_w);
    let run = geo.k_w * cg;
    for row in buf[..count * kc].chunks_exact(kc) {
        let iy0 = (oy * geo.stride_h) as isize - geo.pad_top as isize;
        let ix0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
        let full_x = ix0 >= 0 && ix0 as usize + geo.k_w <= geo.in_w;
        for (ky, seg) in row.chunks_exact(run).enumerate() {
            let iy = iy0 + ky as isize;
            if iy < 0 || iy as usize >= geo.in_h {
                continue;
            }
            let base = iy as usize * geo.in_w;
            if full_x && geo.groups == 1 {
                let start = (base + ix0 as usize) * geo.in_c;
                for (d, s) in dx_img[start..start + run].iter_mut().zip(seg) {
                    *d += *s;
                }
                continue;
            }
            for (kx, px) in seg.chunks_exact(cg).enumerate() {
                let ix = ix0 + kx as isize;
                if ix >= 0 && (ix as usize) < geo.in_w {
                    let start = (base + ix as usize) * geo.in_c + g * cg;
                    for (d, s) in dx_img[start..start + cg].iter_mut().zip(px) {
                        *d += *s;
                    }
                }
            }
        }
        ox += 1;
        if ox == geo.out_w {
            ox = 0;
            oy += 1;
        }
    }
}

/// A run of output pixels whose input pixels (1×1 unpadded conv) are evenly
/// spaced: rows `m0 .. m0+count`, input pixel of the first at `x_pix`, then
/// every `x_step` pixels.
struct Segment {
    m0: usize,
    count: usize,
    x_pix: usize,
    x_step: usize,
}

/// Pointwise segments covering output rows `lo .. hi`.
fn segments(geo: &Conv2dGeometry, lo: usize, hi: usize, mut f: impl FnMut(Segment)) {
    if geo.stride_h == 1 && geo.stride_w == 1 {
        if hi > lo {
            f(Segment {
                m0: lo,
                count: hi - lo,
                x_pix: lo,
                x_step: 1,
            });
        }
        return;
    }
    let mut m = lo;
    while m < hi {
        let row = m / geo.out_w; // b·out_h + oy
        let ox = m % geo.out_w;
        let (b, oy) = (row / geo.out_h, row % geo.out_h);
        let count = (geo.out_w - ox).min(hi - m);
        let x_pix = (b * geo.in_h + oy * geo.stride_h) * geo.in_w + ox * geo.stride_w;
        f(Segment {
            m0: m,
            count,
            x_pix,
            x_step: geo.stride_w,
        });
        m += count;
    }
}

fn check_lens(geo: &Conv2dGeometry, x: usize, w: usize, y: usize, bias: Option<usize>) {
    assert_eq!(x, geo.in_len(), "conv2d: input length");
    assert_eq!(w, geo.weight_len(), "conv2d: weight length");
    assert_eq!(y, geo.out_len(), "conv2d: output length");
    if let Some(b) = bias {
        assert_eq!(b, geo.out_c, "conv2d: bias length");
    }
}

/// `y = conv(x, w) + bias`. `ws` needs [`Conv2dGeometry::forward_workspace_len`] floats.
pub fn conv2d_forward(
    geo: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut [f32],
) {
    conv2d_forward_bn(geo, x, w, bias, None, false, y, ws)
}

/// [`conv2d_forward`] followed by an evaluation-mode BatchNorm `bn` (and
/// its residual Add and ReLU), applied to each output tile right after its
/// GEMM while it is in cache: the separate BatchNorm pass over the whole
/// output (memory-bound) disappears. With `max_pool2` (needs
/// [`Conv2dGeometry::can_fuse_max_pool2`]) the tile is then max-pooled 2×2,
/// stride 2, and only the pooled output (a quarter) is written to `y`.
/// Same values as the kernels run one after the other.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_bn(
    geo: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&BnAffine>,
    max_pool2: bool,
    y: &mut [f32],
    ws: &mut [f32],
) {
    let y_full = if max_pool2 { 4 * y.len() } else { y.len() };
    check_lens(geo, x.len(), w.len(), y_full, bias.map(|b| b.len()));
    if let Some(bn) = bn {
        assert_eq!(bn.channels(), geo.out_c, "conv2d_forward_bn: channels");
        if let Some(r) = bn.residual {
            assert!(!max_pool2, "conv2d_forward_bn: residual with pooling");
            assert_eq!(r.len(), y.len(), "conv2d_forward_bn: residual length");
        }
    }
    if max_pool2 {
        assert!(geo.can_fuse_max_pool2(), "conv2d_forward_bn: cannot pool");
        let (tr, band) = geo.direct_tiling_pool2().unwrap_or((2, 0));
        return conv2d_forward_direct(geo, x, w, bias, bn, true, y, ws, tr, band);
    }
    if let Some((tr, band)) = geo.direct_tiling() {
        return conv2d_forward_direct(geo, x, w, bias, bn, false, y, ws, tr, band);
    }
    if geo.is_direct_pointwise() {
        return conv2d_forward_pointwise(geo, x, w, bias, bn, y, ws);
    }
    let oc = geo.out_c;
    let (cg, og) = (geo.cin_g(), geo.cout_g());
    let rows = geo.rows();
    let yp = SendPtr(y.as_mut_ptr());
    let ylen = y.len();
    // One tile of output rows: fill with bias (or zero) then accumulate per group.
    let run_tile = |m0: usize, count: usize, buf: &mut [f32]| {
        // SAFETY: tiles cover disjoint row ranges of y.
        let yt = unsafe {
            std::slice::from_raw_parts_mut(yp.get().add(m0 * oc), (count * oc).min(ylen - m0 * oc))
        };
        let beta = if let Some(bias) = bias {
            for r in yt.chunks_exact_mut(oc) {
                r.copy_from_slice(bias);
            }
            1.0
        } else {
            0.0
        };
        for g in 0..geo.groups {
            let bmat = MatRef::row_major(&w[g * og..], oc);
            if geo.is_pointwise() {
                segments(geo, m0, m0 + count, |s| {
                    let a = MatRef {
                        data: &x[s.x_pix * geo.in_c + g * cg..],
                        rs: s.x_step * geo.in_c,
                        cs: 1,
                    };
                    let c = &mut yt[(s.m0 - m0) * oc + g * og..];
                    sgemm(s.count, og, cg, 1.0, a, bmat, beta, c, oc);
                });
            } else {
                let kc = geo.k_cols();
                im2col(geo, x, g, m0, count, buf);
                let a = MatRef::row_major(buf, kc);
                sgemm(count, og, kc, 1.0, a, bmat, beta, &mut yt[g * og..], oc);
            }
        }
        if let Some(bn) = bn {
            bn.apply_inplace(yt, m0 * oc);
        }
    };
    let tiles = rows.div_ceil(TILE_ROWS);
    let tl = geo.tile_len();
    if tl == 0 {
        (0..tiles).into_par_iter().for_each(|t| {
            let m0 = t * TILE_ROWS;
            run_tile(m0, TILE_ROWS.min(rows - m0), &mut []);
        });
        return;
    }
    assert!(
        ws.len() >= geo.forward_workspace_len(),
        "conv2d_forward: workspace too small"
    );
    let slots = geo.slots.min(tiles);
    ws[..slots * tl]
        .par_chunks_mut(tl)
        .enumerate()
        .for_each(|(s, buf)| {
            for t in (s * tiles / slots)..((s + 1) * tiles / slots) {
                let m0 = t * TILE_ROWS;
                run_tile(m0, TILE_ROWS.min(rows - m0), buf);
            }
        });
}

/// A 1×1 stride-1 unpadded conv (groups 1) is a GEMM on the NHWC tensor as
/// it is: the weights are packed once and the microkernel reads each tile's
/// input pixels in place. No copy of the input.
#[allow(clippy::too_many_arguments)]
fn conv2d_forward_pointwise(
    geo: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&BnAffine>,
    y: &mut [f32],
    ws: &mut [f32],
) {
    use super::gemm::{conv_rows, pack_b, packed_b_len};
    let (ic, oc) = (geo.in_c, geo.out_c);
    let wpack = &mut ws[..packed_b_len(ic, oc)];
    pack_b(ic, oc, MatRef::row_major(w, oc), wpack);
    let wpack = &*wpack;
    y.par_chunks_mut(TILE_ROWS * oc)
        .enumerate()
        .for_each(|(t, c)| {
            let m0 = t * TILE_ROWS;
            let count = c.len() / oc;
            let mut rows = [0usize; TILE_ROWS];
            for (i, r) in rows[..count].iter_mut().enumerate() {
                *r = (m0 + i) * ic;
            }
            conv_rows(x, &rows[..count], 1, ic, 0, wpack, oc, bias, c, oc);
            if let Some(bn) = bn {
                bn.apply_inplace(c, m0 * oc);
            }
        });
}

/// dX of a direct pointwise conv: dY·Wᵀ with Wᵀ packed once, each tile's
/// rows of dY read in place and written straight into dX.
fn conv2d_backward_input_pointwise(
    geo: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    use super::gemm::{conv_rows, pack_b, packed_b_len};
    let (ic, oc) = (geo.in_c, geo.out_c);
    let wtp = &mut ws[..packed_b_len(oc, ic)];
    pack_b(oc, ic, MatRef::transposed(w, oc), wtp);
    let wtp = &*wtp;
    dx.par_chunks_mut(TILE_ROWS * ic)
        .enumerate()
        .for_each(|(t, c)| {
            let m0 = t * TILE_ROWS;
            let count = c.len() / ic;
            let mut rows = [0usize; TILE_ROWS];
            for (i, r) in rows[..count].iter_mut().enumerate() {
                *r = (m0 + i) * oc;
            }
            conv_rows(dy, &rows[..count], 1, oc, 0, wtp, ic, None, c, ic);
        });
}

/// Copies the input rows read by output rows `oy0 .. oy0+trr` of image `b`
/// into `buf` with zero padding (width `in_w + pad_left + pad_right`), and
/// writes each output pixel's offset in the band to `rows`. Returns the pixel count.
fn fill_band(
    geo: &Conv2dGeometry,
    x: &[f32],
    b: usize,
    oy0: usize,
    trr: usize,
    buf: &mut [f32],
    rows: &mut [usize],
) -> usize {
    let ic = geo.in_c;
    let band_w = geo.in_w + geo.pad_left + geo.pad_right;
    let band_h = (trr - 1) * geo.stride_h + geo.k_h;
    for (br, row) in buf.chunks_exact_mut(band_w * ic).take(band_h).enumerate() {
        let iy = (oy0 * geo.stride_h + br) as isize - geo.pad_top as isize;
        if iy < 0 || iy as usize >= geo.in_h {
            row.fill(0.0);
            continue;
        }
        let src = &x[((b * geo.in_h + iy as usize) * geo.in_w) * ic..][..geo.in_w * ic];
        row[..geo.pad_left * ic].fill(0.0);
        row[geo.pad_left * ic..(geo.pad_left + geo.in_w) * ic].copy_from_slice(src);
        row[(geo.pad_left + geo.in_w) * ic..].fill(0.0);
    }
    let count = trr * geo.out_w;
    for (i, r) in rows[..count].iter_mut().enumerate() {
        let (ty, ox) = (i / geo.out_w, i % geo.out_w);
        *r = (ty * geo.stride_h * band_w + ox * geo.stride_w) * ic;
    }
    count
}

/// Direct convolution (groups = 1): per tile of `tr` output rows, copy the
/// input rows it reads into a zero-padded band (L1/L2-resident), then run the
/// GEMM microkernel with A rows addressed straight in the band: each im2col
/// row is `k_h` contiguous runs of `k_w·in_c` floats. No im2col matrix.
#[allow(clippy::too_many_arguments)]
fn conv2d_forward_direct(
    geo: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&BnAffine>,
    max_pool2: bool,
    y: &mut [f32],
    ws: &mut [f32],
    tr: usize,
    band: usize,
) {
    use super::gemm::{conv_rows, pack_b, packed_b_len};
    assert!(
        ws.len() >= geo.forward_workspace_len(),
        "conv2d_forward: workspace too small"
    );
    let (oc, ic, kc) = (geo.out_c, geo.in_c, geo.k_cols());
    let (wpack, rest) = ws.split_at_mut(packed_b_len(kc, oc));
    pack_b(kc, oc, MatRef::row_major(w, oc), wpack);
    let wpack = &*wpack;
    let band_w = geo.in_w + geo.pad_left + geo.pad_right;
    let per_img = geo.out_h.div_ceil(tr);
    let tiles = geo.batch * per_img;
    let slots = geo.slots.min(tiles);
    let yp = SendPtr(y.as_mut_ptr());
    let plane = geo.out_h * geo.out_w;
    // With pooling, each slot also holds one unpooled output tile.
    let tile = if max_pool2 { tr * geo.out_w * oc } else { 0 };
    rest[..slots * (band + tile)]
        .par_chunks_mut(band + tile)
        .enumerate()
        .for_each(|(s, buf)| {
            let (buf, tile_buf) = buf.split_at_mut(band);
            let mut rows = [0usize; DIRECT_MAX_PIXELS];
            for t in (s * tiles / slots)..((s + 1) * tiles / slots) {
                let (b, oy0) = (t / per_img, (t % per_img) * tr);
                let trr = tr.min(geo.out_h - oy0);
                let count = fill_band(geo, x, b, oy0, trr, buf, &mut rows);
                let m0 = b * plane + oy0 * geo.out_w;
                let c = if max_pool2 {
                    &mut tile_buf[..count * oc]
                } else {
                    // SAFETY: tiles write disjoint row ranges of y.
                    unsafe { std::slice::from_raw_parts_mut(yp.get().add(m0 * oc), count * oc) }
                };
                conv_rows(
                    buf,
                    &rows[..count],
                    geo.k_h,
                    geo.k_w * ic,
                    band_w * ic,
                    wpack,
                    oc,
                    bias,
                    c,
                    oc,
                );
                if let Some(bn) = bn {
                    bn.apply_inplace(c, m0 * oc);
                }
                if max_pool2 {
                    // Pooled rows oy0/2 .. (oy0+trr)/2 of image b: disjoint per tile.
                    let (pw, row) = (geo.out_w / 2, geo.out_w * oc);
                    let p0 = (b * (geo.out_h / 2) + oy0 / 2) * pw * oc;
                    // SAFETY: tiles write disjoint pooled row ranges of y.
                    let py = unsafe {
                        std::slice::from_raw_parts_mut(yp.get().add(p0), trr / 2 * pw * oc)
                    };
                    max_pool2_tile(c, row, oc, py);
                }
            }
        });
}

/// 2×2 stride-2 max pool of a tile of whole output rows (`row` floats each,
/// `c` channels) into `y`, comparing in the window order and with the same
/// select as [`super::pool::max_pool2d_forward`], so values agree bit for bit.
fn max_pool2_tile(t: &[f32], row: usize, c: usize, y: &mut [f32]) {
    for (pr, yrow) in y.chunks_exact_mut(row / 2).enumerate() {
        let top = &t[2 * pr * row..];
        for (px, ym) in yrow.chunks_exact_mut(c).enumerate() {
            ym.fill(f32::NEG_INFINITY);
            for dy in 0..2 {
                for dx in 0..2 {
                    let x0 = dy * row + (2 * px + dx) * c;
                    for (m, &v) in ym.iter_mut().zip(&top[x0..x0 + c]) {
                        *m = if v > *m { v } else { *m };
                    }
                }
            }
        }
    }
}

/// Gradients of [`conv2d_forward`]. Each of `dx`, `dw`, `db` is optional and
/// overwritten. `ws` needs [`Conv2dGeometry::backward_workspace_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    geo: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    ws: &mut [f32],
) {
    check_lens(geo, x.len(), w.len(), dy.len(), None);
    assert!(
        ws.len() >= geo.backward_workspace_len(),
        "conv2d_backward: workspace too small"
    );
    if let Some(dx) = dx {
        assert_eq!(dx.len(), geo.in_len(), "conv2d_backward: dx length");
        conv2d_backward_input(geo, w, dy, dx, ws);
    }
    if dw.is_some() || db.is_some() {
        match geo.direct_dw_tiling() {
            Some((tr, band)) if geo.out_c.is_multiple_of(16) => {
                conv2d_backward_params_direct(geo, x, dy, dw, db, ws, tr, band)
            }
            _ => conv2d_backward_params(geo, x, dy, dw, db, ws),
        }
    }
}

fn conv2d_backward_input(
    geo: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    let oc = geo.out_c;
    let (cg, og) = (geo.cin_g(), geo.cout_g());
    let kc = geo.k_cols();
    if let Some(t) = geo.transposed() {
        // dX = conv(dY, flipped Wᵀ): runs on the tiled forward path, no col2im.
        let (wt, rest) = ws.split_at_mut(geo.weight_len());
        flip_weights(geo, w, wt);
        conv2d_forward(&t, dy, wt, None, dx, rest);
        return;
    }
    if geo.is_direct_pointwise() {
        return conv2d_backward_input_pointwise(geo, w, dy, dx, ws);
    }
    if geo.is_pointwise() {
        let stride1 = geo.stride_h == 1 && geo.stride_w == 1;
        if !stride1 {
            dx.par_chunks_mut(super::ELEM_CHUNK)
                .for_each(|c| c.fill(0.0));
        }
        let rows = geo.rows();
        let tiles = rows.div_ceil(TILE_ROWS);
        let dxp = SendPtr(dx.as_mut_ptr());
        let dxlen = dx.len();
        (0..tiles).into_par_iter().for_each(|t| {
            let m0 = t * TILE_ROWS;
            segments(geo, m0, (m0 + TILE_ROWS).min(rows), |s| {
                for g in 0..geo.groups {
                    let a = MatRef::row_major(&dy[s.m0 * oc + g * og..], oc);
                    let b = MatRef {
                        data: &w[g * og..],
                        rs: 1,
                        cs: oc,
                    };
                    let off = s.x_pix * geo.in_c + g * cg;
                    // SAFETY: distinct output pixels of a 1×1 unpadded conv read
                    // distinct input pixels, so segments write disjoint rows of dx.
                    let c =
                        unsafe { std::slice::from_raw_parts_mut(dxp.get().add(off), dxlen - off) };
                    sgemm(s.count, cg, og, 1.0, a, b, 0.0, c, s.x_step * geo.in_c);
                }
            });
        });
        return;
    }
    let tl = geo.tile_len();
    let img_in = geo.in_h * geo.in_w * geo.in_c;
    let plane = geo.out_h * geo.out_w;
    let slots = geo.slots.min(geo.batch);
    let dxp = SendPtr(dx.as_mut_ptr());
    // groups = 1: Wᵀ packed once, each column tile dY·Wᵀ by the
    // direct-conv microkernel (one segment of out_c per pixel), then col2im.
    let wt_len = super::gemm::packed_b_len(oc, kc);
    if geo.groups == 1 {
        let (wtp, rest) = ws.split_at_mut(wt_len);
        super::gemm::pack_b(oc, kc, MatRef::transposed(w, oc), wtp);
        let wtp = &*wtp;
        rest[..slots * tl]
            .par_chunks_mut(tl)
            .enumerate()
            .for_each(|(s, buf)| {
                let mut rows = [0usize; TILE_ROWS];
                for b in (s * geo.batch / slots)..((s + 1) * geo.batch / slots) {
                    // SAFETY: each image's gradient is written by exactly one slot.
                    let dx_img = unsafe {
                        std::slice::from_raw_parts_mut(dxp.get().add(b * img_in), img_in)
                    };
                    dx_img.fill(0.0);
                    let mut p0 = 0;
                    while p0 < plane {
                        let count = TILE_ROWS.min(plane - p0);
                        let m0 = b * plane + p0;
                        for (i, r) in rows[..count].iter_mut().enumerate() {
                            *r = (m0 + i) * oc;
                        }
                        super::gemm::conv_rows(
                            dy,
                            &rows[..count],
                            1,
                            oc,
                            0,
                            wtp,
                            kc,
                            None,
                            &mut buf[..count * kc],
                            kc,
                        );
                        col2im_add(geo, buf, 0, p0, count, dx_img);
                        p0 += count;
                    }
                }
            });
        return;
    }
    ws[..slots * tl]
        .par_chunks_mut(tl)
        .enumerate()
        .for_each(|(s, buf)| {
            for b in (s * geo.batch / slots)..((s + 1) * geo.batch / slots) {
                // SAFETY: each image's gradient is written by exactly one slot.
                let dx_img =
                    unsafe { std::slice::from_raw_parts_mut(dxp.get().add(b * img_in), img_in) };
                dx_img.fill(0.0);
                let mut p0 = 0;
                while p0 < plane {
                    let count = TILE_ROWS.min(plane - p0);
                    let m0 = b * plane + p0;
                    for g in 0..geo.groups {
                        let a = MatRef::row_major(&dy[m0 * oc + g * og..], oc);
                        let bm = MatRef {
                            data: &w[g * og..],
                            rs: 1,
                            cs: oc,
                        };
                        sgemm(count, kc, og, 1.0, a, bm, 0.0, buf, kc);
                        col2im_add(geo, buf, g, p0, count, dx_img);
                    }
                    p0 += count;
                }
            }
        });
}

/// `wt[ky'][kx'][co_local][ci] = w[kh−1−ky'][kw−1−kx'][ci mod cin_g][g·cout_g + co_local]`,
/// the HWIO weight of the transposed convolution (groups preserved).
fn flip_weights(geo: &Conv2dGeometry, w: &[f32], wt: &mut [f32]) {
    let (cg, og, oc, ic) = (geo.cin_g(), geo.cout_g(), geo.out_c, geo.in_c);
    for ky in 0..geo.k_h {
        for kx in 0..geo.k_w {
            let src_tap = (geo.k_h - 1 - ky) * geo.k_w + (geo.k_w - 1 - kx);
            let dst_tap = ky * geo.k_w + kx;
            for col in 0..og {
                let drow = &mut wt[(dst_tap * og + col) * ic..(dst_tap * og + col + 1) * ic];
                for (ci, d) in drow.iter_mut().enumerate() {
                    let g = ci / cg;
                    *d = w[(src_tap * cg + ci % cg) * oc + g * og + col];
                }
            }
        }
    }
}

/// dW and db of a groups=1 conv without im2col: per tile, the input band of
/// the forward pass, then for each run of 6 im2col columns (inside one
/// `k_w·in_c` segment) `dW[kk..kk+6][:] += Σ_p band[row_p + kk..] ⊗ dY[p]`.
/// Per-slot partials in dW layout, reduced in slot order.
#[allow(clippy::too_many_arguments)]
fn conv2d_backward_params_direct(
    geo: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    ws: &mut [f32],
    tr: usize,
    band: usize,
) {
    use super::gemm::{conv_dw_rows, dw_block_rows};
    let block = dw_block_rows(super::isa::active());
    let (oc, ic) = (geo.out_c, geo.in_c);
    let wl = geo.weight_len();
    let scratch = band.max(geo.tile_len());
    let per = scratch + wl + oc;
    let per_img = geo.out_h.div_ceil(tr);
    let tiles = geo.batch * per_img;
    let slots = geo.slots.min(tiles);
    let plane = geo.out_h * geo.out_w;
    let band_w = geo.in_w + geo.pad_left + geo.pad_right;
    let seg = geo.k_w * ic;
    let (want_dw, want_db) = (dw.is_some(), db.is_some());
    ws[..slots * per]
        .par_chunks_mut(per)
        .enumerate()
        .for_each(|(s, slot)| {
            let (buf, rest) = slot.split_at_mut(scratch);
            let (pw, pb) = rest.split_at_mut(wl);
            pw.fill(0.0);
            pb.fill(0.0);
            let mut rows = [0usize; DIRECT_MAX_PIXELS];
            for t in (s * tiles / slots)..((s + 1) * tiles / slots) {
                let (b, oy0) = (t / per_img, (t % per_img) * tr);
                let trr = tr.min(geo.out_h - oy0);
                let m0 = b * plane + oy0 * geo.out_w;
                let count = trr * geo.out_w;
                let dyt = &dy[m0 * oc..(m0 + count) * oc];
                if want_db {
                    for r in dyt.chunks_exact(oc) {
                        for (p, v) in pb.iter_mut().zip(r) {
                            *p += *v;
                        }
                    }
                }
                if !want_dw {
                    continue;
                }
                // A pointwise conv's im2col rows are its input pixels.
                let src: &[f32] = if band == 0 {
                    for (i, r) in rows[..count].iter_mut().enumerate() {
                        *r = (m0 + i) * ic;
                    }
                    x
                } else {
                    fill_band(geo, x, b, oy0, trr, buf, &mut rows);
                    buf
                };
                for ky in 0..geo.k_h {
                    let mut q0 = 0;
                    while q0 < seg {
                        let mr = block.min(seg - q0);
                        let kk = ky * seg + q0;
                        let done = conv_dw_rows(
                            src,
                            &rows[..count],
                            ky * band_w * ic + q0,
                            mr,
                            dyt,
                            oc,
                            oc,
                            &mut pw[kk * oc..],
                            oc,
                        );
                        assert!(done, "conv2d_backward_params_direct: unsupported shape");
                        q0 += mr;
                    }
                }
            }
        });
    let parts = &*ws;
    if let Some(dw) = dw {
        assert_eq!(dw.len(), wl, "conv2d_backward: dw length");
        dw.par_chunks_mut(1024).enumerate().for_each(|(ci, out)| {
            let i0 = ci * 1024;
            out.fill(0.0);
            for s in 0..slots {
                let p = &parts[s * per + scratch + i0..][..out.len()];
                for (o, v) in out.iter_mut().zip(p) {
                    *o += *v;
                }
            }
        });
    }
    if let Some(db) = db {
        assert_eq!(db.len(), oc, "conv2d_backward: db length");
        db.fill(0.0);
        for s in 0..slots {
            let p = &parts[s * per + scratch + wl..s * per + per];
            for (o, v) in db.iter_mut().zip(p) {
                *o += *v;
            }
        }
    }
}

fn conv2d_backward_params(
    geo: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    ws: &mut [f32],
) {
    let oc = geo.out_c;
    let (cg, og) = (geo.cin_g(), geo.cout_g());
    let kc = geo.k_cols();
    let wl = geo.weight_len();
    let tl = geo.tile_len();
    let per = tl + wl + oc;
    let rows = geo.rows();
    let tiles = rows.div_ceil(TILE_ROWS);
    let slots = geo.slots.min(tiles);
    let want_dw = dw.is_some();
    let want_db = db.is_some();
    ws[..slots * per]
        .par_chunks_mut(per)
        .enumerate()
        .for_each(|(s, slot)| {
            let (buf, rest) = slot.split_at_mut(tl);
            let (pw, pb) = rest.split_at_mut(wl);
            pw.fill(0.0);
            pb.fill(0.0);
            for t in (s * tiles / slots)..((s + 1) * tiles / slots) {
                let m0 = t * TILE_ROWS;
                let count = TILE_ROWS.min(rows - m0);
                if want_db {
                    for r in dy[m0 * oc..(m0 + count) * oc].chunks_exact(oc) {
                        for (p, v) in pb.iter_mut().zip(r) {
                            *p += *v;
                        }
                    }
                }
                if !want_dw {
                    continue;
                }
                // The partial is dWᵀ (out_c × k_cols): dWᵀ_g += dY_gᵀ · col_g.
                // A = dYᵀ packs cheaply (6 channels per pixel), B = col packs
                // with vector copies; the other orientation would transpose
                // the whole column tile while packing.
                for g in 0..geo.groups {
                    let a = MatRef {
                        data: &dy[m0 * oc + g * og..],
                        rs: 1,
                        cs: oc,
                    };
                    let c = &mut pw[g * og * kc..];
                    if geo.is_pointwise() {
                        let b = MatRef::row_major(&x[m0 * geo.in_c + g * cg..], geo.in_c);
                        sgemm(og, cg, count, 1.0, a, b, 1.0, c, kc);
                    } else {
                        im2col(geo, x, g, m0, count, buf);
                        sgemm(
                            og,
                            kc,
                            count,
                            1.0,
                            a,
                            MatRef::row_major(buf, kc),
                            1.0,
                            c,
                            kc,
                        );
                    }
                }
            }
        });
    // Reduce the slot partials in slot order.
    let parts = &*ws;
    if let Some(dw) = dw {
        assert_eq!(dw.len(), wl, "conv2d_backward: dw length");
        // dw[kk][j] = Σ_s partial_s[j][kk] (partials hold dWᵀ; with groups,
        // row j = g·cout_g + co of dWᵀ is exactly column j of HWIO).
        dw.par_chunks_mut(oc).enumerate().for_each(|(kk, out)| {
            out.fill(0.0);
            for s in 0..slots {
                let p = &parts[s * per + tl..s * per + tl + wl];
                for (j, o) in out.iter_mut().enumerate() {
                    *o += p[j * kc + kk];
                }
            }
        });
    }
    if let Some(db) = db {
        assert_eq!(db.len(), oc, "conv2d_backward: db length");
        db.fill(0.0);
        for s in 0..slots {
            let p = &parts[s * per + tl + wl..s * per + per];
            for (o, v) in db.iter_mut().zip(p) {
                *o += *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    /// Direct definition, f64.
    fn reference(geo: &Conv2dGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
        let mut y = vec![0f64; geo.out_len()];
        let (cg, og) = (geo.cin_g(), geo.cout_g());
        for b in 0..geo.batch {
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    for co in 0..geo.out_c {
                        let g = co / og;
                        let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                        for ky in 0..geo.k_h {
                            for kx in 0..geo.k_w {
                                let iy = (oy * geo.stride_h + ky) as isize - geo.pad_top as isize;
                                let ix = (ox * geo.stride_w + kx) as isize - geo.pad_left as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy as usize >= geo.in_h
                                    || ix as usize >= geo.in_w
                                {
                                    continue;
                                }
                                for ci in 0..cg {
                                    let xv = x[((b * geo.in_h + iy as usize) * geo.in_w
                                        + ix as usize)
                                        * geo.in_c
                                        + g * cg
                                        + ci];
                                    let wv = w[((ky * geo.k_w + kx) * cg + ci) * geo.out_c + co];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((b * geo.out_h + oy) * geo.out_w + ox) * geo.out_c + co] = acc;
                    }
                }
            }
        }
        y
    }

    fn cases() -> Vec<Conv2dGeometry> {
        vec![
            Conv2dGeometry::new(2, (5, 6, 3), 4, (3, 3), (1, 1), [1, 1, 1, 1], 1).unwrap(),
            Conv2dGeometry::new(2, (7, 5, 4), 6, (3, 2), (2, 1), [0, 1, 2, 0], 2).unwrap(),
            Conv2dGeometry::new(1, (6, 6, 3), 5, (1, 1), (1, 1), [0; 4], 1).unwrap(),
            // even outputs: the max-pool epilogue (tiles of 6 rows, and of 2)
            Conv2dGeometry::new(2, (6, 8, 3), 16, (3, 3), (1, 1), [1; 4], 1).unwrap(),
            Conv2dGeometry::new(1, (6, 64, 3), 8, (3, 3), (1, 1), [1; 4], 1).unwrap(),
            Conv2dGeometry::new(2, (5, 7, 4), 4, (1, 1), (2, 2), [0; 4], 2).unwrap(),
            Conv2dGeometry::new(1, (6, 5, 4), 4, (3, 3), (2, 2), [1, 0, 1, 1], 4).unwrap(),
            Conv2dGeometry::new(1, (4, 4, 2), 3, (4, 4), (1, 1), [0; 4], 1).unwrap(),
            // stride 1 with groups and asymmetric padding: dx via the flipped conv
            Conv2dGeometry::new(2, (5, 6, 34), 6, (3, 2), (1, 1), [2, 0, 0, 1], 2).unwrap(),
            // strided 1×1, groups 1: direct path with one segment per row
            Conv2dGeometry::new(2, (5, 7, 4), 4, (1, 1), (2, 2), [0; 4], 1).unwrap(),
            // output row wider than a tile: one output row per tile
            Conv2dGeometry::new(1, (3, 130, 2), 3, (3, 3), (1, 1), [1; 4], 1).unwrap(),
            // out_c multiple of 16: direct dW path (stem-like seg of 9, and strided)
            Conv2dGeometry::new(2, (5, 6, 3), 16, (3, 3), (1, 1), [1; 4], 1).unwrap(),
            Conv2dGeometry::new(1, (7, 6, 5), 32, (3, 3), (2, 2), [0, 0, 1, 1], 1).unwrap(),
            // padding ≥ kernel: dx via col2im
            Conv2dGeometry::new(1, (4, 4, 2), 2, (2, 2), (1, 1), [2, 2, 0, 0], 1).unwrap(),
            // pointwise, out_c a multiple of 16: the direct pointwise forward, dx and dW
            Conv2dGeometry::new(2, (3, 5, 20), 32, (1, 1), (1, 1), [0; 4], 1).unwrap(),
            // 48 outputs (a pair of panels and a single one), dW segments of 21
            Conv2dGeometry::new(1, (4, 5, 7), 48, (3, 3), (1, 1), [1; 4], 1).unwrap(),
        ]
    }

    #[test]
    fn geometry_formula() {
        let g = Conv2dGeometry::new(32, (64, 64, 3), 32, (3, 3), (1, 1), [1; 4], 1).unwrap();
        assert_eq!((g.out_h, g.out_w), (64, 64));
        let g = Conv2dGeometry::new(1, (32, 32, 32), 64, (3, 3), (2, 2), [0, 0, 1, 1], 1).unwrap();
        assert_eq!((g.out_h, g.out_w), (16, 16));
        let g = Conv2dGeometry::new(1, (7, 7, 1), 1, (3, 3), (2, 2), [0; 4], 1).unwrap();
        assert_eq!((g.out_h, g.out_w), (3, 3));
        assert!(Conv2dGeometry::new(1, (2, 2, 1), 1, (3, 3), (1, 1), [0; 4], 1).is_err());
        assert!(Conv2dGeometry::new(1, (4, 4, 3), 4, (1, 1), (1, 1), [0; 4], 2).is_err());
    }

    #[test]
    fn forward_matches_reference() {
        let mut rng = Rng::new(3);
        for geo in cases() {
            let x = rng.vec(geo.in_len());
            let w = rng.vec(geo.weight_len());
            let bias = rng.vec(geo.out_c);
            let mut ws = vec![0.0; geo.workspace_len()];
            for bias in [None, Some(&bias[..])] {
                let mut y = vec![f32::NAN; geo.out_len()];
                conv2d_forward(&geo, &x, &w, bias, &mut y, &mut ws);
                let want = reference(&geo, &x, &w, bias);
                for (a, b) in y.iter().zip(&want) {
                    assert!((*a as f64 - b).abs() < 1e-4, "{geo:?}: {a} vs {b}");
                }
            }
        }
    }

    /// The BatchNorm epilogue gives exactly conv then BatchNorm (+ ReLU), on
    /// the direct, im2col and pointwise paths.
    #[test]
    fn forward_with_bn_epilogue_equals_conv_then_bn() {
        use crate::kernels::norm::batch_norm_eval_forward;
        let mut rng = Rng::new(4);
        for geo in cases() {
            let c = geo.out_c;
            let x = rng.vec(geo.in_len());
            let w = rng.vec(geo.weight_len());
            let bias = rng.vec(c);
            let (gamma, beta, mean) = (rng.vec(c), rng.vec(c), rng.vec(c));
            let var: Vec<f32> = rng.vec(c).iter().map(|v| v.abs() + 0.1).collect();
            let mut invstd = vec![0.0; c];
            let mut ws = vec![0.0; geo.workspace_len()];
            for relu in [false, true] {
                let mut conv = vec![0.0; geo.out_len()];
                conv2d_forward(&geo, &x, &w, Some(&bias), &mut conv, &mut ws);
                // BatchNorm as the model runs it, with its ReLU and without.
                let [want, plain_bn] = [relu, false].map(|r| {
                    let mut out = vec![0.0; geo.out_len()];
                    batch_norm_eval_forward(
                        &conv,
                        &mut out,
                        c,
                        &gamma,
                        &beta,
                        &mean,
                        &var,
                        1e-3,
                        &mut invstd,
                        r,
                    );
                    out
                });
                let mut bn = BnAffine {
                    mean: &mean,
                    invstd: &invstd,
                    gamma: &gamma,
                    beta: &beta,
                    relu,
                    residual: None,
                };
                let mut y = vec![f32::NAN; geo.out_len()];
                conv2d_forward_bn(&geo, &x, &w, Some(&bias), Some(&bn), false, &mut y, &mut ws);
                assert_eq!(y, want, "{geo:?} relu {relu}");
                // Pooled in the epilogue equals the max-pool kernel on the output.
                if geo.can_fuse_max_pool2() {
                    let pg = crate::kernels::Pool2dGeometry::new(
                        geo.batch,
                        (geo.out_h, geo.out_w, c),
                        (2, 2),
                        (2, 2),
                        [0; 4],
                        false,
                    )
                    .unwrap();
                    let mut pooled = vec![0.0; pg.out_len()];
                    crate::kernels::pool::max_pool2d_forward(&pg, &want, &mut pooled);
                    let mut yp = vec![f32::NAN; pg.out_len()];
                    conv2d_forward_bn(&geo, &x, &w, Some(&bias), Some(&bn), true, &mut yp, &mut ws);
                    assert_eq!(yp, pooled, "{geo:?} pooled relu {relu}");
                }
                // relu(bn(conv) + skip) equals BN, then the Add kernel with its ReLU.
                let skip = rng.vec(geo.out_len());
                let mut sum = vec![0.0; geo.out_len()];
                let inputs: [&[f32]; 2] = [&plain_bn, &skip];
                crate::kernels::misc::add_forward(2, |k| inputs[k], &mut sum, relu);
                bn.residual = Some(&skip);
                conv2d_forward_bn(&geo, &x, &w, Some(&bias), Some(&bn), false, &mut y, &mut ws);
                assert_eq!(y, sum, "{geo:?} residual relu {relu}");
            }
        }
    }

    #[test]
    fn large_tiles_and_threads_deterministic() {
        // Several tiles, multiple images per slot.
        let geo = Conv2dGeometry::new(9, (13, 11, 8), 16, (3, 3), (1, 1), [1; 4], 1).unwrap();
        let mut rng = Rng::new(4);
        let x = rng.vec(geo.in_len());
        let w = rng.vec(geo.weight_len());
        let dy = rng.vec(geo.out_len());
        let mut ws = vec![0.0; geo.workspace_len()];
        let run = |ws: &mut [f32]| {
            let mut y = vec![0.0; geo.out_len()];
            conv2d_forward(&geo, &x, &w, None, &mut y, ws);
            let (mut dx, mut dw, mut db) = (
                vec![0.0; geo.in_len()],
                vec![0.0; geo.weight_len()],
                vec![0.0; 16],
            );
            conv2d_backward(
                &geo,
                &x,
                &w,
                &dy,
                Some(&mut dx),
                Some(&mut dw),
                Some(&mut db),
                ws,
            );
            (y, dx, dw, db)
        };
        let r1 = run(&mut ws);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let r2 = pool.install(|| run(&mut ws));
        assert_eq!(r1, r2);
        let want = reference(&geo, &x, &w, None);
        for (a, b) in r1.0.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-4);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(5);
        for geo in cases() {
            let mut x = rng.vec(geo.in_len());
            let mut w = rng.vec(geo.weight_len());
            let mut bias = rng.vec(geo.out_c);
            let r = rng.vec(geo.out_len());
            let mut ws = vec![0.0; geo.workspace_len()];
            let (mut dx, mut dw, mut db) = (
                vec![0.0; geo.in_len()],
                vec![0.0; geo.weight_len()],
                vec![0.0; geo.out_c],
            );
            conv2d_backward(
                &geo,
                &x,
                &w,
                &r,
                Some(&mut dx),
                Some(&mut dw),
                Some(&mut db),
                &mut ws,
            );
            let mut fwd = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; geo.out_len()];
                conv2d_forward(&geo, x, w, Some(b), &mut y, &mut ws);
                dot64(&y, &r)
            };
            let (w0, b0) = (w.clone(), bias.clone());
            check("conv dx", &mut x, &dx, 1e-2, |x| fwd(x, &w0, &b0));
            let x0 = x.clone();
            check("conv dw", &mut w, &dw, 1e-2, |w| fwd(&x0, w, &b0));
            check("conv db", &mut bias, &db, 1e-2, |b| fwd(&x0, &w0, b));
        }
    }
}
