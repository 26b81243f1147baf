//! Preparing a design for a dataset before it is compiled: fitting the
//! output layer to the classes, freezing layers, reading the input size.

use crate::graph::{Graph, GraphError, LayerKind, NodeId};
use crate::infer::{Shape, analyze};
use thiserror::Error;

/// Why a design cannot be prepared for a dataset.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PrepareError {
    #[error("the design needs exactly one output layer, it has {0}")]
    OutputCount(usize),
    #[error("the output `{node}` is a {shape} volume, not a vector of {classes} class scores")]
    OutputVolume {
        node: String,
        shape: String,
        classes: usize,
    },
    #[error("the design has errors; fix them before training: {0}")]
    DesignErrors(String),
    #[error("the design has a dangling output")]
    DanglingOutput,
    #[error("`{0}` has no input")]
    NoInput(String),
    #[error(
        "the design outputs {outputs} values but the dataset has {classes} classes, and it does not end in a Dense layer whose units could be changed (`{node}` is {kind}); end the design in Dense({classes}) + Softmax"
    )]
    NoDenseHead {
        outputs: usize,
        classes: usize,
        node: String,
        kind: String,
    },
    #[error("--freeze: no layer named {} in `{design}`", quoted(.names))]
    UnknownFreeze { names: Vec<String>, design: String },
    #[error("no layer named `{name}` in `{design}`")]
    NoSuchLayer { name: String, design: String },
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("the design needs exactly one Input layer, it has {0}")]
    InputCount(usize),
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes the design's output fit `classes`: when the output size differs
/// and the design ends in a Dense layer (possibly followed by Softmax,
/// Sigmoid or Dropout), that Dense layer's units are changed. Returns a
/// sentence saying what changed, or why the design cannot fit.
pub fn fit_output(graph: &mut Graph, classes: usize) -> Result<Option<String>, PrepareError> {
    let analysis = analyze(graph);
    let outputs = graph.outputs();
    let [output] = outputs[..] else {
        return Err(PrepareError::OutputCount(outputs.len()));
    };
    let out_size = match analysis.node(output).and_then(|n| n.output_shape) {
        Some(Shape::Vector(n)) => n as usize,
        Some(s @ Shape::Volume { .. }) => {
            return Err(PrepareError::OutputVolume {
                node: graph.name_of(output).to_string(),
                shape: s.to_string(),
                classes,
            });
        }
        None => {
            return Err(PrepareError::DesignErrors(analysis.error_summary(graph, 3)));
        }
    };
    let out_kind = graph.node(output).map(|n| n.kind.clone());
    if out_size == classes
        || (out_size == 1 && classes == 2 && out_kind == Some(LayerKind::Sigmoid))
    {
        return Ok(None);
    }
    // Walk back over shape-preserving layers to the last Dense.
    let mut id: NodeId = output;
    loop {
        let Some(node) = graph.node(id) else {
            return Err(PrepareError::DanglingOutput);
        };
        match node.kind {
            LayerKind::Dense { units, .. } => {
                let name = node.name.clone();
                if let Some(n) = graph.node_mut(id) {
                    n.kind = match n.kind {
                        LayerKind::Dense { bias, .. } => LayerKind::Dense {
                            units: classes as u32,
                            bias,
                        },
                        ref k => k.clone(),
                    };
                }
                return Ok(Some(format!(
                    "the design's final Dense `{name}` had {units} units; changed to {classes} to match the dataset's {classes} classes"
                )));
            }
            LayerKind::Softmax
            | LayerKind::Sigmoid
            | LayerKind::Dropout { .. }
            | LayerKind::Relu
            | LayerKind::LeakyRelu { .. }
            | LayerKind::Tanh => match graph.inputs_of(id).first().copied().flatten() {
                Some(prev) => id = prev,
                None => return Err(PrepareError::NoInput(node.name.clone())),
            },
            ref other => {
                return Err(PrepareError::NoDenseHead {
                    outputs: out_size,
                    classes,
                    node: node.name.clone(),
                    kind: other.display_name().to_string(),
                });
            }
        }
    }
}

/// Marks the named layers frozen; unknown names are an error that lists them.
pub fn apply_freeze(graph: &mut Graph, names: &[String]) -> Result<(), PrepareError> {
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| graph.find(n).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(PrepareError::UnknownFreeze {
            names: unknown,
            design: graph.name.clone(),
        });
    }
    for name in names {
        if let Some(node) = graph.find(name).and_then(|id| graph.node_mut(id)) {
            node.frozen = true;
        }
    }
    Ok(())
}

/// Every layer up to and including `last`, in topological order (for
/// "freeze everything through `gap`").
pub fn layers_through(graph: &Graph, last: &str) -> Result<Vec<String>, PrepareError> {
    let order = graph.topological_order()?;
    let pos = order
        .iter()
        .position(|&id| graph.name_of(id) == last)
        .ok_or_else(|| PrepareError::NoSuchLayer {
            name: last.to_string(),
            design: graph.name.clone(),
        })?;
    Ok(order[..=pos]
        .iter()
        .map(|&id| graph.name_of(id).to_string())
        .collect())
}

/// The design's input `(h, w, c)`.
pub fn input_hwc(graph: &Graph) -> Result<(usize, usize, usize), PrepareError> {
    let inputs = graph.input_nodes();
    match inputs
        .first()
        .and_then(|&id| graph.node(id))
        .map(|n| &n.kind)
    {
        Some(&LayerKind::Input {
            height,
            width,
            channels,
        }) if inputs.len() == 1 => Ok((height as usize, width as usize, channels as usize)),
        _ => Err(PrepareError::InputCount(inputs.len())),
    }
}
