//! Precise BN recomputes running statistics as the average over training
//! batches, replacing the exponential moving average.

mod common;

use common::*;
use netloom::infer::analyze;
use netloom::train::{Mode, Plan, eval};
use std::sync::Arc;

#[test]
fn one_full_batch_gives_the_exact_dataset_statistics() {
    let graph = tiny_design(3);
    let ds = synthetic(48, 4);
    let stats = ds.channel_stats();
    let mut plan = Plan::compile(&graph, &analyze(&graph), 48, 3).expect("compiles");
    let batches = eval::precise_bn(&mut plan, Arc::new(ds.clone()), &stats, 48, 1);
    assert_eq!(batches, 1);
    // The BN input over the whole dataset, computed directly.
    let mut x = ds.images.clone();
    for img in x.chunks_exact_mut(ds.image_len()) {
        stats.apply(img);
    }
    // A pass ending at c1 materialises it (a full pass fuses bn1 into it).
    let c1 = plan.step_of("c1").expect("c1");
    plan.forward_through(&x, c1, Mode::Eval);
    let c1 = plan.activation(c1);
    let c = 4;
    let n = (c1.len() / c) as f64;
    let rm = &plan.param("bn1.running_mean").expect("rm").data;
    let rv = &plan.param("bn1.running_var").expect("rv").data;
    for ch in 0..c {
        let vals: Vec<f64> = c1.iter().skip(ch).step_by(c).map(|&v| v as f64).collect();
        let mean = vals.iter().sum::<f64>() / n;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert!(
            (rm[ch] as f64 - mean).abs() < 1e-4,
            "mean {ch}: {} vs {mean}",
            rm[ch]
        );
        assert!(
            (rv[ch] as f64 - var).abs() < 1e-3 * var.max(1.0),
            "var {ch}: {} vs {var}",
            rv[ch]
        );
    }
    // The momentum the design asked for is restored afterwards.
    let bn = plan.step_of("bn1").expect("bn1");
    match plan.steps[bn].op {
        netloom::train::plan::Op::BatchNorm { momentum, .. } => assert_eq!(momentum, 0.9),
        _ => panic!("bn1 is BatchNorm"),
    }
}

#[test]
fn several_batches_average_and_frozen_layers_are_left_alone() {
    let mut graph = tiny_design(3);
    let id = graph.find("bn2").expect("bn2");
    graph.node_mut(id).expect("node").frozen = true;
    let ds = synthetic(64, 4);
    let stats = ds.channel_stats();
    let mut plan = Plan::compile(&graph, &analyze(&graph), 16, 3).expect("compiles");
    let before = plan.param("bn2.running_mean").expect("rm").data.clone();
    let batches = eval::precise_bn(&mut plan, Arc::new(ds), &stats, 64, 1);
    assert_eq!(batches, 4);
    assert_eq!(plan.param("bn2.running_mean").expect("rm").data, before);
    assert_ne!(
        plan.param("bn1.running_mean").expect("rm").data,
        vec![0.0; 4]
    );
}
