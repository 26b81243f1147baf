//! f32 math on contiguous slices, parallel with rayon, forward and backward. Knows nothing of graphs or UI.
//!
//! # Conventions
//! - Activations are NHWC (batch, height, width, channels), contiguous
//!   row-major `f32`; dense activations are (batch, features).
//! - Every kernel reads input slices and writes caller-provided output slices;
//!   scratch memory (im2col tiles, partial sums) comes from a caller-provided
//!   workspace whose length the geometry reports (`workspace_len`). Nothing
//!   allocates, so a compiled executor can run a training step allocation-free.
//! - Conv weights are HWIO: `[kh][kw][cin/groups][cout]`; dense weights are
//!   `[in][out]`.
//! - Backward functions *overwrite* their gradient outputs (they do not
//!   accumulate) unless their docs say otherwise; use [`misc::accumulate`] to
//!   sum gradients of a tensor used twice.
//! - Determinism: the same inputs and rayon thread count give bit-identical
//!   results (reductions use fixed partitions reduced in a fixed order).
//! - Shapes are checked with `assert!` (a mismatch is a bug in the caller,
//!   not a user error); geometry constructors return [`GeometryError`].
//!
//! # Where the time goes
//! Convolutions dominate. The microkernels come in four kernel sets —
//! AVX-512, AVX2+FMA, NEON, portable — chosen once per process from the CPU
//! ([`isa::active`]; `NETLOOM_KERNELS=avx512|avx2|neon|portable` forces
//! one). groups=1 convs run as
//! *direct* convolutions: per tile of output rows the input rows are copied
//! into a zero-padded band that stays in L1/L2 and the microkernel
//! reads im2col rows straight out of it (`gemm::conv_rows`); dX of stride-1
//! convs is the forward conv of dY with flipped weights; dW accumulates from
//! the same band (`gemm::conv_dw_rows`). Grouped convs and the rest use
//! im2col tiles + [`gemm::sgemm`]. `benches/kernels.rs` has the figures.
//!
//! # API at a glance
//! - [`conv::conv2d_forward`]`(geo, x, w, bias, y, ws)`,
//!   [`conv::conv2d_backward`]`(geo, x, w, dy, dx?, dw?, db?, ws)`; `ws` len
//!   [`Conv2dGeometry::workspace_len`].
//! - [`pool::max_pool2d_forward`]`(geo, x, y)` / `_backward(geo, x, y, dy, dx)`,
//!   [`pool::avg_pool2d_forward`]`(geo, x, y, count_include_pad)` / `_backward`,
//!   [`pool::global_avg_pool_forward`]`(x, y, hw, c)` / `_backward`.
//! - [`norm::batch_norm_train_forward`], [`norm::batch_norm_eval_forward`],
//!   [`norm::batch_norm_train_backward`], [`norm::batch_norm_eval_backward`].
//! - [`activation`]: relu, leaky_relu, sigmoid, tanh — `_forward`, `_backward`, `_inplace`.
//! - [`dense::dense_forward`]`(x, w, b, y, batch, in, out)`, [`dense::dense_backward`].
//! - [`loss::softmax_forward`], [`loss::softmax_cross_entropy`],
//!   [`loss::sigmoid_binary_cross_entropy`].
//! - [`misc`]: dropout (counter-based masks), add, accumulate, channel
//!   concat/split, zero_pad2d, [`misc::SplitMix64`] for seeded init.
//! - [`gemm::sgemm`] / [`gemm::par_sgemm`]: strided `C = αAB + βC`.

pub mod activation;
pub mod conv;
pub mod dense;
pub mod gemm;
pub mod isa;
pub mod loss;
mod micro;
pub mod misc;
pub mod norm;
pub mod pool;
pub mod scale;

pub use conv::{Conv2dGeometry, GeometryError, Pads};
pub use isa::KernelSet;
pub use pool::Pool2dGeometry;

#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: only used to hand provably disjoint regions of one buffer to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Elements per rayon task for elementwise kernels.
pub(crate) const ELEM_CHUNK: usize = 1 << 14;

#[cfg(test)]
pub(crate) mod testutil {
    /// splitmix64-based test RNG.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [-1, 1).
        pub fn uniform(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.uniform()).collect()
        }
    }

    /// `sum(out * r)` in f64: the scalar loss whose gradient w.r.t. `out` is `r`.
    pub fn dot64(out: &[f32], r: &[f32]) -> f64 {
        out.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// Central finite differences of `loss` w.r.t. every element of `x`,
    /// compared with `analytic`.
    ///
    /// The kernels are f32, the loss sum is f64. With |inputs| ≲ 1, `eps`
    /// = 1e-2 and outputs summed over ≲ 10³ terms, f32 rounding of each output
    /// (~6e-8 relative) contributes ≲ 1e-4/eps ≈ 1e-3·… absolute noise per
    /// difference quotient and the truncation error of the central difference
    /// is O(eps²·f''') ≈ 1e-4 for smooth ops; so `atol` = 2e-3 plus `rtol` = 1e-2
    /// separates correct gradients from wrong ones (a wrong one is off by O(1)).
    pub fn check(
        name: &str,
        x: &mut [f32],
        analytic: &[f32],
        eps: f32,
        mut loss: impl FnMut(&[f32]) -> f64,
    ) {
        assert_eq!(x.len(), analytic.len());
        let mut worst = 0f64;
        for i in 0..x.len() {
            let orig = x[i];
            x[i] = orig + eps;
            let lp = loss(x);
            x[i] = orig - eps;
            let lm = loss(x);
            x[i] = orig;
            let num = (lp - lm) / (2.0 * eps as f64);
            let ana = analytic[i] as f64;
            let err = (num - ana).abs();
            let tol = 2e-3 + 1e-2 * num.abs().max(ana.abs());
            worst = worst.max(err / tol);
            assert!(
                err <= tol,
                "{name}: gradient mismatch at {i}: numeric {num}, analytic {ana}"
            );
        }
        assert!(worst.is_finite());
    }
}
