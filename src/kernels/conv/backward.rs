//! Gradients of a convolution: dX (the forward conv of dY with flipped
//! weights, a pointwise GEMM, or dY·Wᵀ + col2im), dW and db.

use super::forward::*;
use super::geometry::*;
use super::partials::{add_column_sums, reduce_slots, slot_partials};
use crate::kernels::SendPtr;
use crate::kernels::gemm::{MatRef, sgemm};
use rayon::prelude::*;

/// Adds im2col-shaped rows (pixels `p0 .. p0+count` of image `b`, group `g`)
/// back into that image's input gradient `dx_img` (`[in_h][in_w][in_c]`).
pub(super) fn col2im_add(
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

/// dX of a direct pointwise conv: dY·Wᵀ with Wᵀ packed once, each tile's
/// rows of dY read in place and written straight into dX.
pub(super) fn conv2d_backward_input_pointwise(
    geo: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    use crate::kernels::gemm::{conv_rows, pack_b, packed_b_len};
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
            pixel_rows(&mut rows[..count], m0, oc);
            conv_rows(dy, &rows[..count], 1, oc, 0, wtp, ic, None, c, ic);
        });
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
                if geo.dw_by_rows(tr, band) {
                    conv2d_backward_params_by_rows(geo, x, dy, dw, db, ws, tr, band)
                } else {
                    conv2d_backward_params_direct(geo, x, dy, dw, db, ws, tr, band)
                }
            }
            _ => conv2d_backward_params(geo, x, dy, dw, db, ws),
        }
    }
}

/// dX by the cheapest path the geometry allows: the transposed conv on the
/// forward paths (stride 1), a GEMM (1×1 unpadded), or dY·Wᵀ then col2im.
pub(super) fn conv2d_backward_input(
    geo: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    if let Some(t) = geo.transposed() {
        return backward_input_transposed(geo, &t, w, dy, dx, ws);
    }
    if geo.is_direct_pointwise() {
        return conv2d_backward_input_pointwise(geo, w, dy, dx, ws);
    }
    if geo.is_pointwise() {
        return backward_input_pointwise_strided(geo, w, dy, dx);
    }
    if geo.groups == 1 {
        return backward_input_col2im_packed(geo, w, dy, dx, ws);
    }
    backward_input_col2im_grouped(geo, w, dy, dx, ws)
}

/// dX = conv(dY, flipped Wᵀ) (`t`, the transposed geometry): runs on the
/// tiled forward path, no col2im.
fn backward_input_transposed(
    geo: &Conv2dGeometry,
    t: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    if let Some((tr, band)) = t.direct_tiling() {
        // Flipped and packed in one parallel pass, straight into the
        // layout the direct path reads.
        let packed = crate::kernels::gemm::packed_b_len(t.k_cols(), t.out_c);
        let (wtp, rest) = ws.split_at_mut(packed);
        pack_flipped(geo, w, wtp);
        let tiling = DirectTiling {
            tr,
            band,
            max_pool2: false,
        };
        return conv2d_forward_direct_packed(t, dy, wtp, None, None, dx, rest, tiling);
    }
    let (wt, rest) = ws.split_at_mut(geo.weight_len());
    flip_weights(geo, w, wt);
    conv2d_forward(t, dy, wt, None, dx, rest);
}

/// dX of a 1×1 unpadded conv with strides (or groups): per tile, a GEMM
/// per group written straight into the input pixels the outputs read.
fn backward_input_pointwise_strided(geo: &Conv2dGeometry, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let oc = geo.out_c;
    let (cg, og) = (geo.cin_g(), geo.cout_g());
    let stride1 = geo.stride_h == 1 && geo.stride_w == 1;
    if !stride1 {
        dx.par_chunks_mut(crate::kernels::ELEM_CHUNK)
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
                let c = unsafe { std::slice::from_raw_parts_mut(dxp.get().add(off), dxlen - off) };
                sgemm(s.count, cg, og, 1.0, a, b, 0.0, c, s.x_step * geo.in_c);
            }
        });
    });
}

