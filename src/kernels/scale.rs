//! Channel-wise scale (squeeze-and-excitation): `y[n, p, c] = x[n, p, c] · s[n, c]`
//! for an NHWC volume `x` of `hw` positions × `c` channels per image and one
//! gate vector `s` of `c` values per image.
//!
//! Work is split over images (rayon); within an image the loops walk
//! positions in order and channels contiguously, so they vectorise and the
//! gate gradient's sums run in a fixed order (deterministic).

use rayon::prelude::*;

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
