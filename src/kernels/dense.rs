//! Fully connected layer: `y = x·W + b`, x (batch × in), W `[in][out]`, b `[out]`.

use super::gemm::{MatRef, par_sgemm, sgemm};

/// `y` (batch × out) is overwritten.
pub fn dense_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    batch: usize,
    n_in: usize,
    n_out: usize,
) {
    assert_eq!(x.len(), batch * n_in, "dense: input length");
    assert_eq!(w.len(), n_in * n_out, "dense: weight length");
    assert_eq!(y.len(), batch * n_out, "dense: output length");
    let beta = if let Some(b) = bias {
        assert_eq!(b.len(), n_out, "dense: bias length");
        for r in y.chunks_exact_mut(n_out) {
            r.copy_from_slice(b);
        }
        1.0
    } else {
        0.0
    };
    par_sgemm(
        batch,
        n_out,
        n_in,
        1.0,
        MatRef::row_major(x, n_in),
        MatRef::row_major(w, n_out),
        beta,
        y,
        n_out,
    );
}

/// Gradients of [`dense_forward`]; each output optional and overwritten:
/// `dx = dy·Wᵀ`, `dw = xᵀ·dy`, `db = Σ_batch dy`.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    batch: usize,
    n_in: usize,
    n_out: usize,
) {
    assert_eq!(x.len(), batch * n_in, "dense_backward: input length");
    assert_eq!(w.len(), n_in * n_out, "dense_backward: weight length");
    assert_eq!(dy.len(), batch * n_out, "dense_backward: dy length");
    if let Some(dx) = dx {
        assert_eq!(dx.len(), x.len(), "dense_backward: dx length");
        par_sgemm(
            batch,
            n_in,
            n_out,
            1.0,
            MatRef::row_major(dy, n_out),
            MatRef::transposed(w, n_out),
            0.0,
            dx,
            n_in,
        );
    }
    if let Some(dw) = dw {
        assert_eq!(dw.len(), w.len(), "dense_backward: dw length");
        // Rows of dW are independent: splitting them keeps the batch sum in order.
        par_sgemm(
            n_in,
            n_out,
            batch,
            1.0,
            MatRef::transposed(x, n_in),
            MatRef::row_major(dy, n_out),
            0.0,
            dw,
            n_out,
        );
    }
    if let Some(db) = db {
        assert_eq!(db.len(), n_out, "dense_backward: db length");
        db.fill(0.0);
        for r in dy.chunks_exact(n_out) {
            for (d, g) in db.iter_mut().zip(r) {
                *d += *g;
            }
        }
    }
}

/// Single-threaded variant for tiny layers inside an already parallel region.
pub fn dense_forward_seq(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    batch: usize,
    n_in: usize,
    n_out: usize,
) {
    sgemm(
        batch,
        n_out,
        n_in,
        1.0,
        MatRef::row_major(x, n_in),
        MatRef::row_major(w, n_out),
        0.0,
        y,
        n_out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    #[test]
    fn gradients() {
        let mut rng = Rng::new(41);
        let (b, i, o) = (3, 7, 5);
        let mut x = rng.vec(b * i);
        let mut w = rng.vec(i * o);
        let mut bias = rng.vec(o);
        let r = rng.vec(b * o);
        let fwd = |x: &[f32], w: &[f32], bb: &[f32]| {
            let mut y = vec![0.0; b * o];
            dense_forward(x, w, Some(bb), &mut y, b, i, o);
            dot64(&y, &r)
        };
        // forward value
        let mut y = vec![0.0; b * o];
        dense_forward(&x, &w, Some(&bias), &mut y, b, i, o);
        let want: f32 = bias[2] + (0..i).map(|k| x[i + k] * w[k * o + 2]).sum::<f32>();
        assert!((y[o + 2] - want).abs() < 1e-5);
        let mut y2 = vec![0.0; b * o];
        dense_forward_seq(&x, &w, &mut y2, b, i, o);
        assert!((y2[o + 2] + bias[2] - want).abs() < 1e-5);
        let (mut dx, mut dw, mut db) = (vec![0.0; b * i], vec![0.0; i * o], vec![0.0; o]);
        dense_backward(
            &x,
            &w,
            &r,
            Some(&mut dx),
            Some(&mut dw),
            Some(&mut db),
            b,
            i,
            o,
        );
        let (w0, b0) = (w.clone(), bias.clone());
        check("dense dx", &mut x, &dx, 1e-2, |x| fwd(x, &w0, &b0));
        let x0 = x.clone();
        check("dense dw", &mut w, &dw, 1e-2, |w| fwd(&x0, w, &b0));
        check("dense db", &mut bias, &db, 1e-2, |bb| fwd(&x0, &w0, bb));
    }
}