/// dX of a groups = 1 conv: Wᵀ packed once, each column tile dY·Wᵀ by the
/// direct-conv microkernel (one segment of out_c per pixel), then col2im.
/// Small images share a tile (the packed Wᵀ is streamed once per tile,
/// not once per 4–16 pixels of ResNet-50's strided projections). Each
/// slot owns whole images, so no two slots write one pixel of dX.
fn backward_input_col2im_packed(
    geo: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    let (oc, kc) = (geo.out_c, geo.k_cols());
    let tl = geo.tile_len();
    let img_in = geo.in_h * geo.in_w * geo.in_c;
    let plane = geo.out_h * geo.out_w;
    let dxp = SendPtr(dx.as_mut_ptr());
    let wt_len = crate::kernels::gemm::packed_b_len(oc, kc);
    let (wtp, rest) = ws.split_at_mut(wt_len);
    crate::kernels::gemm::pack_b(oc, kc, MatRef::transposed(w, oc), wtp);
    let wtp = &*wtp;
    let imgs_per_tile = (TILE_ROWS / plane).max(1);
    let slots = geo.slots.min(geo.batch.div_ceil(imgs_per_tile));
    // Columns dY·Wᵀ of output pixels m0 .. m0+count into buf.
    let columns = |m0: usize, count: usize, buf: &mut [f32]| {
        let mut rows = [0usize; TILE_ROWS];
        pixel_rows(&mut rows[..count], m0, oc);
        let c = &mut buf[..count * kc];
        crate::kernels::gemm::conv_rows(dy, &rows[..count], 1, oc, 0, wtp, kc, None, c, kc);
    };
    rest[..slots * tl]
        .par_chunks_mut(tl)
        .enumerate()
        .for_each(|(s, buf)| {
            let (mut b, b1) = (s * geo.batch / slots, (s + 1) * geo.batch / slots);
            while b < b1 {
                let n = imgs_per_tile.min(b1 - b);
                // SAFETY: each image's gradient is written by exactly one slot.
                let dx_imgs = unsafe {
                    std::slice::from_raw_parts_mut(dxp.get().add(b * img_in), n * img_in)
                };
                dx_imgs.fill(0.0);
                if n * plane <= TILE_ROWS {
                    columns(b * plane, n * plane, buf);
                    for (i, dx_img) in dx_imgs.chunks_exact_mut(img_in).enumerate() {
                        col2im_add(geo, &buf[i * plane * kc..], 0, 0, plane, dx_img);
                    }
                } else {
                    let mut p0 = 0;
                    while p0 < plane {
                        let count = TILE_ROWS.min(plane - p0);
                        columns(b * plane + p0, count, buf);
                        col2im_add(geo, buf, 0, p0, count, dx_imgs);
                        p0 += count;
                    }
                }
                b += n;
            }
        });
}

