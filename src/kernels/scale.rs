//! Channel-wise scale (squeeze-and-excitation): `y[n, p, c] = x[n, p, c] · s[n, c]`
//! for an NHWC volume `x` of `hw` positions × `c` channels per image and one
//! gate vector `s` of `c` values per image; and the fixed per-channel affine
//! map `y[.., c] = x[.., c] · scale[c] + shift[c]` (constants shared by every
//! image and position).
//!
//! Work is split over images (rayon); within an image the loops walk
//! positions in order and channels contiguously, so they vectorise and the
//! gate gradient's sums run in a fixed order (deterministic). The affine map
//! splits over chunks of whole positions instead.

use super::ELEM_CHUNK;
use rayon::prelude::*;

/// Elements per parallel chunk of a `c`-channel affine map: whole positions,
/// about [`ELEM_CHUNK`].
fn affine_chunk(c: usize) -> usize {
    (ELEM_CHUNK / c).max(1) * c
}

/// `y = x · scale + shift` per channel, for NHWC `x` of any number of
/// `c`-channel positions (`c = scale.len() = shift.len()`).
pub fn channel_affine_forward(x: &[f32], scale: &[f32], shift: &[f32], y: &mut [f32]) {
    let c = scale.len();
    assert_eq!(shift.len(), c, "channel affine: shift length");
    assert_eq!(y.len(), x.len(), "channel affine: output length");
    if c == 0 {
        return;
    }
    assert_eq!(x.len() % c, 0, "channel affine: whole positions");
    let chunk = affine_chunk(c);
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for (((y, x), a), b) in y.iter_mut().zip(x).zip(scale).zip(shift) {
                    *y = x * a + b;
                }
            }
        });
}

/// The input's gradient of [`channel_affine_forward`], `dx = dy · scale` per
/// channel (the constants have none).
pub fn channel_affine_backward(scale: &[f32], dy: &[f32], dx: &mut [f32]) {
    let c = scale.len();
    assert_eq!(dx.len(), dy.len(), "channel affine: dx length");
    if c == 0 {
        return;
    }
    assert_eq!(dy.len() % c, 0, "channel affine: whole positions");
    let chunk = affine_chunk(c);
    dx.par_chunks_mut(chunk)
        .zip(dy.par_chunks(chunk))
        .for_each(|(dx, dy)| {
            for (dx, dy) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)) {
                for ((d, g), a) in dx.iter_mut().zip(dy).zip(scale) {
                    *d = g * a;
                }
            }
        });
}

fn check(x_len: usize, s_len: usize, n: usize, hw: usize, c: usize) {
    assert_eq!(x_len, n * hw * c, "channel scale: volume length");
    assert_eq!(s_len, n * c, "channel scale: gate length");
}

/// `y = x · s`, broadcasting `s` over the `hw` positions of each image.
pub fn channel_scale_forward(x: &[f32], s: &[f32], y: &mut [f32], n: usize, hw: usize, c: usize) {
    check(x.len(), s.len(), n, hw, c);
    assert_eq!(y.len(), x.len(), "channel scale: output length");
    if c == 0 || hw == 0 {
        return;
    }
    y.par_chunks_mut(hw * c)
        .zip(x.par_chunks(hw * c))
        .zip(s.par_chunks(c))
        .for_each(|((y, x), s)| {
            for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for ((y, x), s) in y.iter_mut().zip(x).zip(s) {
                    *y = x * s;
                }
            }
        });
}

/// The volume's gradient `dx = dy · s` (`+=` with `accumulate`).
pub fn channel_scale_backward_volume(
    s: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    n: usize,
    hw: usize,
    c: usize,
    accumulate: bool,
) {
    check(dy.len(), s.len(), n, hw, c);
    assert_eq!(dx.len(), dy.len(), "channel scale: dx length");
    if c == 0 || hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw * c)
        .zip(dy.par_chunks(hw * c))
        .zip(s.par_chunks(c))
        .for_each(|((dx, dy), s)| {
            for (dx, dy) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)) {
                for ((d, g), s) in dx.iter_mut().zip(dy).zip(s) {
                    if accumulate {
                        *d += g * s;
                    } else {
                        *d = g * s;
                    }
                }
            }
        });
}

