//! ONNX export: a design (and its weights) as an opset-13 `ModelProto`.

use super::attributes::{float, int, ints, string};
use super::{EXPORT_IR_VERSION, EXPORT_OPSET, SAME_HINT};
use crate::graph::{Graph, LayerKind, Padding};
use crate::infer::{self, Shape};
use crate::interop::proto::{
    AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, data_type,
};
use crate::interop::{InteropError, Tensors, design_errors, param_shapes, to_framework};
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

/// PyTorch's hard sigmoid `relu6(x + 3) / 6` as ONNX `HardSigmoid`
/// (`max(0, min(1, αx + β))`).
fn hard_sigmoid_attrs() -> Vec<AttributeProto> {
    vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)]
}

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
        let Some(node) = graph.node(id) else { continue };
        let Some(info) = analysis.node(id) else {
            continue;
        };
        let Some(out_shape) = info.output_shape else {
            continue;
        };
        let name = node.name.clone();
        let inputs: Vec<String> = graph
            .inputs_of(id)
            .into_iter()
            .flatten()
            .map(|f| graph.name_of(f).to_string())
            .collect();
        let in_shape = info.input_shapes.first().copied().flatten();
        // Parameters: initializers when weights are given, else typed graph inputs.
        let mut params: Vec<String> = Vec::new();
        for (key, netloom_shape) in param_shapes(&node.kind, in_shape) {
            let pname = format!("{name}.{key}");
            let dims = framework_dims(&node.kind, key, &netloom_shape);
            match &framework {
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
        let mut doc = String::new();
        let mut push =
            |op: &str, ins: Vec<String>, out: String, attrs: Vec<AttributeProto>, doc: &str| {
                // Node names must be unique: the Flatten after a GlobalAveragePool
                // (both from one GlobalAvgPool layer) gets a suffix, and so does
                // the gate node of a layer written as two (`HardSwish`, `SiLU`).
                let node_name =
                    if op == "Flatten" && ins.first().is_some_and(|i| i.ends_with(".pooled")) {
                        format!("{name}/flatten")
                    } else if out != name && op != "GlobalAveragePool" {
                        format!("{name}/{}", op.to_lowercase())
                    } else {
                        name.clone()
                    };
                g.node.push(NodeProto {
                    input: ins,
                    output: vec![out],
                    name: node_name,
                    op_type: op.into(),
                    attribute: attrs,
                    doc_string: doc.into(),
                    ..Default::default()
                });
            };
        let window_attrs = |ceil: bool| -> Vec<AttributeProto> {
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
        };
        match &node.kind {
            LayerKind::Input { .. } => {
                let dims = nchw(out_shape);
                g.input.push(value_info(&name, dims));
            }
            LayerKind::Conv2d {
                groups, padding, ..
            } => {
                if *padding == Padding::Same {
                    doc = SAME_HINT.into();
                }
                let mut attrs = window_attrs(false);
                attrs.push(int("group", *groups as i64));
                let [ah, aw] = info
                    .window
                    .map_or([1, 1], |[h, w]| [h.dilation, w.dilation]);
                attrs.push(ints("dilations", &[ah as i64, aw as i64]));
                push("Conv", [inputs, params].concat(), name.clone(), attrs, &doc);
            }
            LayerKind::ZeroPad2d {
                padding: [t, b, l, r],
            } => {
                let pads_name = format!("{name}.pads");
                let pads = [0, 0, *t as i64, *l as i64, 0, 0, *b as i64, *r as i64];
                g.initializer.push(int64_tensor(&pads_name, &[8], &pads));
                push(
                    "Pad",
                    vec![inputs[0].clone(), pads_name],
                    name.clone(),
                    vec![string("mode", "constant")],
                    "",
                );
            }
            LayerKind::MaxPool2d {
                padding, ceil_mode, ..
            }
            | LayerKind::AvgPool2d {
                padding, ceil_mode, ..
            } => {
                if *padding == Padding::Same {
                    doc = SAME_HINT.into();
                }
                let op = if matches!(node.kind, LayerKind::MaxPool2d { .. }) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                // An average pool divides by the in-bounds count (ONNX's default
                // count_include_pad = 0) unless it includes the padding.
                let mut attrs = window_attrs(*ceil_mode && *padding != Padding::Same);
                if matches!(
                    node.kind,
                    LayerKind::AvgPool2d {
                        include_padding: true,
                        ..
                    }
                ) {
                    attrs.push(int("count_include_pad", 1));
                }
                push(op, inputs, name.clone(), attrs, &doc);
            }
            LayerKind::GlobalAvgPool => {
                let pooled = format!("{name}.pooled");
                push("GlobalAveragePool", inputs, pooled.clone(), vec![], "");
                push(
                    "Flatten",
                    vec![pooled],
                    name.clone(),
                    vec![int("axis", 1)],
                    "",
                );
            }
            LayerKind::BatchNorm { epsilon, momentum } => push(
                "BatchNormalization",
                [inputs, params].concat(),
                name.clone(),
                vec![
                    float("epsilon", *epsilon as f32),
                    float("momentum", *momentum as f32),
                ],
                "",
            ),
            LayerKind::Relu => push("Relu", inputs, name.clone(), vec![], ""),
            LayerKind::LeakyRelu { alpha } => push(
                "LeakyRelu",
                inputs,
                name.clone(),
                vec![float("alpha", *alpha as f32)],
                "",
            ),
            LayerKind::Sigmoid => push("Sigmoid", inputs, name.clone(), vec![], ""),
            LayerKind::Tanh => push("Tanh", inputs, name.clone(), vec![], ""),
            LayerKind::Relu6 => {
                let (lo, hi) = (format!("{name}.min"), format!("{name}.max"));
                g.initializer.push(float_tensor(&lo, &[], &[0.0]));
                g.initializer.push(float_tensor(&hi, &[], &[6.0]));
                push(
                    "Clip",
                    vec![inputs[0].clone(), lo, hi],
                    name.clone(),
                    vec![],
                    "",
                );
            }
            LayerKind::HardSigmoid => push(
                "HardSigmoid",
                inputs,
                name.clone(),
                hard_sigmoid_attrs(),
                "",
            ),
            // Opset 13 has no HardSwish (it arrives in 14): x · HardSigmoid(x).
            LayerKind::HardSwish => {
                let gate = format!("{name}.gate");
                push(
                    "HardSigmoid",
                    inputs.clone(),
                    gate.clone(),
                    hard_sigmoid_attrs(),
                    "",
                );
                push(
                    "Mul",
                    vec![inputs[0].clone(), gate],
                    name.clone(),
                    vec![],
                    "",
                );
            }
            // x · Sigmoid(x), as PyTorch exports SiLU.
            LayerKind::Silu => {
                let gate = format!("{name}.sigmoid");
                push("Sigmoid", inputs.clone(), gate.clone(), vec![], "");
                push(
                    "Mul",
                    vec![inputs[0].clone(), gate],
                    name.clone(),
                    vec![],
                    "",
                );
            }
            LayerKind::Softmax => push("Softmax", inputs, name.clone(), vec![int("axis", 1)], ""),
            LayerKind::Dropout { rate } => {
                let ratio = format!("{name}.ratio");
                g.initializer
                    .push(float_tensor(&ratio, &[], &[*rate as f32]));
                push(
                    "Dropout",
                    vec![inputs[0].clone(), ratio],
                    name.clone(),
                    vec![],
                    "",
                );
            }
            LayerKind::Flatten => push("Flatten", inputs, name.clone(), vec![int("axis", 1)], ""),
            LayerKind::Dense { .. } => push(
                "Gemm",
                [inputs, params].concat(),
                name.clone(),
                vec![int("transB", 1)],
                "",
            ),
            LayerKind::Add => {
                let op = if inputs.len() == 2 { "Add" } else { "Sum" };
                push(op, inputs, name.clone(), vec![], "");
            }
            // Mul broadcasts from the last axis: a gate vector [N, C] is
            // unsqueezed to [N, C, 1, 1] first.
            LayerKind::ChannelScale => {
                let gate = match info.input_shapes.get(1).copied().flatten() {
                    Some(Shape::Vector(_)) => {
                        let (axes, gate) = (format!("{name}.axes"), format!("{name}.gate"));
                        g.initializer.push(int64_tensor(&axes, &[2], &[2, 3]));
                        push(
                            "Unsqueeze",
                            vec![inputs[1].clone(), axes],
                            gate.clone(),
                            vec![],
                            "",
                        );
                        gate
                    }
                    _ => inputs[1].clone(),
                };
                push(
                    "Mul",
                    vec![inputs[0].clone(), gate],
                    name.clone(),
                    vec![],
                    "",
                );
            }
            LayerKind::Concat => push("Concat", inputs, name.clone(), vec![int("axis", 1)], ""),
        }
        if !matches!(node.kind, LayerKind::Input { .. }) {
            g.value_info.push(value_info(&name, nchw(out_shape)));
        }
    }
    for id in graph.outputs() {
        if let Some(shape) = analysis.node(id).and_then(|i| i.output_shape) {
            let name = graph.name_of(id).to_string();
            g.value_info.retain(|v| v.name != name);
            g.output.push(value_info(&name, nchw(shape)));
        }
    }
    Ok(ModelProto {
        ir_version: EXPORT_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "netloom".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(g),
        ..Default::default()
    })
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
