//! Zero padding, dropout, add, channel concat/split, gradient accumulation,
//! and the small PRNG used for dropout masks and weight init.
//!
//! Flatten needs no kernel: an NHWC tensor is already (batch × H·W·C) row-major.

use super::ELEM_CHUNK;
use super::conv::Pads;
use rayon::prelude::*;

/// splitmix64: a tiny, fast, seedable PRNG (Steele, Lea & Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in [0, 1), 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
    /// Standard normal (Box–Muller).
    pub fn next_normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64);
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// splitmix64's finaliser: a good 64-bit hash, used as a counter-based RNG.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether element `i` survives dropout with drop probability `p` under `seed`.
/// Counter-based: independent of thread count, reproducible in backward.
#[inline]
fn keep(seed: u64, i: usize, p: f32) -> bool {
    let h = mix64(seed ^ mix64(i as u64 ^ 0xD1B5_4A32_D192_ED03));
    ((h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)) >= p
}

/// Inverted dropout (training only): `y = x/(1−p)` where kept, else 0. The
/// mask is a function of `(seed, index)`; pass the same seed to
/// [`dropout_backward`]. Use a new seed each step. `p` in [0, 1).
pub fn dropout_forward(x: &[f32], y: &mut [f32], p: f32, seed: u64) {
    assert_eq!(x.len(), y.len(), "dropout: lengths");
    assert!((0.0..1.0).contains(&p), "dropout: p must be in [0, 1)");
    let scale = 1.0 / (1.0 - p);
    y.par_chunks_mut(ELEM_CHUNK)
        .zip(x.par_chunks(ELEM_CHUNK))
        .enumerate()
        .for_each(|(ci, (y, x))| {
            for (j, (y, x)) in y.iter_mut().zip(x).enumerate() {
                *y = if keep(seed, ci * ELEM_CHUNK + j, p) {
                    *x * scale
                } else {
                    0.0
                };
            }
        });
}

/// `dx` (overwritten) of [`dropout_forward`] with the same `p` and `seed`.
pub fn dropout_backward(dy: &[f32], dx: &mut [f32], p: f32, seed: u64) {
    dropout_forward(dy, dx, p, seed)
}

/// `y = Σ inputs`, then `max(y, 0)` if `relu` (a following ReLU fused by the
/// plan, saving a pass over `y`). `input(k)` gives input `k` of `count ≥ 1`,
/// so callers need not collect their inputs into a fresh Vec on every call.
pub fn add_forward<'a>(
    count: usize,
    input: impl Fn(usize) -> &'a [f32] + Sync,
    y: &mut [f32],
    relu: bool,
) {
    assert!(count > 0, "add: no inputs");
    for k in 0..count {
        assert_eq!(input(k).len(), y.len(), "add: lengths");
    }
    y.par_chunks_mut(ELEM_CHUNK)
        .enumerate()
        .for_each(|(ci, y)| {
            let o = ci * ELEM_CHUNK;
            y.copy_from_slice(&input(0)[o..o + y.len()]);
            for k in 1..count {
                for (a, b) in y.iter_mut().zip(&input(k)[o..]) {
                    *a += *b;
                }
            }
            if relu {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        });
}

/// `dst += src`. The gradient of Add is `dy` for every input; use this to sum
/// gradients of a tensor consumed twice.
pub fn accumulate(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "accumulate: lengths");
    dst.par_chunks_mut(ELEM_CHUNK)
        .zip(src.par_chunks(ELEM_CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += *s));
}

/// Concatenate NHWC tensors along channels: input `k` (`input(k)`) has
/// `channels[k]` channels; all share the same pixel count. Output has `Σ channels`.
pub fn concat_channels_forward<'a>(
    input: impl Fn(usize) -> &'a [f32] + Sync,
    channels: &[usize],
    y: &mut [f32],
) {
    let c: usize = channels.iter().sum();
    assert_eq!(y.len() % c, 0, "concat: output length");
    let pixels = y.len() / c;
    for (k, &ci) in channels.iter().enumerate() {
        assert_eq!(input(k).len(), pixels * ci, "concat: input length");
    }
    let rows = (ELEM_CHUNK / c).max(1);
    y.par_chunks_mut(rows * c).enumerate().for_each(|(t, y)| {
        let p0 = t * rows;
        for (r, yr) in y.chunks_exact_mut(c).enumerate() {
            let mut off = 0;
            for (k, &ci) in channels.iter().enumerate() {
                yr[off..off + ci].copy_from_slice(&input(k)[(p0 + r) * ci..(p0 + r + 1) * ci]);
                off += ci;
            }
        }
    });
}

