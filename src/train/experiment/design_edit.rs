//! Edits an experiment makes to its copy of a design: one parameter set to a
//! value, or a module made trainable with a stem and a classifier head.

use crate::graph::{Graph, GraphError, LayerKind, Padding};

#[derive(Debug, thiserror::Error)]
pub enum DesignEditError {
    #[error("the design has no layer `{0}`")]
    NoSuchLayer(String),
    #[error("`{node}` ({kind}) has no numeric parameter `{param}`; it has: {available}")]
    NoSuchParam {
        node: String,
        kind: String,
        param: String,
        available: String,
    },
    #[error("`{node}.{param}` = {value}: {why}")]
    BadValue {
        node: String,
        param: String,
        value: f64,
        why: String,
    },
    #[error(
        "a classifier head needs a design with one input and one output ({inputs} inputs, {outputs} outputs)"
    )]
    NotOneInOneOut { inputs: usize, outputs: usize },
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A copy of `graph` with `node`'s parameter `param` (its name in the design
/// file: `filters`, `units`, `kernel`, `rate`, …) set to `value`. A pair such
/// as `kernel` or `stride` gets the value in both places. The layer's own
/// checks apply, so an impossible value is refused with the reason.
pub fn design_with(
    graph: &Graph,
    node: &str,
    param: &str,
    value: f64,
) -> Result<Graph, DesignEditError> {
    let id = graph
        .find(node)
        .ok_or_else(|| DesignEditError::NoSuchLayer(node.to_string()))?;
    let kind = &graph
        .node(id)
        .ok_or_else(|| DesignEditError::NoSuchLayer(node.to_string()))?
        .kind;
    let bad = |why: String| DesignEditError::BadValue {
        node: node.to_string(),
        param: param.to_string(),
        value,
        why,
    };
    let mut fields = match serde_json::to_value(kind) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => return Err(bad("the layer has no parameters".into())),
    };
    let number = if value.fract() == 0.0 && value >= 0.0 {
        serde_json::Value::from(value as u64)
    } else {
        serde_json::Value::from(value)
    };
    match fields.get_mut(param) {
        Some(v @ serde_json::Value::Number(_)) => *v = number,
        Some(serde_json::Value::Array(pair)) if pair.iter().all(|x| x.is_number()) => {
            pair.iter_mut().for_each(|x| *x = number.clone())
        }
        _ => {
            let available: Vec<String> = fields
                .iter()
                .filter(|(_, v)| v.is_number() || v.is_array())
                .map(|(k, _)| k.clone())
                .collect();
            return Err(DesignEditError::NoSuchParam {
                node: node.to_string(),
                kind: kind.display_name().to_string(),
                param: param.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        }
    }
    let new_kind: LayerKind = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| bad(e.to_string()))?;
    new_kind.validate().map_err(bad)?;
    let mut edited = graph.clone();
    if let Some(n) = edited.node_mut(id) {
        n.kind = new_kind;
    }
    Ok(edited)
}

/// Makes a module such as an Inception block trainable on RGB images: the
/// input becomes `H×W×3` followed by a 3×3 conv stem (with BatchNorm and
/// ReLU) back to the module's input channels, and the output gets a global
/// average pool and a Dense layer (resized to the dataset's classes by the
/// trainer). Designs that already take 3 channels keep their input.
pub fn add_classifier_head(graph: &Graph) -> Result<Graph, DesignEditError> {
    let mut g = graph.clone();
    let (inputs, outputs) = (g.input_nodes(), g.outputs());
    let ([input], [output]) = (inputs.as_slice(), outputs.as_slice()) else {
        return Err(DesignEditError::NotOneInOneOut {
            inputs: inputs.len(),
            outputs: outputs.len(),
        });
    };
    let (input, output) = (*input, *output);
    let position = |g: &Graph, id, dy: f32| {
        g.node(id)
            .map_or([0.0, 0.0], |n| [n.position[0], n.position[1] + dy])
    };
    if let Some(LayerKind::Input { channels, .. }) = g.node(input).map(|n| n.kind.clone())
        && channels != 3
    {
        stem_to(&mut g, input, channels, position(graph, input, 0.0))?;
    }
    let pool_name = g.unique_name("head_pool");
    let pool = g.add_node(
        pool_name,
        LayerKind::GlobalAvgPool,
        position(&g, output, 110.0),
    )?;
    g.connect(output, pool, 0)?;
    let fc_name = g.unique_name("head_fc");
    let fc = g.add_node(
        fc_name,
        LayerKind::Dense {
            units: 10,
            bias: true,
        },
        position(&g, output, 220.0),
    )?;
    g.connect(pool, fc, 0)?;
    Ok(g)
}

