//! Shapes and cost of a design, recomputed on every edit.
//!
//! [`analyze`] walks the graph once in topological order. A node whose own
//! inputs are wrong gets a [`ShapeError`]; nodes downstream of it are simply
//! *blocked* (no shape, no error of their own), so the one error shows where
//! it belongs and every other node still infers.

pub mod cost;
pub mod params;
pub mod shape;

pub use cost::{Conventions, LayerCost, OpCount, ParamStyle, compact, thousands};
pub use params::{ParamLayout, ParamRole, ParamSpec, param_tensors};
pub use shape::{Axis, FixIt, Shape, ShapeError};

use crate::graph::{Graph, NodeId};
use serde::Serialize;

/// What inference knows about one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// One entry per input, in input order; `None` when unconnected or blocked.
    pub input_shapes: Vec<Option<Shape>>,
    pub output_shape: Option<Shape>,
    /// This node's own error (not errors upstream of it).
    pub error: Option<ShapeError>,
    /// Resolved window geometry (padding, output size) of conv and pool layers.
    pub window: Option<[Axis; 2]>,
    pub cost: LayerCost,
    pub frozen: bool,
}

impl NodeInfo {
    /// No shape, yet no error of its own: an input upstream is wrong.
    pub fn is_blocked(&self) -> bool {
        self.output_shape.is_none() && self.error.is_none()
    }

    pub fn params(&self, conventions: &Conventions) -> (u64, u64) {
        self.cost.params(conventions.params, self.frozen)
    }
}

/// Totals of a design under one set of conventions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub total_params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    pub macs: u64,
    /// Bytes of all layer outputs for one sample (f32).
    pub activation_bytes: u64,
}

/// Shapes, errors and costs of every node of a graph.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// Indexed by [`NodeId::index`]; `None` for removed ids.
    pub nodes: Vec<Option<NodeInfo>>,
    /// Topological order (empty when the graph has a cycle).
    pub order: Vec<NodeId>,
    /// A design-wide problem, such as a cycle.
    pub design_error: Option<String>,
}

impl Analysis {
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id.index()).and_then(|n| n.as_ref())
    }

    /// Totals under `conventions`, saturating at `u64::MAX` (which
    /// [`analyze`] reports as a design error, so a valid design never does).
    pub fn totals(&self, conventions: &Conventions) -> Totals {
        let mut t = Totals::default();
        for info in self.nodes.iter().flatten() {
            let (tr, non) = info.params(conventions);
            t.trainable_params = t.trainable_params.saturating_add(tr);
            t.non_trainable_params = t.non_trainable_params.saturating_add(non);
            t.macs = t.macs.saturating_add(info.cost.macs);
            t.activation_bytes = t.activation_bytes.saturating_add(
                info.output_shape
                    .map_or(0, |s| s.elements().saturating_mul(4)),
            );
        }
        t.total_params = t.trainable_params.saturating_add(t.non_trainable_params);
        t
    }

    /// Totals under the widest conventions (FLOPs, Keras params), or `None`
    /// when any of them overflows `u64`.
    fn checked_totals(&self) -> Option<()> {
        let (mut params, mut flops, mut bytes) = (0u64, 0u64, 0u64);
        for info in self.nodes.iter().flatten() {
            params = params
                .checked_add(info.cost.weights)?
                .checked_add(info.cost.running_stats)?;
            flops = flops.checked_add(info.cost.macs.checked_mul(2)?)?;
            bytes = bytes.checked_add(
                info.output_shape
                    .map_or(Some(0), |s| s.checked_elements()?.checked_mul(4))?,
            )?;
        }
        Some(())
    }

    /// Nodes with their own errors, in topological order.
    pub fn errors(&self) -> Vec<(NodeId, &ShapeError)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.as_ref()
                    .and_then(|n| n.error.as_ref())
                    .map(|e| (NodeId(i as u32), e))
            })
            .collect()
    }

    /// The design's errors in one line, each naming its layer
    /// (`` `conv1`: kernel height 9 is larger than … ``), at most `limit` of them.
    pub fn error_summary(&self, graph: &Graph, limit: usize) -> String {
        let mut parts: Vec<String> = self.design_error.iter().cloned().collect();
        let errors = self.errors();
        parts.extend(
            errors
                .iter()
                .take(limit)
                .map(|(id, e)| format!("`{}`: {}", graph.name_of(*id), e.message)),
        );
        if errors.len() > limit {
            parts.push(format!("and {} more", errors.len() - limit));
        }
        if parts.is_empty() {
            parts.push("a layer has no output shape".into());
        }
        parts.join("; ")
    }

    /// Whether the design can be compiled and trained as it is.
    pub fn is_valid(&self) -> bool {
        self.design_error.is_none()
            && self
                .nodes
                .iter()
                .flatten()
                .all(|n| n.output_shape.is_some())
    }
}

