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
use netloom::interop::proto::{ModelProto, NodeProto};
use netloom::interop::{onnx, pytorch};
use netloom::kernels::misc::SplitMix64;
use netloom::train::Plan;
use prost::Message;

mod common;
use common::gradcheck;

const BATCH: usize = 3;

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
        // Squeeze-and-excitation: the gate is the volume's channel means
        // through Dense and Sigmoid, a vector of C.
        LayerKind::ChannelScale => {
            let pooled = b.layer("squeeze", LayerKind::GlobalAvgPool, &[x]);
            let excite = b.dense("excite", pooled, 4);
            let gate = b.layer("gate", LayerKind::Sigmoid, &[excite]);
            b.layer("kind_under_test", kind.clone(), &[x, gate])
        }
        // One scale and shift per channel of the conv: the catalogue's
        // count (RGB) made the conv's, with constants that differ per channel.
        LayerKind::ChannelAffine { .. } => b.layer("kind_under_test", affine_of(4), &[x]),
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

/// A ChannelAffine of `c` channels, each with its own scale (one of them
/// negative, one zero) and shift.
fn affine_of(c: usize) -> LayerKind {
    LayerKind::ChannelAffine {
        scale: (0..c).map(|i| [1.75, -0.5, 0.0, 2.25][i % 4]).collect(),
        shift: (0..c).map(|i| 0.125 * i as f32 - 0.25).collect(),
    }
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
    let checked = gradcheck::check_param_gradients(name, &mut plan, &images, &labels, 4, &mut rng);
    assert!(checked > 0, "{name}: nothing trainable to check");
}

/// The ONNX nodes (op type, inputs) a kind exports as, for kinds written
/// as something other than one node of the obvious operator; `x` stands for
/// the layer's input and `kind_under_test.*` for its own tensors.
fn expected_onnx_nodes(kind: &LayerKind) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
    Some(match kind {
        LayerKind::Relu6 => vec![(
            "Clip",
            vec!["x", "kind_under_test.min", "kind_under_test.max"],
        )],
        LayerKind::HardSigmoid => vec![("HardSigmoid", vec!["x"])],
        LayerKind::HardSwish => vec![
            ("HardSigmoid", vec!["x"]),
            ("Mul", vec!["x", "kind_under_test.gate"]),
        ],
        LayerKind::Silu => vec![
            ("Sigmoid", vec!["x"]),
            ("Mul", vec!["x", "kind_under_test.sigmoid"]),
        ],
        // The catalogue graph's gate is a vector: unsqueezed to N×C×1×1.
        LayerKind::ChannelScale => vec![
            ("Unsqueeze", vec!["gate", "kind_under_test.axes"]),
            ("Mul", vec!["x", "kind_under_test.gate"]),
        ],
        LayerKind::ChannelAffine { .. } => vec![
            ("Mul", vec!["x", "kind_under_test.scale"]),
            (
                "Add",
                vec!["kind_under_test.scaled", "kind_under_test.shift"],
            ),
        ],
        _ => return None,
    })
}

