//! Designs and weights leaving and entering Netloom: ONNX import/export and
//! PyTorch code export.
//!
//! Weights cross this boundary as [`Tensors`]: `{layer}.weight`,
//! `{layer}.bias`, `{layer}.gamma`, `{layer}.beta`, `{layer}.running_mean`,
//! `{layer}.running_var`, always in **Netloom layouts** (conv `HWIO`
//! `[kh][kw][cin/groups][cout]`, dense `[in][out]`, vectors after a Flatten
//! in H·W·C order). [`to_framework`] and [`from_framework`] convert to and
//! from the layouts ONNX and PyTorch use (conv `OIHW`, dense `[out][in]`,
//! flattened vectors in C·H·W order).
//!
//! Flatten order: Netloom flattens an H×W×C volume in HWC order, ONNX and
//! PyTorch in CHW order. Exports keep the plain `Flatten` and **permute the
//! weights** that index the flattened vector (the next Dense's input rows,
//! and BatchNorm vectors in between), so logits match without a Transpose.

pub mod onnx;
pub mod proto;
pub mod pytorch;
pub mod pytorch_project;

use crate::graph::{Graph, LayerKind, NodeId, parameter_free_activation};
use crate::infer::{Analysis, ParamLayout, Shape, param_tensors};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use thiserror::Error;

/// Named f32 tensors: `name → (shape, values in row-major order)`.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Why an import or export failed.
#[derive(Debug, Error)]
pub enum InteropError {
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a readable ONNX model: {message}", path.display())]
    Decode { path: PathBuf, message: String },
    #[error("invalid ONNX model: {0}")]
    InvalidModel(String),
    #[error("the design cannot be exported: {0}")]
    Design(String),
    #[error("weights do not fit the design: {0}")]
    Weights(String),
}

/// Which parameter tensors a layer has, in Netloom key order, with their
/// Netloom shapes, given the layer's input shape: [`param_tensors`] by key.
pub(crate) fn param_shapes(
    kind: &LayerKind,
    input: Option<Shape>,
) -> Vec<(&'static str, Vec<usize>)> {
    param_tensors(kind, input)
        .into_iter()
        .map(|t| (t.role.suffix(), t.dims()))
        .collect()
}

/// For every node whose output is a flat vector, where each Netloom element
/// sits in the framework's (C·H·W-flattened) vector: `perm[netloom] = framework`.
/// `None` means the orders agree.
/// Flatten layers named in `hwc_flattens` already flatten in H·W·C order on
/// the framework side (a Transpose to NHWC preceded them in the source model).
/// A flattened vector longer than `largest` (the largest tensor to convert)
/// gets no order: no tensor could use it, and it is never allocated.
pub(crate) fn vector_orders(
    graph: &Graph,
    analysis: &Analysis,
    hwc_flattens: &HashSet<String>,
    largest: usize,
) -> Result<Vec<Option<Vec<usize>>>, InteropError> {
    let mut orders: Vec<Option<Vec<usize>>> = vec![None; graph.id_capacity()];
    for &id in &analysis.order {
        let Some(node) = graph.node(id) else { continue };
        let inputs: Vec<NodeId> = graph.inputs_of(id).into_iter().flatten().collect();
        let in_shape = analysis
            .node(id)
            .and_then(|i| i.input_shapes.first().copied().flatten());
        let first = inputs.first().and_then(|f| orders[f.index()].clone());
        let order = match &node.kind {
            LayerKind::Flatten if hwc_flattens.contains(&node.name) => None,
            LayerKind::Flatten => match in_shape {
                Some(s @ Shape::Volume { h, w, c })
                    if h * w > 1 && c > 1 && s.elements() <= largest as u64 =>
                {
                    let (h, w, c) = (h as usize, w as usize, c as usize);
                    let mut perm = vec![0; h * w * c];
                    for i in 0..h {
                        for j in 0..w {
                            for k in 0..c {
                                perm[(i * w + j) * c + k] = (k * h + i) * w + j;
                            }
                        }
                    }
                    Some(perm)
                }
                Some(Shape::Vector(_)) => first,
                _ => None,
            },
            parameter_free_activation!()
            | LayerKind::LeakyRelu { .. }
            | LayerKind::Softmax
            | LayerKind::Dropout { .. }
            | LayerKind::BatchNorm { .. } => first,
            LayerKind::Add => {
                let all: Vec<&Option<Vec<usize>>> =
                    inputs.iter().map(|f| &orders[f.index()]).collect();
                if all.iter().any(|o| *o != all[0]) {
                    return Err(InteropError::Design(format!(
                        "`{}` adds flattened vectors whose element orders differ (a Flatten of a volume on one side only); \
                         add a Dense layer on each side first",
                        node.name
                    )));
                }
                first
            }
            LayerKind::Concat => {
                let any = inputs.iter().any(|f| orders[f.index()].is_some());
                let vector = matches!(
                    analysis.node(id).and_then(|i| i.output_shape),
                    Some(Shape::Vector(_))
                );
                if any && vector {
                    let mut perm = Vec::new();
                    for f in &inputs {
                        let offset = perm.len();
                        let n = analysis
                            .node(*f)
                            .and_then(|i| i.output_shape)
                            .map_or(0, |s| s.elements() as usize);
                        match &orders[f.index()] {
                            Some(p) => perm.extend(p.iter().map(|v| v + offset)),
                            None => perm.extend(offset..offset + n),
                        }
                    }
                    Some(perm)
                } else {
                    None
                }
            }
            _ => None,
        };
        orders[id.index()] = order;
    }
    Ok(orders)
}

