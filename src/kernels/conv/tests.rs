use super::backward::*;
use super::forward::*;
use super::geometry::*;
use crate::kernels::norm::BnAffine;
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
                                let xv = x[((b * geo.in_h + iy as usize) * geo.in_w + ix as usize)
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
        Conv2dGeometry::new(2, (5, 6, 3), 4, (3, 3), (1, 1), Pads::new(1, 1, 1, 1), 1).unwrap(),
        Conv2dGeometry::new(2, (7, 5, 4), 6, (3, 2), (2, 1), Pads::new(0, 2, 1, 0), 2).unwrap(),
        Conv2dGeometry::new(1, (6, 6, 3), 5, (1, 1), (1, 1), Pads::NONE, 1).unwrap(),
        // even outputs: the max-pool epilogue (tiles of 6 rows, and of 2)
        Conv2dGeometry::new(2, (6, 8, 3), 16, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        Conv2dGeometry::new(1, (6, 64, 3), 8, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        Conv2dGeometry::new(2, (5, 7, 4), 4, (1, 1), (2, 2), Pads::NONE, 2).unwrap(),
        Conv2dGeometry::new(1, (6, 5, 4), 4, (3, 3), (2, 2), Pads::new(1, 1, 0, 1), 4).unwrap(),
        Conv2dGeometry::new(1, (4, 4, 2), 3, (4, 4), (1, 1), Pads::NONE, 1).unwrap(),
        // stride 1 with groups and asymmetric padding: dx via the flipped conv
        Conv2dGeometry::new(2, (5, 6, 34), 6, (3, 2), (1, 1), Pads::new(2, 0, 0, 1), 2).unwrap(),
        // strided 1×1, groups 1: direct path with one segment per row
        Conv2dGeometry::new(2, (5, 7, 4), 4, (1, 1), (2, 2), Pads::NONE, 1).unwrap(),
        // output row wider than a tile: one output row per tile
        Conv2dGeometry::new(1, (3, 130, 2), 3, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        // out_c multiple of 16: direct dW path (stem-like seg of 9, and strided)
        Conv2dGeometry::new(2, (5, 6, 3), 16, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        Conv2dGeometry::new(1, (7, 6, 5), 32, (3, 3), (2, 2), Pads::new(0, 1, 0, 1), 1).unwrap(),
        // padding ≥ kernel: dx via col2im
        Conv2dGeometry::new(1, (4, 4, 2), 2, (2, 2), (1, 1), Pads::new(2, 0, 2, 0), 1).unwrap(),
        // pointwise, out_c a multiple of 16: the direct pointwise forward, dx and dW
        Conv2dGeometry::new(2, (3, 5, 20), 32, (1, 1), (1, 1), Pads::NONE, 1).unwrap(),
        // 48 outputs (a pair of panels and a single one), dW segments of 21
        Conv2dGeometry::new(1, (4, 5, 7), 48, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        // small images: direct tiles of 7 whole 4×4 images, the last of 2
        // (forward, pooled forward, dX, dW), and pointwise ones of 13 3×3 images
        Conv2dGeometry::new(9, (4, 4, 16), 32, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        Conv2dGeometry::new(15, (3, 3, 16), 16, (1, 1), (1, 1), Pads::NONE, 1).unwrap(),
        // strided, several small images per slot: dX tiles of whole images
        Conv2dGeometry::new(12, (4, 4, 16), 32, (1, 1), (2, 2), Pads::NONE, 1).unwrap(),
        Conv2dGeometry::new(5, (6, 6, 8), 16, (3, 3), (2, 2), Pads::uniform(1), 1).unwrap(),
        // pointwise with more pixels than one row table: dW by partials
        Conv2dGeometry::new(2, (24, 24, 4), 16, (1, 1), (1, 1), Pads::NONE, 1).unwrap(),
        // input larger than the weight: dW by per-slot partials
        Conv2dGeometry::new(4, (9, 9, 4), 16, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
    ]
}

/// The cases take both direct weight-gradient paths: rows of dW split
/// between slots (banded and pointwise, one tile and several) and per-slot
/// partials.
#[test]
fn cases_cover_both_direct_dw_paths() {
    let mut seen = [false; 4];
    for geo in cases() {
        let Some((tr, band)) = geo.direct_dw_tiling() else {
            continue;
        };
        if !geo.out_c.is_multiple_of(16) {
            continue;
        }
        let by_rows = geo.dw_by_rows(tr, band);
        let tiles = DirectTiles::new(&geo, tr).count;
        seen[0] |= by_rows && band > 0 && tiles > 1;
        seen[1] |= by_rows && band == 0;
        seen[2] |= !by_rows && band > 0;
        seen[3] |= !by_rows && band == 0;
    }
    assert_eq!(seen, [true; 4]);
}

#[test]
fn geometry_formula() {
    let g = Conv2dGeometry::new(32, (64, 64, 3), 32, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap();
    assert_eq!((g.out_h, g.out_w), (64, 64));
    let g = Conv2dGeometry::new(
        1,
        (32, 32, 32),
        64,
        (3, 3),
        (2, 2),
        Pads::new(0, 1, 0, 1),
        1,
    )
    .unwrap();
    assert_eq!((g.out_h, g.out_w), (16, 16));
    let g = Conv2dGeometry::new(1, (7, 7, 1), 1, (3, 3), (2, 2), Pads::NONE, 1).unwrap();
    assert_eq!((g.out_h, g.out_w), (3, 3));
    assert!(Conv2dGeometry::new(1, (2, 2, 1), 1, (3, 3), (1, 1), Pads::NONE, 1).is_err());
    assert!(Conv2dGeometry::new(1, (4, 4, 3), 4, (1, 1), (1, 1), Pads::NONE, 2).is_err());
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
                    Pads::NONE,
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
    let geo = Conv2dGeometry::new(9, (13, 11, 8), 16, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap();
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

/// The fused flip-and-pack of the dX path is `pack_b` of `flip_weights`,
/// bit for bit (input channels a multiple of 16 and not; several taps).
#[test]
fn pack_flipped_is_pack_of_flipped_weights() {
    use crate::kernels::gemm::{MatRef, pack_b, packed_b_len};
    let mut rng = Rng::new(9);
    for geo in [
        Conv2dGeometry::new(1, (4, 4, 20), 32, (3, 3), (1, 1), Pads::uniform(1), 1).unwrap(),
        Conv2dGeometry::new(1, (3, 5, 64), 48, (3, 2), (1, 1), Pads::new(1, 0, 0, 1), 1).unwrap(),
    ] {
        let t = geo.transposed().unwrap();
        let w = rng.vec(geo.weight_len());
        let mut flipped = vec![0.0; geo.weight_len()];
        flip_weights(&geo, &w, &mut flipped);
        let len = packed_b_len(t.k_cols(), t.out_c);
        let mut want = vec![f32::NAN; len];
        pack_b(
            t.k_cols(),
            t.out_c,
            MatRef::row_major(&flipped, t.out_c),
            &mut want,
        );
        let mut got = vec![f32::NAN; len];
        pack_flipped(&geo, &w, &mut got);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }
}