/// The exported nodes of the layer under test match [`expected_onnx_nodes`].
fn check_onnx_structure(name: &str, graph: &Graph, kind: &LayerKind, bytes: &[u8]) {
    let Some(expected) = expected_onnx_nodes(kind) else {
        return;
    };
    let layer = graph.find("kind_under_test").expect("the layer under test");
    let input = graph.inputs_of(layer)[0].map(|f| graph.name_of(f).to_string());
    let model = ModelProto::decode(bytes).unwrap_or_else(|e| panic!("{name}: decode: {e}"));
    let graph = model.graph.expect("a graph");
    let mine: Vec<_> = graph
        .node
        .iter()
        .filter(|n| n.name.starts_with("kind_under_test"))
        .collect();
    let input = input.unwrap_or_default();
    let got: Vec<(String, Vec<String>)> = mine
        .iter()
        .map(|n| {
            let ins = n
                .input
                .iter()
                .map(|i| {
                    if *i == input {
                        "x".to_string()
                    } else {
                        i.clone()
                    }
                })
                .collect();
            (n.op_type.clone(), ins)
        })
        .collect();
    let want: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(op, ins)| (op.to_string(), ins.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(got, want, "{name}: exported ONNX nodes");
    assert_eq!(
        mine.last().map(|n| n.output.as_slice()),
        Some(&["kind_under_test".to_string()][..]),
        "{name}: the last node writes the layer's output"
    );
}

/// `structure`: also compare the exported nodes with [`expected_onnx_nodes`]
/// (which describes the catalogue graphs).
fn check_onnx_round_trip(name: &str, graph: &Graph, kind: &LayerKind, structure: bool) {
    let conventions = Conventions::default();
    let before = analyze(graph).totals(&conventions);
    let bytes =
        onnx::export_bytes(graph, None).unwrap_or_else(|e| panic!("{name}: ONNX export: {e}"));
    if structure {
        check_onnx_structure(name, graph, kind, &bytes);
    }
    let imported =
        onnx::import_bytes(&bytes, "every-kind").unwrap_or_else(|e| panic!("{name}: import: {e}"));
    assert!(
        imported.unsupported.is_empty() && imported.is_faithful(),
        "{name}: re-import left out {:?}: {:?}",
        imported.unsupported,
        imported.deviations
    );
    // The layer itself comes back, with its parameters.
    let back = imported.graph.find("kind_under_test").map(|id| {
        imported
            .graph
            .node(id)
            .map(|n| n.kind.clone())
            .expect("node")
    });
    if !matches!(kind, LayerKind::Input { .. }) {
        let back = back.unwrap_or_else(|| panic!("{name}: no `kind_under_test` after import"));
        assert_eq!(
            back.display_name(),
            kind.display_name(),
            "{name}: the re-imported design's `kind_under_test`"
        );
        match (kind, &back) {
            (LayerKind::Conv2d { dilation: a, .. }, LayerKind::Conv2d { dilation: b, .. }) => {
                assert_eq!(a, b, "{name}: dilation")
            }
            (
                LayerKind::AvgPool2d {
                    include_padding: a, ..
                },
                LayerKind::AvgPool2d {
                    include_padding: b, ..
                },
            ) => assert_eq!(a, b, "{name}: include_padding"),
            // The constants come back exactly (the graph holds `affine_of`'s).
            (LayerKind::ChannelAffine { .. }, back) => {
                let layer = graph.find("kind_under_test").and_then(|id| graph.node(id));
                assert_eq!(Some(back), layer.map(|n| &n.kind), "{name}: constants");
            }
            _ => {}
        }
    }
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

/// Every check of [`every_catalogue_kind_infers_compiles_trains_and_exports`]
/// on one graph.
fn check_all(name: &str, graph: &Graph, kind: &LayerKind, structure: bool) {
    check_gradients(name, graph);
    check_onnx_round_trip(name, graph, kind, structure);
    check_pytorch(name, graph, kind);
}

/// The ONNX node `graph`'s layer `kind_under_test` exports as.
fn exported_layer(graph: &Graph) -> NodeProto {
    let bytes = onnx::export_bytes(graph, None).unwrap();
    let model = ModelProto::decode(&bytes[..]).unwrap();
    model
        .graph
        .unwrap()
        .node
        .into_iter()
        .find(|n| n.name == "kind_under_test")
        .expect("a node named after the layer")
}

/// Parameters the catalogue's defaults leave off: a dilated (and a dilated
/// grouped) conv, an average pool that counts its padding (with ceil mode),
/// and a channel scale whose gate is a 1×1×C volume (a 1×1 average pool and
/// a 1×1 conv, as PyTorch's SE blocks).
#[test]
fn non_default_parameters_infer_compile_train_and_export() {
    for groups in [1, 2] {
        let conv = LayerKind::Conv2d {
            filters: 4,
            kernel: [3, 2],
            stride: [1, 2],
            padding: Padding::Explicit([2, 1, 1, 1]),
            groups,
            bias: true,
            dilation: [2, 3],
        };
        let graph = placed(&conv);
        check_all("dilated Conv2D", &graph, &conv, false);
        let node = exported_layer(&graph);
        let dilations = node.attribute.iter().find(|a| a.name == "dilations");
        assert_eq!(
            dilations.map(|a| a.ints.clone()),
            Some(vec![2, 3]),
            "{node:?}"
        );
        let source = pytorch::module_source(&graph).unwrap();
        assert!(source.contains("dilation=(2, 3)"), "{source}");
    }

    let pool = LayerKind::AvgPool2d {
        kernel: [3, 3],
        stride: [2, 2],
        padding: Padding::Explicit([1, 1, 1, 1]),
        ceil_mode: true,
        include_padding: true,
    };
    let graph = placed(&pool);
    check_all("AvgPool2D including padding", &graph, &pool, false);
    let node = exported_layer(&graph);
    let count = node
        .attribute
        .iter()
        .find(|a| a.name == "count_include_pad");
    assert_eq!(count.map(|a| a.i), Some(1), "{node:?}");
    let source = pytorch::module_source(&graph).unwrap();
    assert!(
        source.contains("nn.AvgPool2d((3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True)")
            || source.contains("nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)"),
        "{source}"
    );

    let mut g = Graph::new("se-1x1");
    let mut b = Builder::new(&mut g);
    let input = b.input("in", 6, 6, 4);
    let x = b.conv("c", input, 4, 3, 1, Padding::Same);
    let squeeze = b.layer(
        "squeeze",
        LayerKind::AvgPool2d {
            kernel: [6, 6],
            stride: [1, 1],
            padding: Padding::Valid,
            ceil_mode: false,
            include_padding: false,
        },
        &[x],
    );
    let excite = b.conv("excite", squeeze, 4, 1, 1, Padding::Valid);
    let gate = b.layer("gate", LayerKind::HardSigmoid, &[excite]);
    let scaled = b.layer("kind_under_test", LayerKind::ChannelScale, &[x, gate]);
    let flat = b.layer("flat", LayerKind::Flatten, &[scaled]);
    let fc = b.dense("fc", flat, 3);
    b.layer("softmax", LayerKind::Softmax, &[fc]);
    check_all(
        "ChannelScale with a 1×1×C gate",
        &g,
        &LayerKind::ChannelScale,
        false,
    );
    let bytes = onnx::export_bytes(&g, None).unwrap();
    let model = ModelProto::decode(&bytes[..]).unwrap();
    let mul: Vec<_> = model
        .graph
        .unwrap()
        .node
        .into_iter()
        .filter(|n| n.name.starts_with("kind_under_test"))
        .map(|n| (n.op_type, n.input))
        .collect();
    assert_eq!(
        mul,
        [("Mul".to_string(), vec!["c".to_string(), "gate".to_string()])],
        "a 1×1×C gate broadcasts as it is"
    );
    let source = pytorch::module_source(&g).unwrap();
    assert!(source.contains("kind_under_test = c * gate\n"), "{source}");
}

#[test]
fn every_catalogue_kind_infers_compiles_trains_and_exports() {
    let catalogue = LayerKind::catalogue();
    assert!(catalogue.len() >= 17, "the catalogue shrank");
    for kind in &catalogue {
        let name = kind.display_name();
        check_all(name, &placed(kind), kind, true);
    }
}
