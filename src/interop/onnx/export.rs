//! ONNX export: a design (and its weights) as an opset-13 `ModelProto`.

use super::attributes::{float, int, ints, string};
use super::{EXPORT_IR_VERSION, EXPORT_OPSET, SAME_HINT};
use crate::graph::{Graph, LayerKind, Padding};
use crate::infer::{self, Shape};
use crate::interop::proto::{
    AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto, data_type,
};
use crate::interop::{InteropError, Tensors, design_errors, param_shapes, to_framework};
use crate::train::weights::WeightsMeta;
use prost::Message;
use std::path::Path;

/// Writes `graph` as an ONNX model (opset [`EXPORT_OPSET`]) to `path`.
///
/// With `weights` (Netloom layouts, see [`super`]), parameters are written as
/// initializers and every parameter of every layer must be present. Without,
/// parameters become graph inputs with declared shapes: a valid model that
/// carries the structure and costs only.
pub fn export(graph: &Graph, weights: Option<&Tensors>, path: &Path) -> Result<(), InteropError> {
    let bytes = export_bytes(graph, weights)?;
    crate::graph::file::write_atomically(path, &bytes).map_err(|source| InteropError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The ONNX model of `graph`, serialised; see [`export`].
pub fn export_bytes(graph: &Graph, weights: Option<&Tensors>) -> Result<Vec<u8>, InteropError> {
    Ok(export_model(graph, weights)?.encode_to_vec())
}

/// [`export`] of a run's weights, with what the model's user needs from the
/// run in the model's `metadata_props`: `netloom.classes` (class names in
/// output order), `netloom.mean` and `netloom.std` (per-channel input
/// normalisation of 0..1 pixel values), each as JSON.
pub fn export_with_meta(
    graph: &Graph,
    weights: &Tensors,
    meta: Option<&WeightsMeta>,
    path: &Path,
) -> Result<(), InteropError> {
    let mut model = export_model(graph, Some(weights))?;
    if let Some(meta) = meta {
        model.metadata_props = metadata_props(meta);
    }
    crate::graph::file::write_atomically(path, &model.encode_to_vec()).map_err(|source| {
        InteropError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The run's class names and normalisation as model metadata (only what it knows).
fn metadata_props(meta: &WeightsMeta) -> Vec<StringStringEntryProto> {
    let mut props = Vec::new();
    let mut put = |key: &str, value: String| {
        props.push(StringStringEntryProto {
            key: key.into(),
            value,
        })
    };
    if !meta.classes.is_empty() {
        put("netloom.classes", json_list(&meta.classes));
    }
    if let Some(stats) = meta.stats() {
        put("netloom.mean", json_list(&stats.mean));
        put("netloom.std", json_list(&stats.std));
    }
    props
}

fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// PyTorch's hard sigmoid `relu6(x + 3) / 6` as ONNX `HardSigmoid`
/// (`max(0, min(1, αx + β))`).
fn hard_sigmoid_attrs() -> Vec<AttributeProto> {
    vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)]
}

/// The model: every layer in order becomes its parameters (initializers or
/// typed inputs), its node(s) and its output's declared shape; then the
/// graph's outputs are declared and the graph wrapped in an opset-13 model.
fn export_model(graph: &Graph, weights: Option<&Tensors>) -> Result<ModelProto, InteropError> {
    let analysis = infer::analyze(graph);
    if let Some(errors) = design_errors(graph, &analysis) {
        return Err(InteropError::Design(errors));
    }
    let framework = weights
        .map(|w| to_framework(graph, &analysis, w))
        .transpose()?;
    let mut g = GraphProto {
        name: graph.name.clone(),
        doc_string: "exported by Netloom".into(),
        ..Default::default()
    };
    for &id in &analysis.order {
        let (Some(node), Some(info)) = (graph.node(id), analysis.node(id)) else {
            continue;
        };
        let Some(out_shape) = info.output_shape else {
            continue;
        };
        let inputs: Vec<String> = graph
            .inputs_of(id)
            .into_iter()
            .flatten()
            .map(|f| graph.name_of(f).to_string())
            .collect();
        let params = parameters(&mut g, node, info, framework.as_ref())?;
        let mut nodes = LayerNodes {
            g: &mut g,
            name: &node.name,
        };
        layer_nodes(&mut nodes, &node.kind, info, inputs, params);
        if !matches!(node.kind, LayerKind::Input { .. }) {
            g.value_info.push(value_info(&node.name, nchw(out_shape)));
        }
    }
    declare_outputs(&mut g, graph, &analysis);
    Ok(model_proto(g))
}

/// A layer's parameter names, in ONNX input order: initializers when
/// weights are given (every one must be there), else typed graph inputs.
fn parameters(
    g: &mut GraphProto,
    node: &crate::graph::Node,
    info: &infer::NodeInfo,
    framework: Option<&Tensors>,
) -> Result<Vec<String>, InteropError> {
    let in_shape = info.input_shapes.first().copied().flatten();
    let mut params = Vec::new();
    for (key, netloom_shape) in param_shapes(&node.kind, in_shape) {
        let pname = format!("{}.{key}", node.name);
        let dims = framework_dims(&node.kind, key, &netloom_shape);
        match framework {
            Some(tensors) => {
                let (_, values) = tensors
                    .get(&pname)
                    .ok_or_else(|| InteropError::Weights(format!("`{pname}` is missing")))?;
                g.initializer.push(float_tensor(&pname, &dims, values));
            }
            None => g
                .input
                .push(value_info(&pname, dims.iter().map(|&d| Some(d as i64)))),
        }
        params.push(pname);
    }
    Ok(params)
}

/// Where one layer's ONNX nodes and constants go.
struct LayerNodes<'a> {
    g: &'a mut GraphProto,
    /// The layer's name: its (last) node's output and, mostly, node name.
    name: &'a str,
}

impl LayerNodes<'_> {
    /// Adds a node. Node names must be unique: the Flatten after a
    /// GlobalAveragePool (both from one GlobalAvgPool layer) gets a suffix,
    /// and so does the gate node of a layer written as two (`HardSwish`, `SiLU`).
    fn push(
        &mut self,
        op: &str,
        ins: Vec<String>,
        out: String,
        attrs: Vec<AttributeProto>,
        doc: &str,
    ) {
        let name = self.name;
        let node_name = if op == "Flatten" && ins.first().is_some_and(|i| i.ends_with(".pooled")) {
            format!("{name}/flatten")
        } else if out != name && op != "GlobalAveragePool" {
            format!("{name}/{}", op.to_lowercase())
        } else {
            name.to_string()
        };
        self.g.node.push(NodeProto {
            input: ins,
            output: vec![out],
            name: node_name,
            op_type: op.into(),
            attribute: attrs,
            doc_string: doc.into(),
            ..Default::default()
        });
    }

    /// A node whose output is the layer's.
    fn layer(&mut self, op: &str, ins: Vec<String>, attrs: Vec<AttributeProto>) {
        self.push(op, ins, self.name.to_string(), attrs, "");
    }

    /// A constant (`{layer}.{suffix}`); returns its name.
    fn constant(&mut self, suffix: &str, tensor: impl FnOnce(&str) -> TensorProto) -> String {
        let name = format!("{}.{suffix}", self.name);
        self.g.initializer.push(tensor(&name));
        name
    }

    /// `x · gate(x)` in two nodes: the gate (`{layer}.{suffix}`), then Mul.
    fn gated(&mut self, x: &str, suffix: &str, gate_op: &str, attrs: Vec<AttributeProto>) {
        let gate = format!("{}.{suffix}", self.name);
        self.push(gate_op, vec![x.to_string()], gate.clone(), attrs, "");
        self.layer("Mul", vec![x.to_string(), gate], vec![]);
    }
}

/// The ONNX node(s) of one layer (the per-kind rule).
fn layer_nodes(
    nodes: &mut LayerNodes,
    kind: &LayerKind,
    info: &infer::NodeInfo,
    inputs: Vec<String>,
    params: Vec<String>,
) {
    let x = inputs.first().cloned().unwrap_or_default();
    match kind {
        LayerKind::Input { .. } => {
            if let Some(shape) = info.output_shape {
                nodes.g.input.push(value_info(nodes.name, nchw(shape)));
            }
        }
        LayerKind::Conv2d {
            groups, padding, ..
        } => {
            let doc = if *padding == Padding::Same {
                SAME_HINT
            } else {
                ""
            };
            let mut attrs = window_attrs(info, false);
            attrs.push(int("group", *groups as i64));
            let [dh, dw] = info
                .window
                .map_or([1, 1], |[h, w]| [h.dilation, w.dilation]);
            attrs.push(ints("dilations", &[dh as i64, dw as i64]));
            let out = nodes.name.to_string();
            nodes.push("Conv", [inputs, params].concat(), out, attrs, doc);
        }
        LayerKind::ZeroPad2d {
            padding: [t, b, l, r],
        } => {
            let pads = [0, 0, *t as i64, *l as i64, 0, 0, *b as i64, *r as i64];
            let pads = nodes.constant("pads", |n| int64_tensor(n, &[8], &pads));
            nodes.layer("Pad", vec![x, pads], vec![string("mode", "constant")]);
        }
        LayerKind::MaxPool2d { .. } | LayerKind::AvgPool2d { .. } => {
            pool_node(nodes, kind, info, inputs)
        }
        LayerKind::GlobalAvgPool => {
            let pooled = format!("{}.pooled", nodes.name);
            nodes.push("GlobalAveragePool", inputs, pooled.clone(), vec![], "");
            nodes.layer("Flatten", vec![pooled], vec![int("axis", 1)]);
        }
        LayerKind::BatchNorm { epsilon, momentum } => nodes.layer(
            "BatchNormalization",
            [inputs, params].concat(),
            vec![
                float("epsilon", *epsilon as f32),
                float("momentum", *momentum as f32),
            ],
        ),
        LayerKind::Relu => nodes.layer("Relu", inputs, vec![]),
        LayerKind::LeakyRelu { alpha } => {
            nodes.layer("LeakyRelu", inputs, vec![float("alpha", *alpha as f32)])
        }
        LayerKind::Sigmoid => nodes.layer("Sigmoid", inputs, vec![]),
        LayerKind::Tanh => nodes.layer("Tanh", inputs, vec![]),
        LayerKind::Relu6 => {
            let lo = nodes.constant("min", |n| float_tensor(n, &[], &[0.0]));
            let hi = nodes.constant("max", |n| float_tensor(n, &[], &[6.0]));
            nodes.layer("Clip", vec![x, lo, hi], vec![]);
        }
        LayerKind::HardSigmoid => nodes.layer("HardSigmoid", inputs, hard_sigmoid_attrs()),
        // Opset 13 has no HardSwish (it arrives in 14): x · HardSigmoid(x).
        LayerKind::HardSwish => nodes.gated(&x, "gate", "HardSigmoid", hard_sigmoid_attrs()),
        // x · Sigmoid(x), as PyTorch exports SiLU.
        LayerKind::Silu => nodes.gated(&x, "sigmoid", "Sigmoid", vec![]),
        LayerKind::Softmax => nodes.layer("Softmax", inputs, vec![int("axis", 1)]),
        LayerKind::Dropout { rate } => {
            let ratio = nodes.constant("ratio", |n| float_tensor(n, &[], &[*rate as f32]));
            nodes.layer("Dropout", vec![x, ratio], vec![]);
        }
        LayerKind::Flatten => nodes.layer("Flatten", inputs, vec![int("axis", 1)]),
        LayerKind::Dense { .. } => {
            nodes.layer("Gemm", [inputs, params].concat(), vec![int("transB", 1)])
        }
        LayerKind::Add => {
            let op = if inputs.len() == 2 { "Add" } else { "Sum" };
            nodes.layer(op, inputs, vec![]);
        }
        LayerKind::ChannelScale => channel_scale_nodes(nodes, info, inputs),
        // Constant C×1×1 tensors (broadcast over N×C×H×W), not parameters.
        LayerKind::ChannelAffine { scale, shift } => {
            let dims = [scale.len(), 1, 1];
            let a = nodes.constant("scale", |n| float_tensor(n, &dims, scale));
            let b = nodes.constant("shift", |n| float_tensor(n, &dims, shift));
            let scaled = format!("{}.scaled", nodes.name);
            nodes.push("Mul", vec![x, a], scaled.clone(), vec![], "");
            nodes.layer("Add", vec![scaled, b], vec![]);
        }
        LayerKind::Concat => nodes.layer("Concat", inputs, vec![int("axis", 1)]),
    }
}

/// A window's `kernel_shape`, `strides`, `pads` (and `ceil_mode` when asked).
fn window_attrs(info: &infer::NodeInfo, ceil: bool) -> Vec<AttributeProto> {
    let Some([ah, aw]) = info.window else {
        return Vec::new();
    };
    let mut a = vec![
        ints("kernel_shape", &[ah.kernel as i64, aw.kernel as i64]),
        ints("strides", &[ah.stride as i64, aw.stride as i64]),
        ints(
            "pads",
            &[
                ah.pad_before as i64,
                aw.pad_before as i64,
                ah.pad_after as i64,
                aw.pad_after as i64,
            ],
        ),
    ];
    if ceil {
        a.push(int("ceil_mode", 1));
    }
    a
}

/// MaxPool or AveragePool. An average pool divides by the in-bounds count
/// (ONNX's default `count_include_pad = 0`) unless it includes the padding.
fn pool_node(
    nodes: &mut LayerNodes,
    kind: &LayerKind,
    info: &infer::NodeInfo,
    inputs: Vec<String>,
) {
    let (LayerKind::MaxPool2d {
        padding, ceil_mode, ..
    }
    | LayerKind::AvgPool2d {
        padding, ceil_mode, ..
    }) = kind
    else {
        return;
    };
    let doc = if *padding == Padding::Same {
        SAME_HINT
    } else {
        ""
    };
    let op = if matches!(kind, LayerKind::MaxPool2d { .. }) {
        "MaxPool"
    } else {
        "AveragePool"
    };
    let mut attrs = window_attrs(info, *ceil_mode && *padding != Padding::Same);
    if matches!(
        kind,
        LayerKind::AvgPool2d {
            include_padding: true,
            ..
        }
    ) {
        attrs.push(int("count_include_pad", 1));
    }
    let out = nodes.name.to_string();
    nodes.push(op, inputs, out, attrs, doc);
}

/// A volume times its channel gate. Mul broadcasts from the last axis: a
/// gate vector [N, C] is unsqueezed to [N, C, 1, 1] first.
fn channel_scale_nodes(nodes: &mut LayerNodes, info: &infer::NodeInfo, inputs: Vec<String>) {
    let (Some(x), Some(gate)) = (inputs.first().cloned(), inputs.get(1).cloned()) else {
        return;
    };
    let gate = match info.input_shapes.get(1).copied().flatten() {
        Some(Shape::Vector(_)) => {
            let axes = nodes.constant("axes", |n| int64_tensor(n, &[2], &[2, 3]));
            let unsqueezed = format!("{}.gate", nodes.name);
            nodes.push(
                "Unsqueeze",
                vec![gate, axes],
                unsqueezed.clone(),
                vec![],
                "",
            );
            unsqueezed
        }
        _ => gate,
    };
    nodes.layer("Mul", vec![x, gate], vec![]);
}

/// The graph's outputs with their shapes (moved out of `value_info`).
fn declare_outputs(g: &mut GraphProto, graph: &Graph, analysis: &infer::Analysis) {
    for id in graph.outputs() {
        if let Some(shape) = analysis.node(id).and_then(|i| i.output_shape) {
            let name = graph.name_of(id).to_string();
            g.value_info.retain(|v| v.name != name);
            g.output.push(value_info(&name, nchw(shape)));
        }
    }
}

/// `g` as an opset-[`EXPORT_OPSET`] model produced by Netloom.
fn model_proto(g: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: EXPORT_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "netloom".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(g),
        ..Default::default()
    }
}

/// Framework (ONNX/PyTorch) dims of a parameter from its Netloom shape.
fn framework_dims(kind: &LayerKind, key: &str, netloom: &[usize]) -> Vec<usize> {
    match (kind, key) {
        (LayerKind::Conv2d { .. }, "weight") => {
            vec![netloom[3], netloom[2], netloom[0], netloom[1]]
        }
        (LayerKind::Dense { .. }, "weight") => vec![netloom[1], netloom[0]],
        _ => netloom.to_vec(),
    }
}

/// `[N, C, H, W]` or `[N, n]`, batch symbolic.
fn nchw(shape: Shape) -> Vec<Option<i64>> {
    match shape {
        Shape::Volume { h, w, c } => vec![None, Some(c as i64), Some(h as i64), Some(w as i64)],
        Shape::Vector(n) => vec![None, Some(n as i64)],
    }
}

fn value_info(name: &str, dims: impl IntoIterator<Item = Option<i64>>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => DimValue::DimValue(v),
                                None => DimValue::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT64,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}