/// Infers every node's shape and cost.
pub fn analyze(graph: &Graph) -> Analysis {
    let mut analysis = Analysis {
        nodes: vec![None; graph.id_capacity()],
        ..Default::default()
    };
    let order = match graph.topological_order() {
        Ok(order) => order,
        Err(e) => {
            analysis.design_error = Some(e.to_string());
            for (id, node) in graph.nodes() {
                analysis.nodes[id.index()] = Some(NodeInfo {
                    frozen: node.frozen,
                    ..Default::default()
                });
            }
            return analysis;
        }
    };
    let all_inputs = graph.all_inputs();
    for &id in &order {
        let Some(node) = graph.node(id) else { continue };
        let inputs = &all_inputs[id.index()];
        let input_shapes: Vec<Option<Shape>> = inputs
            .iter()
            .map(|from| {
                from.and_then(|f| analysis.node(f))
                    .and_then(|info| info.output_shape)
            })
            .collect();
        let mut info = NodeInfo {
            input_shapes: input_shapes.clone(),
            frozen: node.frozen,
            ..Default::default()
        };
        if let Some(missing) = inputs.iter().position(Option::is_none) {
            info.error = Some(ShapeError {
                message: if inputs.len() == 1 {
                    "input not connected".into()
                } else {
                    format!("input {missing} not connected")
                },
                fix: None,
            });
        } else if input_shapes.iter().all(Option::is_some) {
            let known: Vec<(NodeId, Shape)> = inputs
                .iter()
                .zip(&input_shapes)
                .filter_map(|(f, s)| Some(((*f)?, (*s)?)))
                .collect();
            let inferred = shape::output_shape(&node.kind, &known).and_then(|(out, window)| {
                out.check_size()?;
                let cost = cost::layer_cost(
                    &node.kind,
                    known.first().map(|(_, s)| *s),
                    out,
                    window.as_ref(),
                )
                .map_err(ShapeError::new)?;
                Ok((out, window, cost))
            });
            match inferred {
                Ok((out, window, cost)) => {
                    info.cost = cost;
                    info.output_shape = Some(out);
                    info.window = window;
                }
                Err(e) => info.error = Some(e),
            }
        }
        analysis.nodes[id.index()] = Some(info);
    }
    analysis.order = order;
    if analysis.checked_totals().is_none() {
        analysis.design_error =
            Some("the design's total parameter, multiply or activation count overflows 64-bit arithmetic".into());
    }
    analysis
}

/// The scriptable summary of a design (`summary --json`): the keys scripts rely on.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub total_params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    pub total_macs: u64,
    pub total_flops: u64,
    pub activation_bytes_per_sample: u64,
    pub conventions: Conventions,
    pub layers: Vec<LayerReport>,
    pub errors: Vec<ErrorReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub kind: String,
    pub output_shape: Vec<u64>,
    pub params: u64,
    pub trainable_params: u64,
    pub macs: u64,
    pub macs_arithmetic: String,
    pub connected_to: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    pub node: String,
    pub message: String,
}