/// Backward of [`concat_channels_forward`]: split `dy` into `dxs` (overwritten).
pub fn concat_channels_backward(dy: &[f32], channels: &[usize], dxs: &mut [&mut [f32]]) {
    assert_eq!(
        dxs.len(),
        channels.len(),
        "concat_backward: outputs vs channels"
    );
    let c: usize = channels.iter().sum();
    let pixels = dy.len() / c;
    let mut off = 0;
    for (dx, &ci) in dxs.iter_mut().zip(channels) {
        assert_eq!(dx.len(), pixels * ci, "concat_backward: output length");
        let o = off;
        dx.par_chunks_mut(ci * (ELEM_CHUNK / ci).max(1))
            .enumerate()
            .for_each(|(t, d)| {
                let p0 = t * (ELEM_CHUNK / ci).max(1);
                for (r, dr) in d.chunks_exact_mut(ci).enumerate() {
                    let s = (p0 + r) * c + o;
                    dr.copy_from_slice(&dy[s..s + ci]);
                }
            });
        off += ci;
    }
}

/// Zero padding of NHWC `x` (batch, h, w, c) by `pad`.
pub fn zero_pad2d_forward(
    x: &[f32],
    y: &mut [f32],
    batch: usize,
    hwc: (usize, usize, usize),
    pad: Pads,
) {
    let (h, w, c) = hwc;
    let (oh, ow) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
    assert_eq!(x.len(), batch * h * w * c, "zero_pad2d: input length");
    assert_eq!(y.len(), batch * oh * ow * c, "zero_pad2d: output length");
    y.par_chunks_mut(oh * ow * c)
        .zip(x.par_chunks(h * w * c))
        .for_each(|(y, x)| {
            y.fill(0.0);
            for iy in 0..h {
                let d = ((iy + pad.top) * ow + pad.left) * c;
                y[d..d + w * c].copy_from_slice(&x[iy * w * c..(iy + 1) * w * c]);
            }
        });
}

/// `dx` (overwritten) of [`zero_pad2d_forward`]: crop `dy`.
pub fn zero_pad2d_backward(
    dy: &[f32],
    dx: &mut [f32],
    batch: usize,
    hwc: (usize, usize, usize),
    pad: Pads,
) {
    let (h, w, c) = hwc;
    let (oh, ow) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
    assert_eq!(
        dx.len(),
        batch * h * w * c,
        "zero_pad2d_backward: dx length"
    );
    assert_eq!(
        dy.len(),
        batch * oh * ow * c,
        "zero_pad2d_backward: dy length"
    );
    dx.par_chunks_mut(h * w * c)
        .zip(dy.par_chunks(oh * ow * c))
        .for_each(|(dx, dy)| {
            for iy in 0..h {
                let s = ((iy + pad.top) * ow + pad.left) * c;
                dx[iy * w * c..(iy + 1) * w * c].copy_from_slice(&dy[s..s + w * c]);
            }
        });
}

