//! Parameter gradients against central finite differences, the loop of
//! `train/backward.rs`'s tests for tests outside the crate.

use netloom::kernels::misc::SplitMix64;
use netloom::train::{Mode, Plan};

/// The step of the central differences.
pub const EPS: f32 = 1e-3;

/// The training loss of one batch, with the same dropout masks every time.
pub fn loss_at(plan: &mut Plan, images: &[f32], labels: &[u32]) -> f64 {
    plan.restart_dropout_masks();
    plan.forward(images, Mode::Train);
    plan.loss_backward(labels) as f64
}

/// Runs forward and backward on the batch, then checks `per_tensor`
/// sampled entries (drawn from `rng`) of every trainable tensor's gradient
/// against `(loss(p + EPS) − loss(p − EPS)) / 2·EPS`, each within
/// `1e-3 + 5%` of the larger of the two. Panics naming `context`, the
/// tensor and the entry on a mismatch; returns how many entries it checked.
pub fn check_param_gradients(
    context: &str,
    plan: &mut Plan,
    images: &[f32],
    labels: &[u32],
    per_tensor: usize,
    rng: &mut SplitMix64,
) -> usize {
    let loss = loss_at(plan, images, labels);
    assert!(loss.is_finite(), "{context}: loss {loss}");
    plan.backward();
    let mut checked = 0;
    for p in 0..plan.params.len() {
        if !plan.params[p].is_trainable() {
            continue;
        }
        let analytic = plan.params[p].grad.clone();
        let len = plan.params[p].data.len();
        for _ in 0..len.min(per_tensor) {
            let j = (rng.next_u64() % len as u64) as usize;
            let orig = plan.params[p].data[j];
            plan.params[p].data[j] = orig + EPS;
            let up = loss_at(plan, images, labels);
            plan.params[p].data[j] = orig - EPS;
            let down = loss_at(plan, images, labels);
            plan.params[p].data[j] = orig;
            let numeric = (up - down) / (2.0 * EPS as f64);
            let a = analytic[j] as f64;
            assert!(
                (numeric - a).abs() <= 1e-3 + 0.05 * numeric.abs().max(a.abs()),
                "{context}: {}[{j}]: numeric {numeric}, analytic {a}",
                plan.params[p].name
            );
            checked += 1;
        }
    }
    checked
}
