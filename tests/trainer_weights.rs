//! Weights files: safetensors round trip, load reports, checkpoint and resume.

mod common;

use common::*;
use netloom::infer::analyze;
use netloom::train::trainer::RunEnd;
use netloom::train::{Plan, weights};

#[test]
fn saved_weights_load_back_bit_identical_with_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.safetensors");
    let mut c = config(3, 2);
    c.save = Some(path.clone());
    let (_, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
    let graph = tiny_design(3);
    let mut plan = Plan::compile(&graph, &analyze(&graph), 4, 99).expect("compiles");
    let (report, meta) = weights::load_into(&path, &mut plan.params).expect("loads");
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.matched.len(), plan.params.len());
    for (a, b) in plan.params.iter().zip(&out.params) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.data, b.data, "{}", a.name);
    }
    assert!(report.unused.is_empty(), "{report}");
    let meta = meta.expect("metadata");
    assert_eq!(meta.classes, vec!["a", "b", "c"]);
    assert_eq!(meta.mean.len(), 3);
    assert!(meta.precise_bn);
    // The moving-average statistics precise BN replaced travel as `ema.*`.
    assert_eq!(out.ema_stats.len(), 4);
    let mut model = netloom::train::eval::load_model(&graph, &path, 4).expect("model");
    assert!(model.use_ema_stats());
    for (name, data) in &out.ema_stats {
        assert_eq!(&model.plan.param(name).expect("stat").data, data, "{name}");
    }
}

#[test]
fn loading_reports_matched_missing_and_shape_mismatches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("six.safetensors");
    // A 6-class model (its own dataset would have 6 classes; save its fresh init).
    let graph6 = tiny_design(6);
    let plan6 = Plan::compile(&graph6, &analyze(&graph6), 2, 1).expect("compiles");
    weights::save(&path, &plan6.params, &Default::default()).expect("saves");
    let mut c = config(6, 1); // resized to 3 classes
    c.init_weights = Some(path);
    let (events, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
    let notes = notices(&events);
    let report = notes
        .iter()
        .find(|n| n.starts_with("initial weights"))
        .expect("a load report");
    assert!(report.contains("12 tensors matched"), "{report}");
    assert!(
        report.contains("fc.weight (file [6, 6], design [6, 3])"),
        "{report}"
    );
    assert!(report.contains("fc.bias"), "{report}");
}

#[test]
fn resuming_a_checkpoint_continues_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("ckpt.safetensors");
    let mut straight = config(3, 3);
    straight.precise_bn = false;
    let (_, full) = run(straight);

    let mut first = config(3, 2);
    first.precise_bn = false;
    first.checkpoint = Some(ckpt.clone());
    let (_, _) = run(first);
    let mut rest = config(3, 3);
    rest.precise_bn = false;
    rest.resume = Some(ckpt);
    let (events, resumed) = run(rest);
    assert_eq!(resumed.end, RunEnd::Finished);
    assert_eq!(batch_losses(&events).len(), 6, "only epoch 3 runs");
    for (a, b) in full.params.iter().zip(&resumed.params) {
        assert_eq!(a.data, b.data, "{}", a.name);
    }
}
