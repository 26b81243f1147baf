//! What a direct forward tile does after its GEMM, while it is in cache:
//! the BatchNorm map (+ residual Add, ReLU) is [`crate::kernels::norm::BnAffine`];
//! the 2×2 max pool is here.

/// 2×2 stride-2 max pool of a tile of whole output rows (`row` floats each,
/// `c` channels) into `y`, comparing in the window order and with the same
/// select as [`crate::kernels::pool::max_pool2d_forward`], so values agree bit for bit.
pub(super) fn max_pool2_tile(t: &[f32], row: usize, c: usize, y: &mut [f32]) {
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