/// Which direction a layout conversion goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToFramework,
    FromFramework,
}

/// Netloom layouts → ONNX/PyTorch layouts (same keys): conv `HWIO → OIHW`,
/// dense `[in][out] → [out][in]` with flattened inputs reordered HWC → CHW,
/// BatchNorm vectors reordered likewise. Tensors of unknown layers or keys
/// pass through unchanged; a tensor whose size does not fit its layer is an error.
pub fn to_framework(
    graph: &Graph,
    analysis: &Analysis,
    tensors: &Tensors,
) -> Result<Tensors, InteropError> {
    let (out, mut misfits) = convert(
        graph,
        analysis,
        tensors,
        Direction::ToFramework,
        &HashSet::new(),
    )?;
    match misfits.pop() {
        Some(e) => Err(InteropError::Weights(e)),
        None => Ok(out),
    }
}

/// The inverse of [`to_framework`]: ONNX/PyTorch layouts → Netloom layouts.
/// Tensors that do not fit their layer are left out and described in the
/// returned messages.
pub fn from_framework(
    graph: &Graph,
    analysis: &Analysis,
    tensors: &Tensors,
) -> Result<(Tensors, Vec<String>), InteropError> {
    from_framework_with(graph, analysis, tensors, &HashSet::new())
}

/// [`from_framework`], with some Flatten layers known to flatten in H·W·C order.
pub(crate) fn from_framework_with(
    graph: &Graph,
    analysis: &Analysis,
    tensors: &Tensors,
    hwc_flattens: &HashSet<String>,
) -> Result<(Tensors, Vec<String>), InteropError> {
    convert(
        graph,
        analysis,
        tensors,
        Direction::FromFramework,
        hwc_flattens,
    )
}