/// The gate's gradient `ds[n, c] = Σ_p dy[n, p, c] · x[n, p, c]` (`+=` with
/// `accumulate`).
pub fn channel_scale_backward_gate(
    x: &[f32],
    dy: &[f32],
    ds: &mut [f32],
    n: usize,
    hw: usize,
    c: usize,
    accumulate: bool,
) {
    check(x.len(), ds.len(), n, hw, c);
    assert_eq!(dy.len(), x.len(), "channel scale: dy length");
    if c == 0 {
        return;
    }
    if !accumulate {
        ds.fill(0.0);
    }
    if hw == 0 {
        return;
    }
    ds.par_chunks_mut(c)
        .zip(x.par_chunks(hw * c))
        .zip(dy.par_chunks(hw * c))
        .for_each(|((ds, x), dy)| {
            for (x, dy) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
                for ((d, x), g) in ds.iter_mut().zip(x).zip(dy) {
                    *d += x * g;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check as fd_check, dot64};

    const N: usize = 2;
    const HW: usize = 6;
    const C: usize = 5;

    fn loss(x: &[f32], s: &[f32], r: &[f32]) -> f64 {
        let mut y = vec![0.0; x.len()];
        channel_scale_forward(x, s, &mut y, N, HW, C);
        dot64(&y, r)
    }

    #[test]
    fn forward_broadcasts_the_gate_over_positions() {
        let x: Vec<f32> = (0..N * HW * C).map(|i| i as f32).collect();
        let s: Vec<f32> = (0..N * C).map(|i| 1.0 + i as f32).collect();
        let mut y = vec![0.0; x.len()];
        channel_scale_forward(&x, &s, &mut y, N, HW, C);
        for n in 0..N {
            for p in 0..HW {
                for c in 0..C {
                    let i = (n * HW + p) * C + c;
                    assert_eq!(y[i], x[i] * s[n * C + c]);
                }
            }
        }
    }

    #[test]
    fn gradients_of_both_inputs_match_finite_differences() {
        let mut rng = Rng::new(41);
        let mut x = rng.vec(N * HW * C);
        let mut s = rng.vec(N * C);
        let r = rng.vec(N * HW * C);
        let mut dx = vec![0.0; x.len()];
        let mut ds = vec![7.0; s.len()]; // overwritten, not summed into
        channel_scale_backward_volume(&s, &r, &mut dx, N, HW, C, false);
        channel_scale_backward_gate(&x, &r, &mut ds, N, HW, C, false);
        let s0 = s.clone();
        fd_check("channel scale dx", &mut x, &dx, 1e-2, |x| loss(x, &s0, &r));
        let x0 = x.clone();
        fd_check("channel scale ds", &mut s, &ds, 1e-2, |s| loss(&x0, s, &r));
    }

    #[test]
    fn affine_maps_each_channel_by_its_own_constants() {
        // More positions than one parallel chunk holds, with a channel count
        // that does not divide it.
        let c = 3;
        let positions = ELEM_CHUNK / c + 5;
        let x: Vec<f32> = (0..positions * c).map(|i| (i % 11) as f32 - 5.0).collect();
        let (scale, shift) = ([2.0, -0.5, 0.0], [1.0, 0.25, -3.0]);
        let mut y = vec![f32::NAN; x.len()];
        channel_affine_forward(&x, &scale, &shift, &mut y);
        for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
            assert_eq!(y, x * scale[i % c] + shift[i % c], "element {i}");
        }
    }

    #[test]
    fn affine_gradient_matches_finite_differences() {
        let mut rng = Rng::new(43);
        let (scale, shift) = (rng.vec(C), rng.vec(C));
        let mut x = rng.vec(N * HW * C);
        let r = rng.vec(N * HW * C);
        let mut dx = vec![7.0; x.len()]; // overwritten, not summed into
        channel_affine_backward(&scale, &r, &mut dx);
        fd_check("channel affine dx", &mut x, &dx, 1e-2, |x| {
            let mut y = vec![0.0; x.len()];
            channel_affine_forward(x, &scale, &shift, &mut y);
            dot64(&y, &r)
        });
    }

    #[test]
    fn accumulate_adds_to_what_is_there() {
        let mut rng = Rng::new(42);
        let x = rng.vec(N * HW * C);
        let s = rng.vec(N * C);
        let dy = rng.vec(N * HW * C);
        let (mut dx, mut ds) = (vec![0.0; x.len()], vec![0.0; s.len()]);
        channel_scale_backward_volume(&s, &dy, &mut dx, N, HW, C, false);
        channel_scale_backward_gate(&x, &dy, &mut ds, N, HW, C, false);
        let (mut dx2, mut ds2) = (vec![1.0; x.len()], vec![1.0; s.len()]);
        channel_scale_backward_volume(&s, &dy, &mut dx2, N, HW, C, true);
        channel_scale_backward_gate(&x, &dy, &mut ds2, N, HW, C, true);
        assert!(dx.iter().zip(&dx2).all(|(a, b)| (a + 1.0 - b).abs() < 1e-6));
        assert!(ds.iter().zip(&ds2).all(|(a, b)| (a + 1.0 - b).abs() < 1e-6));
    }
}
