//! Every kind of `LayerKind::catalogue()` (with its default parameters)
//! through the whole pipeline: inference, compile, a training-mode forward
//! and backward pass checked against central finite differences, ONNX
//! export then import (same params and MACs back), and PyTorch export (the
//! generated source names the layer; torch itself is not run here).
//!
//! A kind added to the catalogue is covered without touching this file; a
//! kind that cannot be placed in either test graph fails it.

use netloom::graph::blocks::Builder;
use netloom::graph::{Graph, LayerKind, NodeId, Padding};
use netloom::infer::{Conventions, analyze};
use netloom::interop::{onnx, pytorch};
use netloom::kernels::misc::SplitMix64;
use netloom::train::{Mode, Plan};

const BATCH: usize = 3;
/// Central-difference step; see the gradient checks in `src/train/backward.rs`
/// for why 1e-3 and these tolerances.
const EPS: f32 = 1e-3;

/// `input 6×6×4 → conv → [kind_under_test on the volume] → flatten → dense 3 → softmax`,
/// or with it after the flatten (`vector`). Add and Concat join the conv
/// with a second conv of the input.
fn graph_with(kind: &LayerKind, vector: bool) -> Graph {
    let mut g = Graph::new("every-kind");
    let mut b = Builder::new(&mut g);
    let input = b.input("in", 6, 6, 4);
    let mut x = b.conv("c", input, 4, 3, 1, Padding::Same);
    if vector {
        x = b.layer("flat", LayerKind::Flatten, &[x]);
    }
    let op = match kind {
        LayerKind::Input { .. } => x,
        LayerKind::Add | LayerKind::Concat => {
            let side = if vector {
                let s = b.conv("c2", input, 4, 3, 1, Padding::Same);
                b.layer("flat2", LayerKind::Flatten, &[s])
            } else {
                b.conv("c2", input, 4, 3, 1, Padding::Same)
            };
            b.layer("kind_under_test", kind.clone(), &[x, side])
        }
        _ => b.layer("kind_under_test", kind.clone(), &[x]),
    };
    let flat: NodeId = if vector {
        op
    } else {
        b.layer("flat", LayerKind::Flatten, &[op])
    };
    let fc = b.dense("fc", flat, 3);
    b.layer("softmax", LayerKind::Softmax, &[fc]);
    g
}

/// The first of the two test graphs in which `kind` infers without errors.
fn placed(kind: &LayerKind) -> Graph {
    for vector in [false, true] {
        let g = graph_with(kind, vector);
        if analyze(&g).is_valid() {
            return g;
        }
    }
    let errors = analyze(&graph_with(kind, false)).error_summary(&graph_with(kind, false), 3);
    panic!("{} fits neither test graph: {errors}", kind.display_name());
}

fn loss_at(plan: &mut Plan, images: &[f32], labels: &[u32]) -> f64 {
    plan.restart_dropout_masks();
    plan.forward(images, Mode::Train);
    plan.loss_backward(labels) as f64
}

/// Checks 4 sampled entries of every trainable tensor against central differences.
fn check_gradients(name: &str, graph: &Graph) {
    let analysis = analyze(graph);
    let mut plan = Plan::compile(graph, &analysis, BATCH, 7)
        .unwrap_or_else(|e| panic!("{name}: compile: {e}"));
    let (h, w, c) = plan.input_shape;
    let mut rng = SplitMix64::new(11);
    let images: Vec<f32> = (0..BATCH * h * w * c)
        .map(|_| rng.next_f32() * 2.0 - 1.0)
        .collect();
    let labels: Vec<u32> = (0..BATCH).map(|i| (i % plan.classes) as u32).collect();
    let loss = loss_at(&mut plan, &images, &labels);
    assert!(loss.is_finite(), "{name}: loss {loss}");
    plan.backward();
    let mut checked = 0;
    for p in 0..plan.params.len() {
        if !plan.params[p].is_trainable() {
            continue;
        }
        let analytic = plan.params[p].grad.clone();
        let len = plan.params[p].data.len();
        for _ in 0..len.min(4) {
            let j = (rng.next_u64() % len as u64) as usize;
            let orig = plan.params[p].data[j];
            plan.params[p].data[j] = orig + EPS;
            let up = loss_at(&mut plan, &images, &labels);
            plan.params[p].data[j] = orig - EPS;
            let down = loss_at(&mut plan, &images, &labels);
            plan.params[p].data[j] = orig;
            let numeric = (up - down) / (2.0 * EPS as f64);
            let a = analytic[j] as f64;
            assert!(
                (numeric - a).abs() <= 1e-3 + 0.05 * numeric.abs().max(a.abs()),
                "{name}: {}[{j}]: numeric {numeric}, analytic {a}",
                plan.params[p].name
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{name}: nothing trainable to check");
}

fn check_onnx_round_trip(name: &str, graph: &Graph) {
    let conventions = Conventions::default();
    let before = analyze(graph).totals(&conventions);
    let bytes =
        onnx::export_bytes(graph, None).unwrap_or_else(|e| panic!("{name}: ONNX export: {e}"));
    let imported =
        onnx::import_bytes(&bytes, "every-kind").unwrap_or_else(|e| panic!("{name}: import: {e}"));
    assert!(
        imported.unsupported.is_empty(),
        "{name}: re-import left out {:?}",
        imported.unsupported
    );
    let after_analysis = analyze(&imported.graph);
    assert!(
        after_analysis.is_valid(),
        "{name}: the re-imported design has errors"
    );
    let after = after_analysis.totals(&conventions);
    assert_eq!(
        (before.total_params, before.macs),
        (after.total_params, after.macs),
        "{name}: params and MACs after ONNX export and import"
    );
}

fn check_pytorch(name: &str, graph: &Graph, kind: &LayerKind) {
    let source =
        pytorch::module_source(graph).unwrap_or_else(|e| panic!("{name}: PyTorch export: {e}"));
    if !matches!(kind, LayerKind::Input { .. }) {
        assert!(
            source.contains("kind_under_test"),
            "{name}: the generated module does not mention the layer `kind_under_test`:\n{source}"
        );
    }
}

#[test]
fn every_catalogue_kind_infers_compiles_trains_and_exports() {
    let catalogue = LayerKind::catalogue();
    assert!(catalogue.len() >= 17, "the catalogue shrank");
    for kind in &catalogue {
        let name = kind.display_name();
        let graph = placed(kind);
        check_gradients(name, &graph);
        check_onnx_round_trip(name, &graph);
        check_pytorch(name, &graph, kind);
    }
}