fn convert(
    graph: &Graph,
    analysis: &Analysis,
    tensors: &Tensors,
    dir: Direction,
    hwc_flattens: &HashSet<String>,
) -> Result<(Tensors, Vec<String>), InteropError> {
    let largest = tensors.values().map(|(_, v)| v.len()).max().unwrap_or(0);
    let orders = vector_orders(graph, analysis, hwc_flattens, largest)?;
    let mut out = tensors.clone();
    let mut misfits = Vec::new();
    for (id, node) in graph.nodes() {
        let Some(info) = analysis.node(id) else {
            continue;
        };
        let input = info.input_shapes.first().copied().flatten();
        let in_order = graph
            .inputs_of(id)
            .first()
            .copied()
            .flatten()
            .and_then(|f| orders[f.index()].as_ref());
        for spec in param_tensors(&node.kind, input) {
            let shape = spec.dims();
            let name = format!("{}.{}", node.name, spec.role.suffix());
            let Some((dims, values)) = tensors.get(&name) else {
                continue;
            };
            let expected: usize = shape.iter().product();
            // Netloom layouts going out must match exactly: a transposed or
            // permuted tensor of the right size would export scrambled.
            let wrong_dims = dir == Direction::ToFramework && *dims != shape;
            if wrong_dims
                || values.len() != expected
                || dims.iter().product::<usize>() != values.len()
            {
                misfits.push(format!(
                    "`{name}` has shape {dims:?} ({} values) but `{}` needs {expected} values (Netloom shape {shape:?})",
                    values.len(),
                    node.name
                ));
                out.remove(&name);
                continue;
            }
            let converted = match spec.layout {
                ParamLayout::ConvHwio => {
                    let [kh, kw, ci, co] = [shape[0], shape[1], shape[2], shape[3]];
                    let mut v = vec![0.0; expected];
                    for a in 0..kh {
                        for b in 0..kw {
                            for i in 0..ci {
                                for o in 0..co {
                                    let hwio = ((a * kw + b) * ci + i) * co + o;
                                    let oihw = ((o * ci + i) * kh + a) * kw + b;
                                    match dir {
                                        Direction::ToFramework => v[oihw] = values[hwio],
                                        Direction::FromFramework => v[hwio] = values[oihw],
                                    }
                                }
                            }
                        }
                    }
                    let dims = match dir {
                        Direction::ToFramework => vec![co, ci, kh, kw],
                        Direction::FromFramework => shape.clone(),
                    };
                    (dims, v)
                }
                ParamLayout::DenseInOut => {
                    let [n, u] = [shape[0], shape[1]];
                    let mut v = vec![0.0; expected];
                    for r in 0..n {
                        let fr = in_order.map_or(r, |p| p[r]);
                        for o in 0..u {
                            match dir {
                                Direction::ToFramework => v[o * n + fr] = values[r * u + o],
                                Direction::FromFramework => v[r * u + o] = values[o * n + fr],
                            }
                        }
                    }
                    let dims = match dir {
                        Direction::ToFramework => vec![u, n],
                        Direction::FromFramework => shape.clone(),
                    };
                    (dims, v)
                }
                ParamLayout::PerInput => {
                    let mut v = values.clone();
                    if let Some(p) = in_order {
                        for (r, &fr) in p.iter().enumerate() {
                            match dir {
                                Direction::ToFramework => v[fr] = values[r],
                                Direction::FromFramework => v[r] = values[fr],
                            }
                        }
                    }
                    (shape.clone(), v)
                }
                ParamLayout::PerOutput => (shape.clone(), values.clone()),
            };
            out.insert(name, converted);
        }
    }
    Ok((out, misfits))
}

/// One line listing a design's shape errors, for messages.
pub(crate) fn design_errors(graph: &Graph, analysis: &Analysis) -> Option<String> {
    if let Some(e) = &analysis.design_error {
        return Some(e.clone());
    }
    let errors: Vec<String> = analysis
        .errors()
        .into_iter()
        .map(|(id, e)| format!("`{}`: {}", graph.name_of(id), e.message))
        .collect();
    if errors.is_empty() {
        if analysis.is_valid() {
            None
        } else {
            Some("some layers have no shape".into())
        }
    } else {
        Some(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::file;
    use crate::infer::analyze;

    #[test]
    fn a_flatten_order_is_built_only_when_a_tensor_could_use_it() {
        // Found by the onnx_import fuzz target: a huge Flatten allocated its
        // permutation (8 bytes per value) though no weight could need it.
        let g = file::from_json(
            r#"{"format":"netloom-design","version":1,"nodes":[
            {"name":"in","kind":"input","height":100,"width":100,"channels":3},
            {"name":"flat","kind":"flatten"},
            {"name":"fc","kind":"dense","units":2}],
            "edges":[{"from":"in","to":"flat"},{"from":"flat","to":"fc"}]}"#,
        )
        .unwrap();
        let a = analyze(&g);
        let flat = g.find("flat").unwrap().index();
        let none = vector_orders(&g, &a, &HashSet::new(), 10).unwrap();
        assert!(none[flat].is_none());
        let some = vector_orders(&g, &a, &HashSet::new(), 60_000).unwrap();
        assert_eq!(some[flat].as_ref().map(Vec::len), Some(30_000));
    }
}
