//! Elementwise activations, forward and backward, parallel in fixed chunks.
//!
//! Backward functions take whichever of `x` (input) or `y` (output) makes the
//! derivative cheapest, as named in their signature; `_inplace` variants
//! overwrite their argument.

use super::ELEM_CHUNK;
use rayon::prelude::*;

fn map(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    assert_eq!(x.len(), y.len(), "activation: lengths");
    y.par_chunks_mut(ELEM_CHUNK)
        .zip(x.par_chunks(ELEM_CHUNK))
        .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, x)| *y = f(*x)));
}

fn map_inplace(x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    x.par_chunks_mut(ELEM_CHUNK)
        .for_each(|x| x.iter_mut().for_each(|v| *v = f(*v)));
}

/// `dx = dy · f'(t)` where `t` is x or y.
fn grad(t: &[f32], dy: &[f32], dx: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert_eq!(t.len(), dy.len(), "activation backward: lengths");
    assert_eq!(t.len(), dx.len(), "activation backward: lengths");
    dx.par_chunks_mut(ELEM_CHUNK)
        .zip(t.par_chunks(ELEM_CHUNK))
        .zip(dy.par_chunks(ELEM_CHUNK))
        .for_each(|((dx, t), dy)| {
            for ((d, t), g) in dx.iter_mut().zip(t).zip(dy) {
                *d = f(*t, *g);
            }
        });
}

/// `dy ← dy · f'(t)` in place.
fn grad_inplace(t: &[f32], dy: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert_eq!(t.len(), dy.len(), "activation backward: lengths");
    dy.par_chunks_mut(ELEM_CHUNK)
        .zip(t.par_chunks(ELEM_CHUNK))
        .for_each(|(dy, t)| dy.iter_mut().zip(t).for_each(|(g, t)| *g = f(*t, *g)));
}

fn relu_f(v: f32) -> f32 {
    v.max(0.0)
}
fn relu_g(y: f32, g: f32) -> f32 {
    if y > 0.0 { g } else { 0.0 }
}
fn sigmoid_f(v: f32) -> f32 {
    // Stable for large |v|: exp of a non-positive number only.
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    map(x, y, relu_f)
}
pub fn relu_forward_inplace(x: &mut [f32]) {
    map_inplace(x, relu_f)
}
/// Uses the output `y` (or the input: the sign test is the same). Gradient at 0 is 0.
pub fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    grad(y, dy, dx, relu_g)
}
pub fn relu_backward_inplace(y: &[f32], dy: &mut [f32]) {
    grad_inplace(y, dy, relu_g)
}

pub fn leaky_relu_forward(x: &[f32], y: &mut [f32], alpha: f32) {
    map(x, y, |v| if v > 0.0 { v } else { alpha * v })
}
pub fn leaky_relu_forward_inplace(x: &mut [f32], alpha: f32) {
    map_inplace(x, |v| if v > 0.0 { v } else { alpha * v })
}
/// Uses the input `x` (valid for any alpha, including negative).
pub fn leaky_relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32], alpha: f32) {
    grad(x, dy, dx, |x, g| if x > 0.0 { g } else { alpha * g })
}
pub fn leaky_relu_backward_inplace(x: &[f32], dy: &mut [f32], alpha: f32) {
    grad_inplace(x, dy, |x, g| if x > 0.0 { g } else { alpha * g })
}

pub fn sigmoid_forward(x: &[f32], y: &mut [f32]) {
    map(x, y, sigmoid_f)
}
pub fn sigmoid_forward_inplace(x: &mut [f32]) {
    map_inplace(x, sigmoid_f)
}
/// Uses the output `y`: `dx = dy·y·(1 − y)`.
pub fn sigmoid_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    grad(y, dy, dx, |y, g| g * y * (1.0 - y))
}
pub fn sigmoid_backward_inplace(y: &[f32], dy: &mut [f32]) {
    grad_inplace(y, dy, |y, g| g * y * (1.0 - y))
}

pub fn tanh_forward(x: &[f32], y: &mut [f32]) {
    map(x, y, f32::tanh)
}
pub fn tanh_forward_inplace(x: &mut [f32]) {
    map_inplace(x, f32::tanh)
}
/// Uses the output `y`: `dx = dy·(1 − y²)`.
pub fn tanh_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    grad(y, dy, dx, |y, g| g * (1.0 - y * y))
}
pub fn tanh_backward_inplace(y: &[f32], dy: &mut [f32]) {
    grad_inplace(y, dy, |y, g| g * (1.0 - y * y))
}

