//! Preparing a design for a dataset before it is compiled: fitting the
//! output layer to the classes, freezing layers, reading the input size.

use crate::graph::{Graph, LayerKind, NodeId};
use crate::infer::{Shape, analyze};

/// Makes the design's output fit `classes`: when the output size differs
/// and the design ends in a Dense layer (possibly followed by Softmax,
/// Sigmoid or Dropout), that Dense layer's units are changed. Returns a
/// sentence saying what changed, or why the design cannot fit.
pub fn fit_output(graph: &mut Graph, classes: usize) -> Result<Option<String>, String> {
    let analysis = analyze(graph);
    let outputs = graph.outputs();
    let [output] = outputs[..] else {
        return Err(format!(
            "the design needs exactly one output layer, it has {}",
            outputs.len()
        ));
    };
    let out_size = match analysis.node(output).and_then(|n| n.output_shape) {
        Some(Shape::Vector(n)) => n as usize,
        Some(s @ Shape::Volume { .. }) => {
            return Err(format!(
                "the output `{}` is a {s} volume, not a vector of {classes} class scores",
                graph.name_of(output)
            ));
        }
        None => {
            return Err(format!(
                "the design has errors; fix them before training: {}",
                analysis.error_summary(graph, 3)
            ));
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
            return Err("the design has a dangling output".into());
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
                None => return Err(format!("`{}` has no input", node.name)),
            },
            ref other => {
                return Err(format!(
                    "the design outputs {out_size} values but the dataset has {classes} classes, and it does not end in a Dense layer whose units could be changed (`{}` is {}); end the design in Dense({classes}) + Softmax",
                    node.name,
                    other.display_name()
                ));
            }
        }
    }
}

/// Marks the named layers frozen; unknown names are an error that lists them.
pub fn apply_freeze(graph: &mut Graph, names: &[String]) -> Result<(), String> {
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| graph.find(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "--freeze: no layer named {} in `{}`",
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            graph.name
        ));
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
pub fn layers_through(graph: &Graph, last: &str) -> Result<Vec<String>, String> {
    let order = graph.topological_order().map_err(|e| e.to_string())?;
    let pos = order
        .iter()
        .position(|&id| graph.name_of(id) == last)
        .ok_or_else(|| format!("no layer named `{last}` in `{}`", graph.name))?;
    Ok(order[..=pos]
        .iter()
        .map(|&id| graph.name_of(id).to_string())
        .collect())
}

/// The design's input `(h, w, c)`.
pub fn input_hwc(graph: &Graph) -> Result<(usize, usize, usize), String> {
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
        _ => Err(format!(
            "the design needs exactly one Input layer, it has {}",
            inputs.len()
        )),
    }
}
