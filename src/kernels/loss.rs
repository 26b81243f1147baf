//! Softmax and the fused, numerically stable losses. Logits are (batch × classes).

/// Row-wise softmax, stable (subtracts the row max).
pub fn softmax_forward(logits: &[f32], probs: &mut [f32], classes: usize) {
    assert_eq!(logits.len(), probs.len(), "softmax: lengths");
    assert_eq!(logits.len() % classes, 0, "softmax: classes");
    for (z, p) in logits
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
    {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0f64;
        for (p, z) in p.iter_mut().zip(z) {
            *p = (*z - m).exp();
            s += *p as f64;
        }
        let inv = (1.0 / s) as f32;
        p.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Softmax + cross-entropy with integer labels, mean over the batch.
/// Returns the loss; writes `d_logits = (softmax − onehot)/batch` and, if
/// given, the probabilities. Uses `log Σ exp(z − max)` so no exp overflows.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    d_logits: &mut [f32],
    mut probs: Option<&mut [f32]>,
) -> f32 {
    let batch = labels.len();
    assert_eq!(
        logits.len(),
        batch * classes,
        "softmax_cross_entropy: logits length"
    );
    assert_eq!(
        d_logits.len(),
        logits.len(),
        "softmax_cross_entropy: d_logits length"
    );
    let inv_b = 1.0 / batch as f64;
    let mut loss = 0f64;
    for (i, (z, d)) in logits
        .chunks_exact(classes)
        .zip(d_logits.chunks_exact_mut(classes))
        .enumerate()
    {
        let label = labels[i] as usize;
        assert!(
            label < classes,
            "softmax_cross_entropy: label {label} ≥ {classes}"
        );
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let s: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
        let lse = m + s.ln();
        loss += lse - z[label] as f64;
        for (j, (d, &v)) in d.iter_mut().zip(z).enumerate() {
            let p = (v as f64 - lse).exp();
            if let Some(pr) = probs.as_deref_mut() {
                pr[i * classes + j] = p as f32;
            }
            let t = if j == label { 1.0 } else { 0.0 };
            *d = ((p - t) * inv_b) as f32;
        }
    }
    (loss * inv_b) as f32
}

/// Sigmoid + binary cross-entropy, mean over all elements (batch × outputs,
/// as Keras' `binary_crossentropy` averaged over the batch). Targets in [0, 1].
/// Stable form `max(z, 0) − z·t + log(1 + exp(−|z|))`. Returns the loss;
/// writes `d_logits = (σ(z) − t)/len` and, if given, `σ(z)`.
pub fn sigmoid_binary_cross_entropy(
    logits: &[f32],
    targets: &[f32],
    d_logits: &mut [f32],
    mut probs: Option<&mut [f32]>,
) -> f32 {
    assert_eq!(logits.len(), targets.len(), "sigmoid_bce: lengths");
    assert_eq!(logits.len(), d_logits.len(), "sigmoid_bce: lengths");
    let inv_n = 1.0 / logits.len() as f64;
    let mut loss = 0f64;
    for (i, ((&z, &t), d)) in logits
        .iter()
        .zip(targets)
        .zip(d_logits.iter_mut())
        .enumerate()
    {
        let (z, t) = (z as f64, t as f64);
        loss += z.max(0.0) - z * t + (-z.abs()).exp().ln_1p();
        let p = if z >= 0.0 {
            1.0 / (1.0 + (-z).exp())
        } else {
            let e = z.exp();
            e / (1.0 + e)
        };
        if let Some(pr) = probs.as_deref_mut() {
            pr[i] = p as f32;
        }
        *d = ((p - t) * inv_n) as f32;
    }
    (loss * inv_n) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check};

    #[test]
    fn softmax_ce_gradient_and_stability() {
        let mut rng = Rng::new(51);
        let (b, k) = (4, 5);
        let mut z: Vec<f32> = rng.vec(b * k).iter().map(|v| v * 3.0).collect();
        let labels = [0u32, 4, 2, 2];
        let mut d = vec![0.0; b * k];
        let mut p = vec![0.0; b * k];
        softmax_cross_entropy(&z, &labels, k, &mut d, Some(&mut p));
        let mut p2 = vec![0.0; b * k];
        softmax_forward(&z, &mut p2, k);
        for (a, c) in p.iter().zip(&p2) {
            assert!((a - c).abs() < 1e-6);
        }
        let mut scratch = vec![0.0; b * k];
        check("softmax ce", &mut z, &d, 1e-2, |z| {
            softmax_cross_entropy(z, &labels, k, &mut scratch, None) as f64
        });
        // huge logits stay finite
        let big = [1000.0f32, -1000.0, 0.0];
        let mut d = [0.0; 3];
        let l = softmax_cross_entropy(&big, &[1], 3, &mut d, None);
        assert!((l - 2000.0).abs() < 1e-2 && d.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn sigmoid_bce_gradient_and_stability() {
        let mut rng = Rng::new(52);
        let mut z: Vec<f32> = rng.vec(12).iter().map(|v| v * 4.0).collect();
        let t: Vec<f32> = rng
            .vec(12)
            .iter()
            .map(|v| if *v > 0.0 { 1.0 } else { 0.0 })
            .collect();
        let mut d = vec![0.0; 12];
        sigmoid_binary_cross_entropy(&z, &t, &mut d, None);
        let mut scratch = vec![0.0; 12];
        check("sigmoid bce", &mut z, &d, 1e-2, |z| {
            sigmoid_binary_cross_entropy(z, &t, &mut scratch, None) as f64
        });
        let mut d = [0.0; 2];
        let mut p = [0.0; 2];
        let l = sigmoid_binary_cross_entropy(&[500.0, -500.0], &[0.0, 1.0], &mut d, Some(&mut p));
        assert!((l - 500.0).abs() < 1e-3, "{l}");
        assert_eq!(p, [1.0, 0.0]);
    }
}

/// Gradient of a row-wise softmax that is *not* fused with a loss:
/// `dx = y ⊙ (dy − Σ dy·y)` per row. `dx` is overwritten.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], classes: usize) {
    assert_eq!(y.len(), dy.len(), "softmax_backward: lengths");
    assert_eq!(y.len(), dx.len(), "softmax_backward: lengths");
    for ((y, dy), dx) in y
        .chunks_exact(classes)
        .zip(dy.chunks_exact(classes))
        .zip(dx.chunks_exact_mut(classes))
    {
        let dot: f64 = y.iter().zip(dy).map(|(&a, &b)| a as f64 * b as f64).sum();
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = y * (dy - dot as f32);
        }
    }
}

#[cfg(test)]
mod softmax_backward_tests {
    use super::*;
    use crate::kernels::testutil::{Rng, check, dot64};

    #[test]
    fn softmax_backward_matches_finite_differences() {
        let classes = 5;
        let mut rng = Rng::new(11);
        let mut x = rng.vec(3 * classes);
        let r = rng.vec(3 * classes);
        let mut y = vec![0.0; x.len()];
        softmax_forward(&x, &mut y, classes);
        let mut dx = vec![0.0; x.len()];
        softmax_backward(&y, &r, &mut dx, classes);
        check("softmax", &mut x, &dx, 1e-2, |x| {
            let mut y = vec![0.0; x.len()];
            softmax_forward(x, &mut y, classes);
            dot64(&y, &r)
        });
    }
}
