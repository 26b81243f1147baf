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
//! strides just skip rows). Backward: d_input = the forward conv of dY with
//! flipped weights (stride 1), or dY·Wᵀ then col2im over tiles of whole
//! images (no write races); d_weight = colᵀ·dY, either with per-slot partial
//! sums reduced in slot order or, when the weight outweighs the input or a
//! pointwise conv has few pixels, with dW's row blocks split between threads
//! (each element written once); d_bias = column sums of dY. Weights are
//! packed once per call, in parallel.
//!
//! Files: `geometry` (shapes, workspace sizes, direct tiling and input
//! bands), `forward` (im2col, direct and pointwise forward), `epilogue`
//! (what a forward tile does after its GEMM: the fused pool), `backward`
//! (dX, dW, db), `partials` (dW and db as per-slot partial sums reduced in
//! slot order), `dilated` (taps `dilation` apart, im2col + GEMM).

mod backward;
mod dilated;
mod epilogue;
mod forward;
mod geometry;
mod partials;

pub use backward::conv2d_backward;
pub use dilated::DilatedConv2d;
pub use forward::{conv2d_forward, conv2d_forward_bn};
pub(crate) use geometry::out_dim;
pub use geometry::{Conv2dGeometry, GeometryError, Pads, TILE_ROWS};

#[cfg(test)]
mod tests;