/// A parameter-free element-wise activation computed from the input alone,
/// forward and backward. Each `match` arm calls a monomorphised loop over
/// [`ELEM_CHUNK`]-sized chunks, so the per-element code is branch-light and
/// vectorisable, and nothing allocates.
///
/// Derivatives at the kinks follow PyTorch's backward kernels exactly:
/// - `Relu6` `min(max(x, 0), 6)`: `1` for `0 < x < 6`, else `0` (so `0` at
///   `x = 0` and at `x = 6`; PyTorch's `hardtanh_backward`).
/// - `HardSigmoid` `min(max(x + 3, 0), 6) / 6`: `1/6` for `−3 < x < 3`, else
///   `0` (`0` at `x = ±3`).
/// - `HardSwish` `x · min(max(x + 3, 0), 6) / 6`: `0` for `x < −3`,
///   `x/3 + 1/2` for `−3 ≤ x ≤ 3`, `1` for `x > 3` (so `−1/2` at `x = −3` and
///   `3/2` at `x = 3`, the one-sided values PyTorch picks).
/// - `Silu` `x · σ(x)`: smooth, `σ(x)·(1 + x·(1 − σ(x)))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elementwise {
    Relu6,
    HardSigmoid,
    HardSwish,
    Silu,
}

fn relu6_f(v: f32) -> f32 {
    v.clamp(0.0, 6.0)
}
fn relu6_g(x: f32, g: f32) -> f32 {
    if x > 0.0 && x < 6.0 { g } else { 0.0 }
}
fn hard_sigmoid_f(v: f32) -> f32 {
    (v + 3.0).clamp(0.0, 6.0) / 6.0
}
fn hard_sigmoid_g(x: f32, g: f32) -> f32 {
    if x > -3.0 && x < 3.0 { g / 6.0 } else { 0.0 }
}
fn hard_swish_f(v: f32) -> f32 {
    // PyTorch's order of operations: x · relu6(x + 3), then / 6.
    v * (v + 3.0).clamp(0.0, 6.0) / 6.0
}
fn hard_swish_g(x: f32, g: f32) -> f32 {
    if x < -3.0 {
        0.0
    } else if x <= 3.0 {
        g * (x / 3.0 + 0.5)
    } else {
        g
    }
}
fn silu_f(v: f32) -> f32 {
    v * sigmoid_f(v)
}
fn silu_g(x: f32, g: f32) -> f32 {
    let s = sigmoid_f(x);
    g * s * (1.0 + x * (1.0 - s))
}

impl Elementwise {
    /// `y = f(x)`.
    pub fn forward(self, x: &[f32], y: &mut [f32]) {
        match self {
            Elementwise::Relu6 => map(x, y, relu6_f),
            Elementwise::HardSigmoid => map(x, y, hard_sigmoid_f),
            Elementwise::HardSwish => map(x, y, hard_swish_f),
            Elementwise::Silu => map(x, y, silu_f),
        }
    }

    /// `dx = dy · f'(x)`, from the input `x`.
    pub fn backward(self, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        match self {
            Elementwise::Relu6 => grad(x, dy, dx, relu6_g),
            Elementwise::HardSigmoid => grad(x, dy, dx, hard_sigmoid_g),
            Elementwise::HardSwish => grad(x, dy, dx, hard_swish_g),
            Elementwise::Silu => grad(x, dy, dx, silu_g),
        }
    }

