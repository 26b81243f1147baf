//! Forward convolution: the direct (implicit im2col) and pointwise paths,
//! and im2col + GEMM for the rest.

use super::epilogue::*;
use super::geometry::*;
use crate::kernels::SendPtr;
use crate::kernels::gemm::{MatRef, sgemm};
use crate::kernels::norm::BnAffine;
use rayon::prelude::*;

/// Copies im2col rows `m0 .. m0+count` (global output-pixel index) of group
/// `g` into `buf` (row-major, `k_cols` wide).
pub(super) fn im2col(
    geo: &Conv2dGeometry,
    x: &[f32],
    g: usize,
    m0: usize,
    count: usize,
    buf: &mut [f32],
) {
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

/// A run of output pixels whose input pixels (1×1 unpadded conv) are evenly
/// spaced: rows `m0 .. m0+count`, input pixel of the first at `x_pix`, then
/// every `x_step` pixels.
pub(super) struct Segment {
    pub(super) m0: usize,
    pub(super) count: usize,
    pub(super) x_pix: usize,
    pub(super) x_step: usize,
}

/// Pointwise segments covering output rows `lo .. hi`.
pub(super) fn segments(geo: &Conv2dGeometry, lo: usize, hi: usize, mut f: impl FnMut(Segment)) {
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

pub(super) fn check_lens(geo: &Conv2dGeometry, x: usize, w: usize, y: usize, bias: Option<usize>) {
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
            let (m0, count) = tile_span(t, rows);
            run_tile(m0, count, &mut []);
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
            for t in slot_tiles(s, slots, tiles) {
                let (m0, count) = tile_span(t, rows);
                run_tile(m0, count, buf);
            }
        });
}

/// A 1×1 stride-1 unpadded conv (groups 1) is a GEMM on the NHWC tensor as
/// it is: the weights are packed once and the microkernel reads each tile's
/// input pixels in place. No copy of the input.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_forward_pointwise(
    geo: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&BnAffine>,
    y: &mut [f32],
    ws: &mut [f32],
) {
    use crate::kernels::gemm::{conv_rows, pack_b, packed_b_len};
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
            pixel_rows(&mut rows[..count], m0, ic);
            conv_rows(x, &rows[..count], 1, ic, 0, wpack, oc, bias, c, oc);
            if let Some(bn) = bn {
                bn.apply_inplace(c, m0 * oc);
            }
        });
}

/// Direct convolution (groups = 1): per tile of `tr` output rows, copy the
/// input rows it reads into a zero-padded band (L1/L2-resident), then run the
/// GEMM microkernel with A rows addressed straight in the band: each im2col
/// row is `k_h` contiguous runs of `k_w·in_c` floats. No im2col matrix.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_forward_direct(
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
    use crate::kernels::gemm::{pack_b, packed_b_len};
    assert!(
        ws.len() >= geo.forward_workspace_len(),
        "conv2d_forward: workspace too small"
    );
    let (oc, kc) = (geo.out_c, geo.k_cols());
    let (wpack, rest) = ws.split_at_mut(packed_b_len(kc, oc));
    pack_b(kc, oc, MatRef::row_major(w, oc), wpack);
    let tiling = DirectTiling {
        tr,
        band,
        max_pool2,
    };
    conv2d_forward_direct_packed(geo, x, wpack, bias, bn, y, rest, tiling);
}

/// How [`conv2d_forward_direct_packed`] tiles: `tr` output rows per tile,
/// `band` floats of input band per slot, and whether tiles are max-pooled.
#[derive(Clone, Copy)]
pub(super) struct DirectTiling {
    pub(super) tr: usize,
    pub(super) band: usize,
    pub(super) max_pool2: bool,
}

/// [`conv2d_forward_direct`] with the weights already packed by
/// [`crate::kernels::gemm::pack_b`] (`k_cols × out_c`); `ws` holds the
/// slots' bands (and unpooled tiles).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_forward_direct_packed(
    geo: &Conv2dGeometry,
    x: &[f32],
    wpack: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&BnAffine>,
    y: &mut [f32],
    rest: &mut [f32],
    tiling: DirectTiling,
) {
    use crate::kernels::gemm::conv_rows;
    let DirectTiling {
        tr,
        band,
        max_pool2,
    } = tiling;
    let (oc, ic) = (geo.out_c, geo.in_c);
    let band_w = geo.in_w + geo.pad_left + geo.pad_right;
    let plan = DirectTiles::new(geo, tr);
    let tiles = plan.count;
    let slots = geo.slots.min(tiles);
    let yp = SendPtr(y.as_mut_ptr());
    // With pooling, each slot also holds one unpooled output tile.
    let tile = if max_pool2 { geo.pool2_tile_len(tr) } else { 0 };
    rest[..slots * (band + tile)]
        .par_chunks_mut(band + tile)
        .enumerate()
        .for_each(|(s, buf)| {
            let (buf, tile_buf) = buf.split_at_mut(band);
            let mut rows = [0usize; DIRECT_MAX_PIXELS];
            for t in slot_tiles(s, slots, tiles) {
                let tile = plan.tile(geo, t);
                let (m0, count) = tile.pixels(geo);
                tile.fill_bands(geo, x, buf, &mut rows);
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
                    // Pooled rows oy0/2 .. (oy0+rows)/2 of each image (whole
                    // images when several): disjoint per tile, contiguous.
                    let (pw, row) = (geo.out_w / 2, geo.out_w * oc);
                    let p0 = (tile.b * (geo.out_h / 2) + tile.oy0 / 2) * pw * oc;
                    let len = tile.imgs * tile.rows / 2 * pw * oc;
                    // SAFETY: tiles write disjoint pooled row ranges of y.
                    let py = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p0), len) };
                    max_pool2_tile(c, row, oc, py);
                }
            }
        });
}
