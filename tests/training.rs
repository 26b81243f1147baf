//! The compiled resnet-mini learns a small fixed synthetic problem, and the
//! same seed gives bit-identical losses.

use netloom::graph::file;
use netloom::infer::analyze;
use netloom::kernels::misc::SplitMix64;
use netloom::train::{Optimizer, OptimizerConfig, OptimizerKind, Plan, Schedule};

const BATCH: usize = 8;

/// 48 images of 6 classes: class `k` is a bright square at a class-specific
/// place and colour, on noise.
fn synthetic() -> (Vec<f32>, Vec<u32>) {
    let (h, w, c) = (64, 64, 3);
    let mut rng = SplitMix64::new(3);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..48 {
        let k = i % 6;
        let (y0, x0) = (8 + (k / 3) * 28, 6 + (k % 3) * 18);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let inside = (y0..y0 + 16).contains(&y) && (x0..x0 + 14).contains(&x);
                    let v = if inside && ch == k % 3 { 1.0 } else { 0.0 };
                    images.push(v + 0.3 * (rng.next_f32() - 0.5));
                }
            }
        }
        labels.push(k as u32);
    }
    (images, labels)
}

fn train(steps: usize, seed: u64) -> Vec<f32> {
    let path = netloom::default_design_path();
    let graph = file::load(&path).expect("resnet-mini preset");
    let analysis = analyze(&graph);
    let mut plan = Plan::compile(&graph, &analysis, BATCH, seed).expect("compiles");
    let mut opt = Optimizer::new(
        OptimizerConfig {
            kind: OptimizerKind::sgd_momentum(),
            learning_rate: 0.01,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
        },
        &plan.params,
    );
    let (images, labels) = synthetic();
    let per = 64 * 64 * 3;
    (0..steps)
        .map(|s| {
            let b = s % (48 / BATCH);
            let x = &images[b * BATCH * per..(b + 1) * BATCH * per];
            let y = &labels[b * BATCH..(b + 1) * BATCH];
            plan.train_step(x, y, &mut opt)
        })
        .collect()
}

#[test]
fn resnet_mini_learns_and_is_deterministic() {
    let losses = train(120, 42);
    let first: f32 = losses[..6].iter().sum::<f32>() / 6.0;
    let last: f32 = losses[losses.len() - 6..].iter().sum::<f32>() / 6.0;
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(first > 1.2, "starts near ln 6 = 1.79, got {first}");
    assert!(last < 0.25 * first, "loss fell only from {first} to {last}");
    let again = train(12, 42);
    assert_eq!(&losses[..12], &again[..], "same seed, same losses");
    let other = train(12, 43);
    assert_ne!(&losses[..12], &other[..], "another seed starts elsewhere");
}