    /// Every function, for tests and tables.
    pub const ALL: [Elementwise; 4] = [
        Elementwise::Relu6,
        Elementwise::HardSigmoid,
        Elementwise::HardSwish,
        Elementwise::Silu,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    type Fwd = fn(&[f32], &mut [f32]);

    fn check_op(name: &str, fwd: Fwd, back: impl Fn(&[f32], &[f32], &[f32], &mut [f32])) {
        let mut rng = Rng::new(31);
        // Keep inputs away from the ReLU kink at 0 (|x| ≥ 0.05 > eps).
        let mut x: Vec<f32> = rng
            .vec(50)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v } * 2.0)
            .collect();
        let r = rng.vec(50);
        let mut y = vec![0.0; 50];
        fwd(&x, &mut y);
        let mut dx = vec![0.0; 50];
        back(&x, &y, &r, &mut dx);
        // in-place variants agree
        check(name, &mut x, &dx, 1e-2, |x| {
            let mut y = vec![0.0; x.len()];
            fwd(x, &mut y);
            dot64(&y, &r)
        });
    }

    #[test]
    fn gradients() {
        check_op("relu", relu_forward, |_, y, r, dx| relu_backward(y, r, dx));
        check_op(
            "leaky",
            |x, y| leaky_relu_forward(x, y, 0.1),
            |x, _, r, dx| leaky_relu_backward(x, r, dx, 0.1),
        );
        check_op("sigmoid", sigmoid_forward, |_, y, r, dx| {
            sigmoid_backward(y, r, dx)
        });
        check_op("tanh", tanh_forward, |_, y, r, dx| tanh_backward(y, r, dx));
    }

    /// Finite differences away from the kinks: inputs spread over [-8, 8]
    /// (past every kink at −3, 0, 3 and 6), none within 0.05 of one.
    #[test]
    fn elementwise_gradients() {
        let kinks = [-3.0f32, 0.0, 3.0, 6.0];
        let mut rng = Rng::new(33);
        let x: Vec<f32> = (0..400)
            .map(|_| rng.uniform() * 8.0)
            .filter(|v| kinks.iter().all(|k| (v - k).abs() > 0.05))
            .collect();
        let r = rng.vec(x.len());
        for f in Elementwise::ALL {
            let mut dx = vec![0.0; x.len()];
            f.backward(&x, &r, &mut dx);
            let mut xs = x.clone();
            check(&format!("{f:?}"), &mut xs, &dx, 1e-2, |x| {
                let mut y = vec![0.0; x.len()];
                f.forward(x, &mut y);
                dot64(&y, &r)
            });
        }
    }

    /// Values and the derivatives at the kinks as PyTorch defines them.
    #[test]
    fn elementwise_values_and_kinks() {
        let at = |f: Elementwise, x: f32| {
            let (mut y, mut dx) = ([0.0], [0.0]);
            f.forward(&[x], &mut y);
            f.backward(&[x], &[1.0], &mut dx);
            (y[0], dx[0])
        };
        use Elementwise::*;
        assert_eq!(at(Relu6, -1.0), (0.0, 0.0));
        assert_eq!(at(Relu6, 0.0), (0.0, 0.0));
        assert_eq!(at(Relu6, 2.5), (2.5, 1.0));
        assert_eq!(at(Relu6, 6.0), (6.0, 0.0));
        assert_eq!(at(Relu6, 9.0), (6.0, 0.0));
        assert_eq!(at(HardSigmoid, -3.0), (0.0, 0.0));
        assert_eq!(at(HardSigmoid, 0.0), (0.5, 1.0 / 6.0));
        assert_eq!(at(HardSigmoid, 3.0), (1.0, 0.0));
        assert_eq!(at(HardSwish, -4.0), (-0.0, 0.0));
        assert_eq!(at(HardSwish, -3.0), (-0.0, -0.5));
        assert_eq!(at(HardSwish, 0.0), (0.0, 0.5));
        assert_eq!(at(HardSwish, 3.0), (3.0, 1.5));
        assert_eq!(at(HardSwish, 4.0), (4.0, 1.0));
        assert_eq!(at(Silu, 0.0), (0.0, 0.5));
        let (y, d) = at(Silu, 2.0);
        let s = 1.0 / (1.0 + (-2.0f32).exp());
        assert!((y - 2.0 * s).abs() < 1e-6 && (d - s * (1.0 + 2.0 * (1.0 - s))).abs() < 1e-6);
        // Far tails stay finite.
        assert_eq!(at(Silu, -1000.0), (-0.0, -0.0));
        assert_eq!(at(Silu, 1000.0), (1000.0, 1.0));
    }

    #[test]
    fn inplace_matches() {
        let mut rng = Rng::new(32);
        let x = rng.vec(100);
        let dy = rng.vec(100);
        let mut y = vec![0.0; 100];
        let mut yi = x.clone();
        sigmoid_forward(&x, &mut y);
        sigmoid_forward_inplace(&mut yi);
        assert_eq!(y, yi);
        let mut dx = vec![0.0; 100];
        let mut dyi = dy.clone();
        tanh_backward(&y, &dy, &mut dx);
        tanh_backward_inplace(&y, &mut dyi);
        assert_eq!(dx, dyi);
        let mut yl = x.clone();
        leaky_relu_forward_inplace(&mut yl, 0.2);
        relu_forward_inplace(&mut yi);
        assert!(
            yl.iter()
                .zip(&x)
                .all(|(a, b)| *a == if *b > 0.0 { *b } else { 0.2 * b })
        );
        assert_eq!(sigmoid_f(-1000.0), 0.0);
        assert_eq!(sigmoid_f(1000.0), 1.0);
    }
}