/// Turns `input` into an RGB input followed by a conv stem with `channels`
/// filters that feeds everything the input fed.
fn stem_to(
    g: &mut Graph,
    input: crate::graph::NodeId,
    channels: u32,
    at: [f32; 2],
) -> Result<(), DesignEditError> {
    let consumers: Vec<_> = g
        .edges()
        .iter()
        .filter(|e| e.from == input)
        .copied()
        .collect();
    if let Some(LayerKind::Input { channels: c, .. }) = g.node_mut(input).map(|n| &mut n.kind) {
        *c = 3;
    }
    let conv_name = g.unique_name("stem");
    let conv = g.add_node(
        conv_name,
        LayerKind::Conv2d {
            filters: channels,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding::Same,
            groups: 1,
            bias: false,
            dilation: [1, 1],
        },
        [at[0] - 240.0, at[1] + 40.0],
    )?;
    let bn_name = g.unique_name("stem_bn");
    let bn = g.add_node(
        bn_name,
        LayerKind::BatchNorm {
            epsilon: 1e-3,
            momentum: 0.9,
        },
        [at[0] - 240.0, at[1] + 80.0],
    )?;
    let relu_name = g.unique_name("stem_relu");
    let relu = g.add_node(relu_name, LayerKind::Relu, [at[0] - 240.0, at[1] + 120.0])?;
    for e in &consumers {
        g.disconnect(*e);
    }
    g.connect(input, conv, 0)?;
    g.connect(conv, bn, 0)?;
    g.connect(bn, relu, 0)?;
    for e in consumers {
        g.connect(relu, e.to, e.input)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;
    use crate::infer::{Conventions, analyze};

    #[test]
    fn setting_a_bottleneck_width_changes_the_layer_and_its_cost() {
        let g = blocks::inception_module_bottleneck();
        let wide = design_with(&g, "5x5_reduce", "filters", 64.0).unwrap();
        let id = wide.find("5x5_reduce").unwrap();
        assert!(matches!(
            wide.node(id).unwrap().kind,
            LayerKind::Conv2d { filters: 64, .. }
        ));
        let macs = |g: &Graph| analyze(g).totals(&Conventions::default()).macs;
        // 28·28·(64−16)·192 more in the reduce, 28·28·32·5·5·(64−16) more in the 5×5.
        let delta = 28 * 28 * 48 * 192 + 28 * 28 * 32 * 25 * 48;
        assert_eq!(macs(&wide) - macs(&g), delta);
        // Pairs take the value in both places.
        let k = design_with(&g, "5x5", "kernel", 3.0).unwrap();
        assert!(matches!(
            k.node(k.find("5x5").unwrap()).unwrap().kind,
            LayerKind::Conv2d { kernel: [3, 3], .. }
        ));
    }

    #[test]
    fn unknown_layers_params_and_impossible_values_are_refused_with_the_reason() {
        let g = blocks::inception_module_bottleneck();
        let e = design_with(&g, "nope", "filters", 8.0).unwrap_err();
        assert_eq!(e.to_string(), "the design has no layer `nope`");
        let e = design_with(&g, "5x5_reduce", "units", 8.0).unwrap_err();
        assert!(
            e.to_string().contains("has no numeric parameter `units`"),
            "{e}"
        );
        assert!(e.to_string().contains("filters"), "{e}");
        let e = design_with(&g, "5x5_reduce", "filters", 0.0).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn a_head_makes_an_inception_module_a_valid_rgb_classifier() {
        let g = add_classifier_head(&blocks::inception_module_bottleneck()).unwrap();
        let a = analyze(&g);
        assert!(a.is_valid(), "{:?}", a.design_error);
        let input = g.input_nodes()[0];
        assert!(matches!(
            g.node(input).unwrap().kind,
            LayerKind::Input { channels: 3, .. }
        ));
        let out = g.outputs()[0];
        assert!(matches!(g.node(out).unwrap().kind, LayerKind::Dense { .. }));
        // Every branch still reads the stem: four consumers of its ReLU.
        let relu = g.find("stem_relu").unwrap();
        assert_eq!(g.consumers_of(relu).count(), 4);
    }
}