impl Report {
    pub fn new(graph: &Graph, analysis: &Analysis, conventions: &Conventions) -> Report {
        let totals = analysis.totals(conventions);
        let order: Vec<NodeId> = if analysis.order.is_empty() {
            graph.node_ids().collect()
        } else {
            analysis.order.clone()
        };
        let all_inputs = graph.all_inputs();
        let layers = order
            .iter()
            .filter_map(|&id| {
                let node = graph.node(id)?;
                let info = analysis.node(id)?;
                let (tr, non) = info.params(conventions);
                Some(LayerReport {
                    name: node.name.clone(),
                    kind: node.kind.tag().to_string(),
                    output_shape: info.output_shape.map(|s| s.dims()).unwrap_or_default(),
                    params: tr + non,
                    trainable_params: tr,
                    macs: info.cost.macs,
                    macs_arithmetic: info.cost.macs_arithmetic.clone(),
                    connected_to: all_inputs[id.index()]
                        .iter()
                        .map(|f| f.map_or("-".to_string(), |f| graph.name_of(f).to_string()))
                        .collect(),
                })
            })
            .collect();
        let mut errors: Vec<ErrorReport> = analysis
            .errors()
            .into_iter()
            .map(|(id, e)| ErrorReport {
                node: graph.name_of(id).to_string(),
                message: e.message.clone(),
            })
            .collect();
        if let Some(e) = &analysis.design_error {
            errors.insert(
                0,
                ErrorReport {
                    node: String::new(),
                    message: e.clone(),
                },
            );
        }
        Report {
            name: graph.name.clone(),
            total_params: totals.total_params,
            trainable_params: totals.trainable_params,
            non_trainable_params: totals.non_trainable_params,
            total_macs: totals.macs,
            total_flops: totals.macs.saturating_mul(2),
            activation_bytes_per_sample: totals.activation_bytes,
            conventions: *conventions,
            layers,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{LayerKind, Padding, blocks};

    #[test]
    fn a_bad_node_does_not_stop_the_others() {
        let mut g = Graph::new("t");
        let input = g
            .add_node(
                "in",
                LayerKind::Input {
                    height: 8,
                    width: 8,
                    channels: 3,
                },
                [0.0, 0.0],
            )
            .unwrap();
        let conv = g
            .add_node(
                "conv",
                LayerKind::Conv2d {
                    filters: 4,
                    kernel: [9, 9],
                    stride: [1, 1],
                    padding: Padding::Valid,
                    groups: 1,
                    bias: true,
                    dilation: [1, 1],
                },
                [0.0, 0.0],
            )
            .unwrap();
        let after = g.add_node("after", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let side = g.add_node("side", LayerKind::Relu, [0.0, 0.0]).unwrap();
        g.connect(input, conv, 0).unwrap();
        g.connect(conv, after, 0).unwrap();
        g.connect(input, side, 0).unwrap();
        let a = analyze(&g);
        assert!(a.node(conv).unwrap().error.is_some());
        assert!(a.node(after).unwrap().is_blocked());
        assert_eq!(
            a.node(side).unwrap().output_shape,
            Some(Shape::Volume { h: 8, w: 8, c: 3 })
        );
        assert_eq!(a.errors().len(), 1);
        assert!(!a.is_valid());
    }

    #[test]
    fn unconnected_input_is_reported_on_the_node() {
        let mut g = Graph::new("t");
        let r = g.add_node("r", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let a = analyze(&g);
        assert_eq!(
            a.node(r).unwrap().error.as_ref().unwrap().message,
            "input not connected"
        );
    }

    #[test]
    fn inception_5x5_arithmetic_is_shown() {
        let g = blocks::inception_5x5_naive();
        let a = analyze(&g);
        let conv = g.find("conv5x5").unwrap();
        assert_eq!(
            a.node(conv).unwrap().cost.macs_arithmetic,
            "28·28·32 · 5·5·192 = 120,422,400"
        );
    }
}