/// The gradient of input `k` of a channel concat: its channels of `dy`,
/// written to `dx` (overwrite) or added to it (`accumulate`).
pub fn concat_channels_backward_one(
    dy: &[f32],
    channels: &[usize],
    k: usize,
    dx: &mut [f32],
    accumulate: bool,
) {
    let c: usize = channels.iter().sum();
    let ck = channels[k];
    let off: usize = channels[..k].iter().sum();
    let pixels = dy.len() / c;
    assert_eq!(dx.len(), pixels * ck, "concat_backward_one: dx length");
    let rows = (ELEM_CHUNK / c).max(1);
    dx.par_chunks_mut(rows * ck)
        .enumerate()
        .for_each(|(t, dx)| {
            for (r, dxr) in dx.chunks_exact_mut(ck).enumerate() {
                let p = t * rows + r;
                let src = &dy[p * c + off..p * c + off + ck];
                if accumulate {
                    dxr.iter_mut().zip(src).for_each(|(d, s)| *d += *s);
                } else {
                    dxr.copy_from_slice(src);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    #[test]
    fn dropout_mask_scaling_and_gradient() {
        let mut rng = Rng::new(61);
        let n = 40_000;
        let x = vec![1.0f32; n];
        let mut y = vec![0.0; n];
        dropout_forward(&x, &mut y, 0.25, 7);
        let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.01, "{kept}");
        assert!(
            y.iter()
                .all(|v| *v == 0.0 || (*v - 1.0 / 0.75).abs() < 1e-6)
        );
        let mut y2 = vec![0.0; n];
        dropout_forward(&x, &mut y2, 0.25, 7);
        assert_eq!(y, y2);
        dropout_forward(&x, &mut y2, 0.25, 8);
        assert_ne!(y, y2);
        let mut xs = rng.vec(30);
        let r = rng.vec(30);
        let mut dx = vec![0.0; 30];
        dropout_backward(&r, &mut dx, 0.5, 3);
        check("dropout", &mut xs, &dx, 1e-2, |x| {
            let mut y = vec![0.0; 30];
            dropout_forward(x, &mut y, 0.5, 3);
            dot64(&y, &r)
        });
    }

    #[test]
    fn add_and_accumulate() {
        let a = [1.0f32, 2.0];
        let b = [10.0f32, 20.0];
        let c = [100.0f32, 200.0];
        let mut y = [0.0; 2];
        let inputs: [&[f32]; 3] = [&a, &b, &c];
        add_forward(3, |k| inputs[k], &mut y, false);
        assert_eq!(y, [111.0, 222.0]);
        let neg = [-200.0f32, 0.0];
        let inputs: [&[f32]; 2] = [&a, &neg];
        add_forward(2, |k| inputs[k], &mut y, true);
        assert_eq!(y, [0.0, 2.0]);
        add_forward(3, |k| [&a[..], &b[..], &c[..]][k], &mut y, false);
        assert_eq!(y, [111.0, 222.0]);
        accumulate(&mut y, &a);
        assert_eq!(y, [112.0, 224.0]);
    }

    #[test]
    fn concat_roundtrip_and_gradient() {
        let mut rng = Rng::new(62);
        let px = 6;
        let ch = [2usize, 3, 1];
        let mut a = rng.vec(px * 2);
        let b = rng.vec(px * 3);
        let c = rng.vec(px);
        let mut y = vec![0.0; px * 6];
        concat_channels_forward(|k| [&a[..], &b[..], &c[..]][k], &ch, &mut y);
        assert_eq!(&y[6..8], &a[2..4]);
        assert_eq!(&y[8..11], &b[3..6]);
        assert_eq!(y[11], c[1]);
        let r = rng.vec(px * 6);
        let (mut da, mut db, mut dc) = (vec![0.0; px * 2], vec![0.0; px * 3], vec![0.0; px]);
        concat_channels_backward(&r, &ch, &mut [&mut da, &mut db, &mut dc]);
        check("concat", &mut a, &da, 1e-2, |a| {
            let mut y = vec![0.0; px * 6];
            concat_channels_forward(|k| [a, &b[..], &c[..]][k], &ch, &mut y);
            dot64(&y, &r)
        });
    }

    #[test]
    fn zero_pad_gradient() {
        let mut rng = Rng::new(63);
        let (n, h, w, c) = (2, 3, 4, 2);
        let pad = Pads::new(1, 2, 0, 1);
        let ylen = n * (h + 3) * (w + 1) * c;
        let mut x = rng.vec(n * h * w * c);
        let r = rng.vec(ylen);
        let mut dx = vec![0.0; x.len()];
        zero_pad2d_backward(&r, &mut dx, n, (h, w, c), pad);
        let mut y = vec![0.0; ylen];
        zero_pad2d_forward(&x, &mut y, n, (h, w, c), pad);
        assert_eq!(y[0], 0.0);
        assert_eq!(y[(w + 1) * c], x[0]);
        check("zero_pad", &mut x, &dx, 1e-2, |x| {
            let mut y = vec![0.0; ylen];
            zero_pad2d_forward(x, &mut y, n, (h, w, c), pad);
            dot64(&y, &r)
        });
    }

    #[test]
    fn prng_is_reasonable() {
        let mut g = SplitMix64::new(1);
        let v: Vec<f32> = (0..10_000).map(|_| g.next_normal()).collect();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05);
        let u = SplitMix64::new(2).next_f32();
        assert!((0.0..1.0).contains(&u));
    }
}