/// dX of a grouped conv: per image, per tile and group, dY·Wᵀ by the GEMM
/// then col2im onto that group's input channels.
fn backward_input_col2im_grouped(
    geo: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
) {
    let oc = geo.out_c;
    let og = geo.cout_g();
    let kc = geo.k_cols();
    let tl = geo.tile_len();
    let img_in = geo.in_h * geo.in_w * geo.in_c;
    let plane = geo.out_h * geo.out_w;
    let dxp = SendPtr(dx.as_mut_ptr());
    let slots = geo.slots.min(geo.batch);
    ws[..slots * tl]
        .par_chunks_mut(tl)
        .enumerate()
        .for_each(|(s, buf)| {
            for b in slot_tiles(s, slots, geo.batch) {
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
pub(super) fn flip_weights(geo: &Conv2dGeometry, w: &[f32], wt: &mut [f32]) {
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

/// [`flip_weights`] (groups = 1) packed as [`crate::kernels::gemm::pack_b`]
/// packs the transposed conv's `k_h·k_w·out_c × in_c` weight: panel `jp`,
/// row `(tap′, co)`, lane `jj` holds `w[flip(tap′)][jp·16 + jj][co]`. Each
/// panel is written by one task; per tap it transposes a 16 × `out_c` block
/// of `w` that is contiguous.
pub(super) fn pack_flipped(geo: &Conv2dGeometry, w: &[f32], out: &mut [f32]) {
    use crate::kernels::gemm::{NR, packed_b_len};
    assert_eq!(geo.groups, 1, "pack_flipped: groups");
    let (ic, oc, taps) = (geo.in_c, geo.out_c, geo.k_h * geo.k_w);
    let k = taps * oc;
    let out = &mut out[..packed_b_len(k, ic)];
    out.par_chunks_exact_mut(NR * k)
        .enumerate()
        .for_each(|(jp, panel)| {
            let j0 = jp * NR;
            let width = NR.min(ic - j0);
            if width < NR {
                panel.fill(0.0);
            }
            for dst_tap in 0..taps {
                let src_tap = taps - 1 - dst_tap;
                let rows = &mut panel[dst_tap * oc * NR..(dst_tap + 1) * oc * NR];
                for jj in 0..width {
                    let src = &w[(src_tap * ic + j0 + jj) * oc..][..oc];
                    for (d, v) in rows[jj..].iter_mut().step_by(NR).zip(src) {
                        *d = *v;
                    }
                }
            }
        });
}

/// dW and db of a groups=1 conv without im2col: per tile, the input band of
/// the forward pass, then for each run of 6 im2col columns (inside one
/// `k_w·in_c` segment) `dW[kk..kk+6][:] += Σ_p band[row_p + kk..] ⊗ dY[p]`.
/// Per-slot partials in dW layout, reduced in slot order.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_backward_params_direct(
    geo: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    ws: &mut [f32],
    tr: usize,
    band: usize,
) {
    use crate::kernels::gemm::{conv_dw_rows, dw_block_rows};
    let block = dw_block_rows(crate::kernels::isa::active());
    let (oc, ic) = (geo.out_c, geo.in_c);
    let wl = geo.weight_len();
    let scratch = band.max(geo.tile_len());
    let per = scratch + wl + oc;
    let plan = DirectTiles::new(geo, tr);
    let tiles = plan.count;
    let slots = geo.slots.min(tiles);
    let band_w = geo.in_w + geo.pad_left + geo.pad_right;
    let seg = geo.k_w * ic;
    let (want_dw, want_db) = (dw.is_some(), db.is_some());
    ws[..slots * per]
        .par_chunks_mut(per)
        .enumerate()
        .for_each(|(s, slot)| {
            let (buf, pw, pb) = slot_partials(slot, scratch, wl);
            let mut rows = [0usize; DIRECT_MAX_PIXELS];
            for t in slot_tiles(s, slots, tiles) {
                let tile = plan.tile(geo, t);
                let (m0, count) = tile.pixels(geo);
                let dyt = &dy[m0 * oc..(m0 + count) * oc];
                if want_db {
                    add_column_sums(dyt, oc, pb);
                }
                if !want_dw {
                    continue;
                }
                // A pointwise conv's im2col rows are its input pixels.
                let src: &[f32] = if band == 0 {
                    pixel_rows(&mut rows[..count], m0, ic);
                    x
                } else {
                    tile.fill_bands(geo, x, buf, &mut rows);
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
    if let Some(dw) = dw {
        assert_eq!(dw.len(), wl, "conv2d_backward: dw length");
        reduce_slots(ws, slots, per, scratch, dw);
    }
    if let Some(db) = db {
        assert_eq!(db.len(), oc, "conv2d_backward: db length");
        reduce_slots(ws, slots, per, scratch + wl, db);
    }
}

/// dW and db of a direct conv whose weight outweighs its input (see
/// [`Conv2dGeometry::dw_by_rows`]): every slot copies the whole batch's
/// input bands once, then computes its share of dW's row blocks over every
/// pixel, writing each dW element once. No per-slot partials of dW, no
/// reduction. Each element sums the pixels in order, whatever the slots.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_backward_params_by_rows(
    geo: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    ws: &mut [f32],
    tr: usize,
    band: usize,
) {
    use crate::kernels::gemm::{conv_dw_rows, dw_block_rows};
    let (oc, ic, pixels) = (geo.out_c, geo.in_c, geo.rows());
    if let Some(db) = db {
        assert_eq!(db.len(), oc, "conv2d_backward: db length");
        db.fill(0.0);
        add_column_sums(dy, oc, db);
    }
    let Some(dw) = dw else {
        return;
    };
    assert_eq!(dw.len(), geo.weight_len(), "conv2d_backward: dw length");
    let block = dw_block_rows(crate::kernels::isa::active());
    let plan = DirectTiles::new(geo, tr);
    let (seg, band_w) = (geo.k_w * ic, geo.in_w + geo.pad_left + geo.pad_right);
    let per_seg = seg.div_ceil(block);
    let blocks = geo.k_h * per_seg;
    // Blocks cost the same, so one slot per thread balances; more would
    // only copy the bands more often.
    let slots = geo.slots.min(rayon::current_num_threads()).min(blocks);
    let per = band.max(geo.tile_len()) + geo.weight_len() + oc;
    let dwp = SendPtr(dw.as_mut_ptr());
    ws[..slots * per]
        .par_chunks_mut(per)
        .enumerate()
        .for_each(|(s, buf)| {
            let mut rows = [0usize; DIRECT_MAX_PIXELS];
            let rows = &mut rows[..pixels];
            // A pointwise conv's im2col rows are its input pixels.
            let src: &[f32] = if band == 0 {
                pixel_rows(rows, 0, ic);
                x
            } else {
                for t in 0..plan.count {
                    let tile = plan.tile(geo, t);
                    let (m0, count) = tile.pixels(geo);
                    let tile_rows = &mut rows[m0..m0 + count];
                    tile.fill_bands(geo, x, &mut buf[t * band..], tile_rows);
                    for r in tile_rows {
                        *r += t * band;
                    }
                }
                buf
            };
            for blk in (s * blocks / slots)..((s + 1) * blocks / slots) {
                let (ky, q0) = (blk / per_seg, blk % per_seg * block);
                let mr = block.min(seg - q0);
                let kk = ky * seg + q0;
                // SAFETY: each block of dW rows is written by one slot only.
                let c = unsafe { std::slice::from_raw_parts_mut(dwp.get().add(kk * oc), mr * oc) };
                c.fill(0.0);
                let a_off = ky * band_w * ic + q0;
                let done = conv_dw_rows(src, rows, a_off, mr, dy, oc, oc, c, oc);
                assert!(done, "conv2d_backward_params_by_rows: unsupported shape");
            }
        });
}

pub(super) fn conv2d_backward_params(
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
            let (buf, pw, pb) = slot_partials(slot, tl, wl);
            for t in slot_tiles(s, slots, tiles) {
                let (m0, count) = tile_span(t, rows);
                if want_db {
                    add_column_sums(&dy[m0 * oc..(m0 + count) * oc], oc, pb);
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
        reduce_slots(parts, slots, per, tl + wl, db);
    }
}
