//! ONNX import: an ONNX graph mapped onto Netloom layers.

mod channels;

use super::attributes::{attr, attr_f, attr_i, attr_ints, attr_s};
use super::external::{ExternalData, is_external};
use super::{Deviation, Imported, SAME_HINT};
use crate::graph::{Graph, LayerKind, NodeId, Padding, layout};
use crate::infer::{self, Shape, shape::resolve_axis};
use crate::interop::proto::{
    DimValue, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, data_type,
};
use crate::interop::{InteropError, Tensors, from_framework_with};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Reads an ONNX model into a design; tensors in external data files are
/// read from the model's folder (`external.rs`).
///
/// Mapped operators: Conv (group, pads, strides, auto_pad), MaxPool and
/// AveragePool (ceil_mode, pads, auto_pad), GlobalAveragePool and
/// ReduceMean over H,W (keepdims 0/1), BatchNormalization, Relu, LeakyRelu,
/// Sigmoid, Tanh, Softmax, Dropout, Identity (also of shared initializers),
/// Flatten / Reshape / Squeeze to a vector, Gemm (transB, alpha, beta) and
/// MatMul (+ a constant Add) as Dense, Add and Sum (chains of binary Adds
/// become one N-input Add; a constant Add after a bias-free Conv becomes its
/// bias), Mul / Add / Sub / Div by per-channel constants as a ChannelAffine
/// (successive ones folded into one), a volume rebuilt channel by channel
/// (`import/channels.rs`), Concat on the channel
/// axis, and constant-zero Pad as ZeroPad2d. Transposes as tf2onnx writes
/// them for Keras models are understood: an NHWC graph input followed by a
/// Transpose to NCHW becomes an H×W×C Input, and a Transpose to NHWC before
/// a Flatten/Reshape keeps the Dense rows in H·W·C order (otherwise Dense
/// rows after a Flatten are reordered from C·H·W to Netloom's H·W·C). Shape
/// arithmetic on constants (Shape, Gather, Unsqueeze, Concat of shapes, …)
/// is absorbed silently. Every other operator is listed in
/// [`Imported::unsupported`] and, with what it changes, in
/// [`Imported::deviations`]: element-wise ones are passed through (the
/// shape is kept), the others leave their consumers unconnected.
pub fn import(path: &Path) -> Result<Imported, InteropError> {
    import_with_options(path, &ImportOptions::default())
}

/// How [`import_with_options`] reads a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Convs into which the exporter folded an eval-mode BatchNorm (PyTorch's
    /// two exporters do at their defaults; the folded tensors are named
    /// `onnx::Conv_N` by the legacy one and `{conv}.weight_bias` by dynamo)
    /// become a bias-free conv followed by a BatchNorm with γ = 1, β = the
    /// folded bias, mean 0 and variance 1 − ε: the same function, the
    /// parameter count PyTorch reports, and a BatchNorm to fine-tune. On by
    /// default; off keeps the file's own layers (C conv biases where PyTorch
    /// has 2·C BatchNorm parameters).
    pub restore_batchnorm: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            restore_batchnorm: true,
        }
    }
}

/// [`import`] with [`ImportOptions`].
pub fn import_with_options(path: &Path, options: &ImportOptions) -> Result<Imported, InteropError> {
    let bytes = std::fs::read(path).map_err(|source| InteropError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    import_with(&bytes, &stem, ExternalData::beside(path), options).map_err(|e| match e {
        InteropError::Decode { message, .. } => InteropError::Decode {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })
}

/// Reads an ONNX model from memory; `name` is used when the graph has none.
/// Tensors stored in external files are refused (there is no folder to
/// find them in): use [`import`] for those.
pub fn import_bytes(bytes: &[u8], name: &str) -> Result<Imported, InteropError> {
    import_bytes_with_options(bytes, name, &ImportOptions::default())
}

/// [`import_bytes`] with [`ImportOptions`].
pub fn import_bytes_with_options(
    bytes: &[u8],
    name: &str,
    options: &ImportOptions,
) -> Result<Imported, InteropError> {
    import_with(bytes, name, ExternalData::unavailable(), options)
}

fn import_with(
    bytes: &[u8],
    name: &str,
    external: ExternalData,
    options: &ImportOptions,
) -> Result<Imported, InteropError> {
    let model = ModelProto::decode(bytes).map_err(|e| InteropError::Decode {
        path: "<memory>".into(),
        message: format!("protobuf decoding failed ({e}); the file may be truncated or not ONNX"),
    })?;
    let Some(graph) = &model.graph else {
        return Err(InteropError::Decode {
            path: "<memory>".into(),
            message: "it has no graph (is it an ONNX model?)".into(),
        });
    };
    if model.ir_version <= 0 {
        return Err(InteropError::InvalidModel(format!(
            "IR version {} is not a valid ONNX IR version",
            model.ir_version
        )));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let graph_name = if graph.name.trim().is_empty() {
        name.to_string()
    } else {
        graph.name.clone()
    };
    let mut importer = Importer::new(graph, opset, graph_name, external)?;
    importer.options = *options;
    importer.run()?;
    importer.finish()
}

/// A constant's dims and, when stored in the file, its values.
type ConstValue = (Vec<usize>, Option<Vec<f64>>);

/// What an ONNX value is, as far as Netloom is concerned.
#[derive(Clone, Debug)]
enum Val<'m> {
    /// The output of a Netloom node.
    Data { node: NodeId, shape: Option<Shape> },
    /// A constant (initializer, `Constant`) or a parameter input with known dims.
    Const {
        dims: Vec<usize>,
        tensor: Option<&'m TensorProto>,
        /// The value for `Constant` nodes built from scalar/list attributes.
        owned: Option<Vec<f64>>,
    },
    /// A graph input not yet claimed as data or as a parameter.
    GraphInput(&'m ValueInfoProto),
    /// Computed from constants or shapes; its value is not tracked.
    Meta,
    /// Produced by an operator Netloom cannot represent.
    Cut,
    /// One channel selected from a volume, scaled and shifted ([`channels`]).
    Channel(channels::Channel),
}

struct Importer<'m> {
    proto: &'m GraphProto,
    opset: i64,
    graph: Graph,
    values: HashMap<String, Val<'m>>,
    /// How many times each value is consumed (by nodes and graph outputs).
    uses: HashMap<String, usize>,
    /// Values in NHWC layout (after a Transpose [0, 2, 3, 1]).
    nhwc: HashSet<String>,
    /// Flatten layers fed by NHWC values: they flatten in H·W·C order.
    hwc_flattens: HashSet<String>,
    /// The op types consuming each value.
    consumers: HashMap<String, Vec<&'m str>>,
    /// Node → its ONNX op (for folding decisions).
    origin: HashMap<NodeId, &'static str>,
    /// Parameters in framework layouts, keyed `{layer}.{key}`.
    weights: Tensors,
    unsupported: BTreeMap<String, usize>,
    deviations: Vec<Deviation>,
    warnings: Vec<String>,
    order: Vec<usize>,
    /// Where tensors stored outside the model file are read from.
    external: ExternalData,
    options: ImportOptions,
    /// How many folded BatchNorms were restored.
    restored_batchnorms: usize,
}

fn topo_sort(g: &GraphProto, known: &HashSet<&str>) -> Result<Vec<usize>, InteropError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o.as_str(), i).is_some() || known.contains(o.as_str()) {
                return Err(InteropError::InvalidModel(format!(
                    "value `{o}` is produced twice (by node `{}` and another node or initializer)",
                    node_label(n)
                )));
            }
        }
    }
    let mut indegree = vec![0usize; g.node.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => {
                    indegree[i] += 1;
                    consumers[p].push(i);
                }
                None if known.contains(input.as_str()) => {}
                None => {
                    return Err(InteropError::InvalidModel(format!(
                        "input `{input}` of node `{}` is not produced by any node, initializer or graph input",
                        node_label(n)
                    )));
                }
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..g.node.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(g.node.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &c in &consumers[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push_back(c);
            }
        }
    }
    if order.len() < g.node.len() {
        let stuck: Vec<String> = (0..g.node.len())
            .filter(|&i| indegree[i] > 0)
            .take(8)
            .map(|i| format!("`{}`", node_label(&g.node[i])))
            .collect();
        return Err(InteropError::InvalidModel(format!(
            "the graph has a cycle through {}",
            stuck.join(", ")
        )));
    }
    Ok(order)
}

/// A size attribute (kernel, stride, filters, group) of `node`: at least 1
/// and within `u32`, or an error naming the operator and the value.
fn positive_u32(node: &NodeProto, what: &str, v: i64) -> Result<u32, InteropError> {
    u32::try_from(v).ok().filter(|&v| v >= 1).ok_or_else(|| {
        InteropError::InvalidModel(format!(
            "{} `{}` has {what} {v}; it must be between 1 and {}",
            node.op_type,
            node_label(node),
            u32::MAX
        ))
    })
}

/// A padding amount of `node`: between 0 and `u32::MAX`.
fn pad_u32(node: &NodeProto, v: i64) -> Result<u32, InteropError> {
    u32::try_from(v).map_err(|_| {
        InteropError::InvalidModel(format!(
            "{} `{}` has a padding of {v}; pads must be between 0 and {}",
            node.op_type,
            node_label(node),
            u32::MAX
        ))
    })
}

/// An image size of a graph input: within `u32`.
fn input_u32(name: &str, v: usize) -> Result<u32, InteropError> {
    u32::try_from(v).map_err(|_| {
        InteropError::InvalidModel(format!(
            "graph input `{name}` has a dimension of {v}, larger than {}",
            u32::MAX
        ))
    })
}

/// The number of values of a tensor of `dims`, or an error when it
/// overflows or exceeds what one layer may hold.
fn element_count(name: &str, dims: &[usize]) -> Result<usize, InteropError> {
    checked_product(dims).ok_or_else(|| {
        InteropError::InvalidModel(format!(
            "tensor `{name}` has dims {dims:?}, more values than Netloom can hold"
        ))
    })
}

fn node_label(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        format!(
            "{} → {}",
            n.op_type,
            n.output.first().map_or("?", |s| s.as_str())
        )
    }
}

/// Operators that keep their input's shape, passed through when unsupported.
const SHAPE_KEEPING: &[&str] = &[
    "Add",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "PRelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Abs",
    "Neg",
    "Reciprocal",
    "Mul",
    "Div",
    "Sub",
    "Pow",
    "Cast",
    "LRN",
    "InstanceNormalization",
    "LpNormalization",
    "ThresholdedRelu",
    "LogSoftmax",
    "Hardmax",
    "Sin",
    "Cos",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Max",
    "Min",
    "Mean",
    "Swish",
    "QuantizeLinear",
    "DequantizeLinear",
];

impl<'m> Importer<'m> {
    fn new(
        proto: &'m GraphProto,
        opset: i64,
        name: String,
        external: ExternalData,
    ) -> Result<Self, InteropError> {
        let mut values: HashMap<String, Val<'m>> = HashMap::new();
        for t in &proto.initializer {
            if t.name.is_empty() {
                return Err(InteropError::InvalidModel(
                    "an initializer has no name".into(),
                ));
            }
            let dims = to_dims(&t.dims).map_err(|e| {
                InteropError::InvalidModel(format!("initializer `{}`: {e}", t.name))
            })?;
            values.insert(
                t.name.clone(),
                Val::Const {
                    dims,
                    tensor: Some(t),
                    owned: None,
                },
            );
        }
        for vi in &proto.input {
            values.entry(vi.name.clone()).or_insert(Val::GraphInput(vi));
        }
        let known: HashSet<&str> = values.keys().map(|s| s.as_str()).collect();
        let order = topo_sort(proto, &known)?;
        let mut uses: HashMap<String, usize> = HashMap::new();
        let mut consumers: HashMap<String, Vec<&'m str>> = HashMap::new();
        for n in &proto.node {
            for i in &n.input {
                *uses.entry(i.clone()).or_default() += 1;
                consumers
                    .entry(i.clone())
                    .or_default()
                    .push(n.op_type.as_str());
            }
        }
        for o in &proto.output {
            *uses.entry(o.name.clone()).or_default() += 1;
        }
        Ok(Importer {
            proto,
            opset,
            graph: Graph::new(name),
            values,
            uses,
            consumers,
            nhwc: HashSet::new(),
            hwc_flattens: HashSet::new(),
            origin: HashMap::new(),
            weights: Tensors::new(),
            unsupported: BTreeMap::new(),
            deviations: Vec::new(),
            warnings: Vec::new(),
            order,
            external,
            options: ImportOptions::default(),
            restored_batchnorms: 0,
        })
    }

    fn run(&mut self) -> Result<(), InteropError> {
        for i in self.order.clone() {
            let node = &self.proto.node[i];
            self.import_node(node)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Imported, InteropError> {
        let Importer {
            graph,
            weights,
            unsupported,
            mut deviations,
            mut warnings,
            hwc_flattens,
            restored_batchnorms,
            ..
        } = self;
        if restored_batchnorms > 0 {
            warnings.push(format!(
                "{restored_batchnorms} BatchNorm layer(s) restored after the convs the exporter had folded them into \
                 (gamma 1, beta the folded bias, mean 0, variance 1 - epsilon): the same function, with \
                 PyTorch's parameter count; `--keep-folded-batchnorm` keeps the file's convs with biases"
            ));
        }
        let mut graph = graph.compacted();
        // Blocks named by prefix (`layer1.0.*`) become groups.
        for (name, members) in crate::graph::group::groups_from_name_prefixes(&graph) {
            let _ = graph.add_group(name, members);
        }
        layout::auto_layout(&mut graph);
        let analysis = infer::analyze(&graph);
        let carried_weights = !weights.is_empty();
        let weights = match from_framework_with(&graph, &analysis, &weights, &hwc_flattens) {
            Ok((w, misfits)) => {
                deviations.extend(misfits.into_iter().map(|m| Deviation {
                    node: "weights".into(),
                    what: "weights".into(),
                    effect: format!("not imported: {m}"),
                }));
                w
            }
            Err(e) => {
                deviations.push(Deviation {
                    node: "weights".into(),
                    what: "weights".into(),
                    effect: format!("not imported: {e}"),
                });
                Tensors::new()
            }
        };
        if carried_weights {
            deviations.extend(missing_weights(&graph, &analysis, &weights));
        }
        let mut unsupported: Vec<(String, usize)> = unsupported.into_iter().collect();
        unsupported.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(Imported {
            graph,
            weights,
            unsupported,
            deviations,
            warnings,
        })
    }

    /// Records that `node` is not represented faithfully.
    fn deviate(&mut self, node: &NodeProto, what: impl Into<String>, effect: impl Into<String>) {
        self.deviations.push(Deviation {
            node: node_label(node),
            what: what.into(),
            effect: effect.into(),
        });
    }

    // --- values -----------------------------------------------------------

    /// The Netloom node feeding a data input, creating an Input layer for a
    /// graph input on first use. `None` when the value is cut or constant.
    fn data(&mut self, name: &str) -> Result<Option<(NodeId, Option<Shape>)>, InteropError> {
        match self.values.get(name).cloned() {
            Some(Val::Data { node, shape }) => Ok(Some((node, shape))),
            Some(Val::GraphInput(vi)) => {
                let v = self.input_layer(vi)?;
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    }

    fn is_data(&self, name: &str) -> bool {
        matches!(
            self.values.get(name),
            Some(Val::Data { .. }) | Some(Val::GraphInput(_))
        )
    }

    /// A constant or parameter input: its dims and, when stored, its values.
    fn konst(&mut self, name: &str) -> Result<Option<ConstValue>, InteropError> {
        match self.values.get(name).cloned() {
            Some(Val::Const {
                dims,
                tensor,
                owned,
            }) => {
                let values = match (owned, tensor) {
                    (Some(v), _) => Some(v),
                    (None, Some(t)) => Some(decode_tensor(t, &dims, &self.external)?),
                    (None, None) => None,
                };
                Ok(Some((dims, values)))
            }
            Some(Val::GraphInput(vi)) => {
                let dims = static_dims(vi).map_err(|e| {
                    InteropError::InvalidModel(format!("parameter input `{}`: {e}", vi.name))
                })?;
                self.values.insert(
                    name.to_string(),
                    Val::Const {
                        dims: dims.clone(),
                        tensor: None,
                        owned: None,
                    },
                );
                Ok(Some((dims, None)))
            }
            _ => Ok(None),
        }
    }

    fn input_layer(
        &mut self,
        vi: &'m ValueInfoProto,
    ) -> Result<(NodeId, Option<Shape>), InteropError> {
        let dims = static_dims_batch_free(vi)
            .map_err(|e| InteropError::InvalidModel(format!("graph input `{}`: {e}", vi.name)))?;
        let (h, w, c, flat) = match dims.as_slice() {
            [c, h, w] => (*h, *w, *c, false),
            [n] => (1, 1, *n, true),
            other => {
                return Err(InteropError::InvalidModel(format!(
                    "graph input `{}` has shape {other:?} (batch dropped); Netloom takes N×C×H×W images or N×F vectors",
                    vi.name
                )));
            }
        };
        let kind = LayerKind::Input {
            height: input_u32(&vi.name, h)?,
            width: input_u32(&vi.name, w)?,
            channels: input_u32(&vi.name, c)?,
        };
        let (mut id, mut shape) = self.add(&vi.name, kind, &[])?;
        if flat {
            let stem = format!("{}_flatten", vi.name);
            (id, shape) = self.add(&stem, LayerKind::Flatten, &[Some(id)])?;
        }
        self.values
            .insert(vi.name.clone(), Val::Data { node: id, shape });
        Ok((id, shape))
    }

    /// Adds a node (unique name from `stem`), wires the known inputs and
    /// infers its shape.
    fn add(
        &mut self,
        stem: &str,
        kind: LayerKind,
        inputs: &[Option<NodeId>],
    ) -> Result<(NodeId, Option<Shape>), InteropError> {
        let stem = if stem.trim().is_empty() {
            kind.tag().to_string()
        } else {
            stem.to_string()
        };
        kind.validate()
            .map_err(|e| InteropError::InvalidModel(format!("layer `{stem}`: {e}")))?;
        let name = self.graph.unique_name(&stem);
        let id = self
            .graph
            .add_node(name, kind.clone(), [0.0, 0.0])
            .map_err(|e| InteropError::InvalidModel(e.to_string()))?;
        let mut known = Vec::new();
        let mut all = true;
        for (i, from) in inputs.iter().enumerate() {
            match from {
                Some(f) => {
                    self.graph
                        .connect(*f, id, i)
                        .map_err(|e| InteropError::InvalidModel(e.to_string()))?;
                    match self.shape_of(*f) {
                        Some(s) => known.push((*f, s)),
                        None => all = false,
                    }
                }
                None => all = false,
            }
        }
        let shape = if all {
            infer::shape::output_shape(&kind, &known)
                .ok()
                .map(|(s, _)| s)
        } else {
            None
        };
        Ok((id, shape))
    }

    fn shape_of(&self, id: NodeId) -> Option<Shape> {
        self.values.values().find_map(|v| match v {
            Val::Data { node, shape } if *node == id => *shape,
            _ => None,
        })
    }

    fn set_outputs(&mut self, node: &NodeProto, val: Val<'m>) {
        for (i, o) in node.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            // Secondary outputs (Dropout mask, MaxPool indices, BN stats) are not data.
            let v = if i == 0 { val.clone() } else { Val::Cut };
            self.values.insert(o.clone(), v);
        }
    }

    fn unsupported(&mut self, node: &NodeProto, label: String) -> Result<(), InteropError> {
        *self.unsupported.entry(label.clone()).or_default() += 1;
        let first = node.input.first().cloned().unwrap_or_default();
        let pass = SHAPE_KEEPING.contains(&node.op_type.as_str())
            && node.input.iter().filter(|i| self.is_data(i)).count() == 1
            && self.is_data(&first);
        if pass && let Some((id, shape)) = self.data(&first)? {
            self.deviate(
                node,
                label,
                "left out: its input passes through unchanged, so the design computes something else",
            );
            self.set_outputs(node, Val::Data { node: id, shape });
            return Ok(());
        }
        self.deviate(
            node,
            label,
            "left out: the layers reading its output are left unconnected",
        );
        self.set_outputs(node, Val::Cut);
        Ok(())
    }

    // --- operators ----------------------------------------------------------

    fn import_node(&mut self, node: &'m NodeProto) -> Result<(), InteropError> {
        let op = node.op_type.as_str();
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return self.unsupported(node, format!("{}::{op}", node.domain));
        }
        // Constants and shape arithmetic.
        if op == "Constant" {
            return self.constant(node);
        }
        if op == "Identity" {
            // Also routes shared initializers (the legacy exporter de-duplicates equal tensors).
            let x = node.input.first().cloned().unwrap_or_default();
            let v = self.values.get(&x).cloned().unwrap_or(Val::Cut);
            self.set_outputs(node, v);
            return Ok(());
        }
        if op == "ConstantOfShape" {
            // A filled tensor of a constant shape (weights stripped from "light" models).
            let shape = node.input.first().cloned().unwrap_or_default();
            let val = match self.konst(&shape)? {
                Some((_, Some(dims)))
                    if dims.iter().all(|&d| d >= 0.0 && d <= usize::MAX as f64)
                        && checked_product(
                            &dims.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                        )
                        .is_some() =>
                {
                    Val::Const {
                        dims: dims.iter().map(|&d| d as usize).collect(),
                        tensor: None,
                        owned: None,
                    }
                }
                _ => Val::Meta,
            };
            self.set_outputs(node, val);
            return Ok(());
        }
        if node
            .input
            .iter()
            .any(|i| matches!(self.values.get(i), Some(Val::Channel(_))))
        {
            return self.channel_op(node);
        }
        let any_data = node.input.iter().any(|i| self.is_data(i));
        let any_cut = node
            .input
            .iter()
            .any(|i| matches!(self.values.get(i), Some(Val::Cut)));
        if op == "Reshape" && !any_data && !any_cut {
            return self.reshape_constant(node);
        }
        if op == "Shape" || op == "Size" || (!any_data && !any_cut && !node.input.is_empty()) {
            self.set_outputs(node, Val::Meta);
            return Ok(());
        }
        let name = layer_name(node);
        let x = node.input.first().cloned().unwrap_or_default();
        if node.input.iter().any(|i| self.nhwc.contains(i)) && !matches!(op, "Flatten" | "Reshape")
        {
            return self.unsupported(node, format!("{op} on NHWC data"));
        }
        match op {
            "Conv" => self.conv(node, &name),
            "MaxPool" | "AveragePool" => self.pool(node, &name),
            "GlobalAveragePool" => self.global_pool(node, &name),
            "ReduceMean" => self.reduce_mean(node, &name),
            "Mul" => self.mul_op(node, &name),
            "Sub" | "Div" => self.sub_div(node, &name),
            "Gather" => self.gather(node),
            "BatchNormalization" => self.batch_norm(node, &name),
            "Relu" => self.simple(node, &name, LayerKind::Relu),
            "Sigmoid" => self.simple(node, &name, LayerKind::Sigmoid),
            "Clip" => self.clip(node, &name),
            "HardSigmoid" => self.hard_sigmoid(node, &name),
            "HardSwish" => self.simple(node, &name, LayerKind::HardSwish),
            "Tanh" => self.simple(node, &name, LayerKind::Tanh),
            "LeakyRelu" => {
                let alpha = attr_f(node, "alpha").unwrap_or(0.01) as f64;
                self.simple(node, &name, LayerKind::LeakyRelu { alpha })
            }
            "Softmax" => {
                if let Some((_, Some(s))) = self.data(&x)? {
                    let default = if self.opset >= 13 { -1 } else { 1 };
                    let axis = attr_i(node, "axis").unwrap_or(default);
                    let rank = if matches!(s, Shape::Volume { .. }) {
                        4
                    } else {
                        2
                    };
                    let axis = if axis < 0 { axis + rank } else { axis };
                    if axis != 1 {
                        self.deviate(
                            node,
                            format!("Softmax (axis {axis})"),
                            "read as a Softmax over channels, which Netloom's Softmax is",
                        );
                    }
                }
                self.simple(node, &name, LayerKind::Softmax)
            }
            "Dropout" => {
                let mut rate = attr_f(node, "ratio").map(f64::from);
                if let Some(r) = node.input.get(1).filter(|r| !r.is_empty())
                    && let Some((_, Some(v))) = self.konst(r)?
                {
                    rate = v.first().copied();
                }
                let rate = rate.unwrap_or(0.5).clamp(0.0, 0.999);
                self.simple(node, &name, LayerKind::Dropout { rate })
            }
            "Flatten" | "Reshape" | "Squeeze" => self.flatten(node, &name),
            "Gemm" | "MatMul" => self.dense(node, &name),
            "Add" | "Sum" => self.add_op(node, &name),
            "Concat" => self.concat(node, &name),
            "Pad" => self.pad(node, &name),
            "Transpose" => self.transpose(node),
            "Unsqueeze" => self.unsqueeze(node),
            _ => self.unsupported(node, op.to_string()),
        }
    }

    fn constant(&mut self, node: &'m NodeProto) -> Result<(), InteropError> {
        let val = if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
            let dims = to_dims(&t.dims).map_err(|e| {
                InteropError::InvalidModel(format!("Constant `{}`: {e}", node_label(node)))
            })?;
            Val::Const {
                dims,
                tensor: Some(t),
                owned: None,
            }
        } else if let Some(a) = attr(node, "value_float") {
            Val::Const {
                dims: vec![],
                tensor: None,
                owned: Some(vec![a.f as f64]),
            }
        } else if let Some(a) = attr(node, "value_int") {
            Val::Const {
                dims: vec![],
                tensor: None,
                owned: Some(vec![a.i as f64]),
            }
        } else if let Some(a) = attr(node, "value_floats") {
            Val::Const {
                dims: vec![a.floats.len()],
                tensor: None,
                owned: Some(a.floats.iter().map(|&v| v as f64).collect()),
            }
        } else if let Some(a) = attr(node, "value_ints") {
            Val::Const {
                dims: vec![a.ints.len()],
                tensor: None,
                owned: Some(a.ints.iter().map(|&v| v as f64).collect()),
            }
        } else {
            Val::Meta
        };
        self.set_outputs(node, val);
        Ok(())
    }

    /// A Reshape of a constant (weights reshaped before use) stays a constant.
    fn reshape_constant(&mut self, node: &NodeProto) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let target = node.input.get(1).cloned().unwrap_or_default();
        let val = match (self.values.get(&x).cloned(), self.konst(&target)?) {
            (
                Some(Val::Const {
                    dims,
                    tensor,
                    owned,
                }),
                Some((_, Some(t))),
            ) => {
                let n: usize = dims.iter().product();
                let mut new: Vec<usize> = t
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| match d as i64 {
                        0 => dims.get(i).copied().unwrap_or(1),
                        -1 => 0,
                        d => d.max(0) as usize,
                    })
                    .collect();
                if let Some(free) = t.iter().position(|&d| d == -1.0) {
                    let known = new
                        .iter()
                        .filter(|&&d| d != 0)
                        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                        .unwrap_or(0);
                    new[free] = n.checked_div(known).unwrap_or(0);
                }
                if checked_product(&new) == Some(n) {
                    Val::Const {
                        dims: new,
                        tensor,
                        owned,
                    }
                } else {
                    Val::Meta
                }
            }
            _ => Val::Meta,
        };
        self.set_outputs(node, val);
        Ok(())
    }

    /// A one-input layer on the node's first input.
    fn simple(
        &mut self,
        node: &NodeProto,
        name: &str,
        kind: LayerKind,
    ) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let from = self.data(&x)?.map(|(id, _)| id);
        let (id, shape) = self.add(name, kind, &[from])?;
        self.origin.insert(id, static_op(&node.op_type));
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    /// `Clip` to `[0, 6]` is ReLU6 and `[0, ∞)` is ReLU; the bounds are
    /// attributes before opset 11 and optional constant inputs from it on.
    /// Any other range, or bounds computed from data, is refused by name.
    fn clip(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let (min, max) = if self.opset < 11 {
            (
                attr_f(node, "min").map_or(f64::NEG_INFINITY, f64::from),
                attr_f(node, "max").map_or(f64::INFINITY, f64::from),
            )
        } else {
            let mut bound = |slot: usize, default: f64| -> Result<Option<f64>, InteropError> {
                match node.input.get(slot).filter(|b| !b.is_empty()) {
                    None => Ok(Some(default)),
                    Some(b) => Ok(match self.konst(b)? {
                        Some((dims, Some(v))) if v.len() == 1 && dims.len() <= 1 => Some(v[0]),
                        _ => None,
                    }),
                }
            };
            match (bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?) {
                (Some(lo), Some(hi)) => (lo, hi),
                _ => return self.unsupported(node, "Clip (bounds not constant)".into()),
            }
        };
        if min == 0.0 && max == 6.0 {
            self.simple(node, name, LayerKind::Relu6)
        } else if min == 0.0 && max == f64::INFINITY {
            self.simple(node, name, LayerKind::Relu)
        } else {
            self.unsupported(node, format!("Clip (min {min}, max {max})"))
        }
    }

    /// `HardSigmoid` is `max(0, min(1, αx + β))`; PyTorch's (α = 1/6,
    /// β = 1/2, written as f32) is Netloom's HardSigmoid. Other slopes and
    /// offsets are refused by name.
    fn hard_sigmoid(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let alpha = attr_f(node, "alpha").unwrap_or(0.2);
        let beta = attr_f(node, "beta").unwrap_or(0.5);
        if (alpha - 1.0 / 6.0).abs() <= 1e-7 && beta == 0.5 {
            self.simple(node, name, LayerKind::HardSigmoid)
        } else {
            self.unsupported(node, format!("HardSigmoid (alpha {alpha}, beta {beta})"))
        }
    }

    fn store(&mut self, layer: NodeId, key: &str, dims: Vec<usize>, values: Option<Vec<f64>>) {
        if let Some(v) = values {
            let name = format!("{}.{key}", self.graph.name_of(layer));
            self.weights
                .insert(name, (dims, v.into_iter().map(|x| x as f32).collect()));
        }
    }

    fn conv(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let w_name = node.input.get(1).cloned().unwrap_or_default();
        let Some((w_dims, w_vals)) = self.konst(&w_name)? else {
            return self.unsupported(node, "Conv (non-constant weights)".into());
        };
        if w_dims.len() != 4 {
            return self.unsupported(node, format!("Conv{}D", w_dims.len().saturating_sub(2)));
        }
        let dilation = match attr_ints(node, "dilations") {
            None => [1, 1],
            Some([dh, dw]) => [
                positive_u32(node, "dilation", *dh)?,
                positive_u32(node, "dilation", *dw)?,
            ],
            Some(d) => {
                return Err(InteropError::InvalidModel(format!(
                    "Conv `{}` has dilations {d:?}; a 2-D kernel takes 2",
                    node_label(node)
                )));
            }
        };
        let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => self.konst(b)?,
            None => None,
        };
        let groups = positive_u32(node, "group", attr_i(node, "group").unwrap_or(1))?;
        let dim = |what: &str, d: usize| positive_u32(node, what, i64::try_from(d).unwrap_or(-1));
        let kernel = [
            dim("kernel height", w_dims[2])?,
            dim("kernel width", w_dims[3])?,
        ];
        let filters = dim("filter count", w_dims[0])?;
        let input = self.data(&x)?;
        // The window a dilated kernel covers: (k - 1)·d + 1 taps wide.
        let span = [0, 1].map(|a| {
            (kernel[a] - 1)
                .checked_mul(dilation[a])
                .and_then(|s| s.checked_add(1))
        });
        let [Some(sh), Some(sw)] = span else {
            return Err(InteropError::InvalidModel(format!(
                "Conv `{}`: kernel {kernel:?} dilated by {dilation:?} is too large",
                node_label(node)
            )));
        };
        let (padding, stride, _) =
            self.window(node, input.and_then(|(_, s)| s), [sh, sw], false)?;
        let folded = self.options.restore_batchnorm
            && bias.as_ref().is_some_and(|(dims, _)| {
                dims.iter().product::<usize>() == filters as usize
                    && folded_batchnorm(&w_name, node.input.get(2).map_or("", |b| b.as_str()))
            });
        let kind = LayerKind::Conv2d {
            filters,
            kernel,
            stride,
            padding,
            groups,
            bias: bias.is_some() && !folded,
            dilation,
        };
        let (id, shape) = self.add(name, kind, &[input.map(|(id, _)| id)])?;
        self.origin.insert(id, "Conv");
        self.store(id, "weight", w_dims, w_vals);
        match bias {
            Some((_, vals)) if folded => {
                return self.restore_batchnorm(node, name, (id, shape), filters as usize, vals);
            }
            Some((dims, vals)) => {
                let n: usize = dims.iter().product();
                self.store(id, "bias", vec![n], vals);
            }
            None => {}
        }
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    /// The BatchNorm an exporter folded into conv `conv`, as a layer after
    /// it computing `x + bias` (γ 1, β = the folded bias, mean 0, variance
    /// 1 − ε, so that `(x − 0) / √(var + ε) = x`).
    fn restore_batchnorm(
        &mut self,
        node: &NodeProto,
        name: &str,
        (conv, conv_shape): (NodeId, Option<Shape>),
        channels: usize,
        bias: Option<Vec<f64>>,
    ) -> Result<(), InteropError> {
        const EPSILON: f64 = 1e-5;
        let kind = LayerKind::BatchNorm {
            epsilon: EPSILON,
            momentum: 0.9,
        };
        // The conv's value is not an ONNX value, so its shape is passed on
        // here: a BatchNorm keeps it.
        let (id, _) = self.add(&format!("{name}.bn"), kind, &[Some(conv)])?;
        let shape = conv_shape;
        self.origin.insert(id, "BatchNormalization");
        if bias.is_some() {
            let c = vec![channels];
            self.store(id, "gamma", c.clone(), Some(vec![1.0; channels]));
            self.store(id, "beta", c.clone(), bias);
            self.store(id, "running_mean", c.clone(), Some(vec![0.0; channels]));
            // Stored as f32: 1 − ε rounds so that var + ε is 1 within an ulp.
            self.store(id, "running_var", c, Some(vec![1.0 - EPSILON; channels]));
        }
        self.restored_batchnorms += 1;
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    /// Padding, stride and ceil mode of a conv or pool node, preferring the
    /// simplest Netloom padding that resolves to the same window.
    fn window(
        &mut self,
        node: &NodeProto,
        input: Option<Shape>,
        kernel: [u32; 2],
        allow_ceil: bool,
    ) -> Result<(Padding, [u32; 2], bool), InteropError> {
        let s = attr_ints(node, "strides").unwrap_or(&[1, 1]);
        if s.len() > 2 {
            return Err(InteropError::InvalidModel(format!(
                "{} `{}` has strides {s:?}; a 2-D window takes 2",
                node.op_type,
                node_label(node)
            )));
        }
        let stride = [
            positive_u32(node, "stride", s.first().copied().unwrap_or(1))?,
            positive_u32(node, "stride", s.get(1).copied().unwrap_or(1))?,
        ];
        let ceil = allow_ceil && attr_i(node, "ceil_mode").unwrap_or(0) != 0;
        let auto = attr_s(node, "auto_pad").unwrap_or("NOTSET");
        let hw = match input {
            Some(Shape::Volume { h, w, .. }) => Some([h, w]),
            _ => None,
        };
        let explicit = match auto {
            "SAME_UPPER" => return Ok((Padding::Same, stride, false)),
            "VALID" => return Ok((Padding::Valid, stride, ceil)),
            "SAME_LOWER" => {
                let Some([h, w]) = hw else {
                    return Ok((Padding::Same, stride, false));
                };
                let ah = resolve_axis(
                    h,
                    kernel[0] as u64,
                    stride[0] as u64,
                    Padding::Same,
                    0,
                    false,
                );
                let aw = resolve_axis(
                    w,
                    kernel[1] as u64,
                    stride[1] as u64,
                    Padding::Same,
                    1,
                    false,
                );
                match (ah, aw) {
                    (Ok(ah), Ok(aw)) => [ah.pad_after, ah.pad_before, aw.pad_after, aw.pad_before]
                        .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
                    _ => return Ok((Padding::Same, stride, false)),
                }
            }
            _ => {
                let p = attr_ints(node, "pads").unwrap_or(&[0, 0, 0, 0]);
                if p.len() != 4 || p.iter().any(|&v| v < 0) {
                    return Err(InteropError::InvalidModel(format!(
                        "{} `{}` has pads {p:?}; expected 4 non-negative values",
                        node.op_type,
                        node_label(node)
                    )));
                }
                // ONNX: [top, left, bottom, right]; Netloom: [top, bottom, left, right].
                [
                    pad_u32(node, p[0])?,
                    pad_u32(node, p[2])?,
                    pad_u32(node, p[1])?,
                    pad_u32(node, p[3])?,
                ]
            }
        };
        let target = Padding::Explicit(explicit);
        let Some([h, w]) = hw else {
            let padding = if explicit == [0; 4] {
                Padding::Valid
            } else {
                target
            };
            return Ok((padding, stride, ceil));
        };
        let resolve = |p: Padding, c: bool| {
            let ah = resolve_axis(h, kernel[0] as u64, stride[0] as u64, p, 0, c).ok()?;
            let aw = resolve_axis(w, kernel[1] as u64, stride[1] as u64, p, 1, c).ok()?;
            Some([ah, aw])
        };
        let wanted = resolve(target, ceil);
        let same_hint = node.doc_string.contains(SAME_HINT);
        let mut candidates = vec![];
        if explicit == [0; 4] {
            candidates.push(Padding::Valid);
        }
        if same_hint {
            candidates.insert(0, Padding::Same);
        }
        candidates.push(target);
        for c in [false, true] {
            if c && !ceil {
                continue;
            }
            for &p in &candidates {
                if resolve(p, c) == wanted {
                    return Ok((p, stride, c));
                }
            }
        }
        Ok((target, stride, ceil))
    }

    fn pool(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let Some(k) = attr_ints(node, "kernel_shape").filter(|k| k.len() == 2) else {
            let label = format!("{} (not 2-D)", node.op_type);
            return self.unsupported(node, label);
        };
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            let label = format!("{} (dilated)", node.op_type);
            return self.unsupported(node, label);
        }
        let kernel = [
            positive_u32(node, "kernel height", k[0])?,
            positive_u32(node, "kernel width", k[1])?,
        ];
        let input = self.data(&x)?;
        let (padding, stride, ceil_mode) =
            self.window(node, input.and_then(|(_, s)| s), kernel, true)?;
        // Counting the padding only matters where there is some.
        let padded = !matches!(padding, Padding::Valid | Padding::Explicit([0, 0, 0, 0]));
        let include_padding = padded && attr_i(node, "count_include_pad").unwrap_or(0) != 0;
        let kind = if node.op_type == "MaxPool" {
            LayerKind::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            }
        } else {
            LayerKind::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                include_padding,
            }
        };
        let (id, shape) = self.add(name, kind, &[input.map(|(id, _)| id)])?;
        self.origin.insert(id, static_op(&node.op_type));
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    /// GlobalAvgPool when the result is flattened or fed to a Gemm (Netloom's
    /// GlobalAvgPool yields a vector); otherwise an H×W average pool, which
    /// keeps the 1×1×C volume (squeeze-and-excitation blocks, 1×1 conv heads).
    fn global_pool(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let out = node.output.first().cloned().unwrap_or_default();
        let to_vector = self.consumers.get(&out).is_none_or(|ops| {
            ops.iter()
                .all(|op| matches!(*op, "Flatten" | "Reshape" | "Squeeze" | "Gemm"))
        });
        let x = node.input.first().cloned().unwrap_or_default();
        match self.data(&x)? {
            Some((_, Some(Shape::Volume { h, w, .. }))) if !to_vector => {
                let kind = LayerKind::AvgPool2d {
                    kernel: [h as u32, w as u32],
                    stride: [1, 1],
                    padding: Padding::Valid,
                    ceil_mode: false,
                    include_padding: false,
                };
                self.simple(node, name, kind)
            }
            _ => self.simple(node, name, LayerKind::GlobalAvgPool),
        }
    }

    /// A node's `axes`: its attribute (Unsqueeze before opset 13,
    /// ReduceMean before 18) or its second input; `None` when neither
    /// gives them.
    fn axes(&mut self, node: &NodeProto) -> Result<Option<Vec<i64>>, InteropError> {
        if let Some(a) = attr_ints(node, "axes") {
            return Ok(Some(a.to_vec()));
        }
        let Some(input) = node.input.get(1).filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        Ok(self
            .konst(input)?
            .and_then(|(_, v)| v)
            .map(|v| v.iter().map(|&x| x as i64).collect()))
    }

    /// `ReduceMean` over H and W (the dynamo exporter's global average
    /// pool, and `x.mean((2, 3))`): axes from the attribute (opset < 18) or
    /// the second input; `keepdims` 0 gives a vector, 1 a 1×1×C volume.
    fn reduce_mean(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let keepdims = attr_i(node, "keepdims").unwrap_or(1) != 0;
        let axes = self.axes(node)?;
        let x = node.input.first().cloned().unwrap_or_default();
        let shape = self.data(&x)?.and_then(|(_, s)| s);
        let over = nchw_axes(axes.as_deref().unwrap_or_default());
        if !(matches!(shape, Some(Shape::Volume { .. })) && over == [2, 3]) {
            let label = match axes {
                Some(a) => format!("ReduceMean (axes {a:?})"),
                None => "ReduceMean (all axes)".into(),
            };
            return self.unsupported(node, label);
        }
        if keepdims {
            self.global_pool(node, name)
        } else {
            self.simple(node, name, LayerKind::GlobalAvgPool)
        }
    }

    /// `Mul` of a volume by a per-channel or scalar constant
    /// ([`Importer::constant_affine`]), of a volume by its channel gate
    /// (squeeze-and-excitation), or of a value by its own (hard) sigmoid.
    fn mul_op(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let ins = present_inputs(node);
        let data: Vec<String> = ins.iter().filter(|i| self.is_data(i)).cloned().collect();
        if ins.len() == 2 && data.len() == 1 {
            if self.constant_affine(node, name, &data[0])? {
                return Ok(());
            }
            return self.unsupported(node, "Mul (by a constant that is not per channel)".into());
        }
        if ins.len() == 2 && data.len() == 2 {
            let (Some(a), Some(b)) = (self.data(&ins[0])?, self.data(&ins[1])?) else {
                return self.unsupported(node, "Mul (of two tensors)".into());
            };
            // `x · sigmoid(x)` is SiLU, `x · hard_sigmoid(x)` hard-swish.
            for (gate, other, gate_value) in [(a, b, &ins[0]), (b, a, &ins[1])] {
                if self.gated_activation(node, gate.0, other.0, gate_value)? {
                    return Ok(());
                }
            }
            // A volume times a gate of one value per channel: squeeze-and-excitation.
            let gate_of = |v: Option<Shape>, c: u64| match v {
                Some(Shape::Vector(n)) => n == c,
                Some(Shape::Volume { h: 1, w: 1, c: n }) => n == c,
                _ => false,
            };
            for (volume, gate) in [(a, b), (b, a)] {
                if let Some(Shape::Volume { c, .. }) = volume.1
                    && gate_of(gate.1, c)
                {
                    let (id, shape) = self.add(
                        name,
                        LayerKind::ChannelScale,
                        &[Some(volume.0), Some(gate.0)],
                    )?;
                    self.origin.insert(id, "Mul");
                    self.set_outputs(node, Val::Data { node: id, shape });
                    return Ok(());
                }
            }
        }
        self.unsupported(node, "Mul (of two tensors)".into())
    }

    /// `Mul(x, g)` where `g` is the output of a Sigmoid (HardSigmoid) layer
    /// reading `x` itself: SiLU (hard-swish). The gate layer becomes the
    /// activation when nothing else reads it, else a new layer is added
    /// beside it. `false` when the pattern does not apply.
    fn gated_activation(
        &mut self,
        node: &NodeProto,
        gate: NodeId,
        other: NodeId,
        gate_value: &str,
    ) -> Result<bool, InteropError> {
        let kind = match self.graph.node(gate).map(|n| &n.kind) {
            Some(LayerKind::Sigmoid) => LayerKind::Silu,
            Some(LayerKind::HardSigmoid) => LayerKind::HardSwish,
            _ => return Ok(false),
        };
        if self.graph.inputs_of(gate).first().copied().flatten() != Some(other) {
            return Ok(false);
        }
        let shape = self.shape_of(gate);
        if self.single_use(gate_value) && !self.proto.output.iter().any(|o| o.name == gate_value) {
            if let Some(n) = self.graph.node_mut(gate) {
                n.kind = kind;
            }
            // Named after the Mul, the node that computes the activation's value.
            let name = self.graph.unique_name(&layer_name(node));
            self.graph
                .rename(gate, &name)
                .map_err(|e| InteropError::InvalidModel(e.to_string()))?;
            self.origin.insert(gate, "other");
            self.set_outputs(node, Val::Data { node: gate, shape });
        } else {
            let (id, shape) = self.add(&layer_name(node), kind, &[Some(other)])?;
            self.set_outputs(node, Val::Data { node: id, shape });
        }
        Ok(true)
    }

    /// `Sub` or `Div` of a volume and a per-channel or scalar constant
    /// ([`Importer::constant_affine`]); anything else is unsupported.
    fn sub_div(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let ins = present_inputs(node);
        let data: Vec<String> = ins.iter().filter(|i| self.is_data(i)).cloned().collect();
        if ins.len() == 2 && data.len() == 1 && self.constant_affine(node, name, &data[0])? {
            return Ok(());
        }
        self.unsupported(node, node.op_type.clone())
    }

    /// `x ∘ k` for a volume `x` (the value `data`) and a constant `k` of one
    /// value per channel or one for all, `∘` being Mul, Add, Sub or Div (`x`
    /// on either side, except `k / x`): a [`LayerKind::ChannelAffine`], or
    /// folded into the ChannelAffine that computes `x` when this node is its
    /// only reader (caffe2's `x·s + b`, a normalisation's `(x − m) / s`).
    /// `false` when it does not apply.
    fn constant_affine(
        &mut self,
        node: &NodeProto,
        name: &str,
        data: &str,
    ) -> Result<bool, InteropError> {
        let ins = present_inputs(node);
        let data_first = ins.first().map(String::as_str) == Some(data);
        let Some(konst) = ins.iter().find(|i| i.as_str() != data) else {
            return Ok(false);
        };
        let Some((id, shape @ Some(Shape::Volume { c, .. }))) = self.data(data)? else {
            return Ok(false);
        };
        let Some(k) = self
            .konst(konst)?
            .and_then(|(dims, vals)| channel_constant(&dims, vals, c as usize))
        else {
            return Ok(false);
        };
        // This node's map `x ↦ a·x + b`, per channel.
        let (a, b): (Vec<f64>, Vec<f64>) = match (node.op_type.as_str(), data_first) {
            ("Mul", _) => (k, vec![0.0; c as usize]),
            ("Add", _) => (vec![1.0; c as usize], k),
            ("Sub", true) => (vec![1.0; c as usize], k.iter().map(|v| -v).collect()),
            ("Sub", false) => (vec![-1.0; c as usize], k),
            ("Div", true) if k.iter().all(|&v| v != 0.0) => {
                (k.iter().map(|v| 1.0 / v).collect(), vec![0.0; c as usize])
            }
            _ => return Ok(false),
        };
        let before = match self.graph.node(id).map(|n| &n.kind) {
            Some(LayerKind::ChannelAffine { scale, shift })
                if self.single_use(data) && !self.proto.output.iter().any(|o| o.name == data) =>
            {
                Some((scale.clone(), shift.clone()))
            }
            _ => None,
        };
        let Some((scale0, shift0)) = before else {
            return self.channel_affine(node, name, id, a, b).map(|()| true);
        };
        // a·(s·x + t) + b
        let scale: Vec<f64> = scale0.iter().zip(&a).map(|(&s, a)| a * s as f64).collect();
        let shift: Vec<f64> = (shift0.iter().zip(&a).zip(&b))
            .map(|((&t, a), b)| a * t as f64 + b)
            .collect();
        let Some(kind) = affine_kind(scale, shift) else {
            self.unsupported(node, format!("{} (constants beyond f32)", node.op_type))?;
            return Ok(true);
        };
        if let Some(n) = self.graph.node_mut(id) {
            n.kind = kind;
        }
        // Named after the last node, the one that computes the value.
        let name = self.graph.unique_name(name);
        self.graph
            .rename(id, &name)
            .map_err(|e| InteropError::InvalidModel(e.to_string()))?;
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(true)
    }

    /// `y = x·scale + shift` per channel: a [`LayerKind::ChannelAffine`],
    /// whose constants are part of the design (not weights).
    fn channel_affine(
        &mut self,
        node: &NodeProto,
        name: &str,
        from: NodeId,
        scale: Vec<f64>,
        shift: Vec<f64>,
    ) -> Result<(), InteropError> {
        let Some(kind) = affine_kind(scale, shift) else {
            return self.unsupported(node, format!("{} (constants beyond f32)", node.op_type));
        };
        let (id, shape) = self.add(name, kind, &[Some(from)])?;
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    fn batch_norm(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let epsilon = attr_f(node, "epsilon").unwrap_or(1e-5) as f64;
        let momentum = (attr_f(node, "momentum").unwrap_or(0.9) as f64).clamp(0.0, 0.999_999);
        let mut params = Vec::new();
        for (slot, key) in [
            (1, "gamma"),
            (2, "beta"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let p = node.input.get(slot).cloned().unwrap_or_default();
            params.push((key, self.konst(&p)?));
        }
        let kind = LayerKind::BatchNorm { epsilon, momentum };
        let x = node.input.first().cloned().unwrap_or_default();
        let from = self.data(&x)?.map(|(id, _)| id);
        let (id, shape) = self.add(name, kind, &[from])?;
        self.origin.insert(id, "BatchNormalization");
        for (key, p) in params {
            if let Some((dims, vals)) = p {
                let n: usize = dims.iter().product();
                self.store(id, key, vec![n], vals);
            }
        }
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    fn flatten(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let Some((from, shape)) = self.data(&x)? else {
            self.set_outputs(node, Val::Cut);
            return Ok(());
        };
        let op = node.op_type.as_str();
        let ok = match op {
            "Flatten" => attr_i(node, "axis").unwrap_or(1) == 1,
            "Squeeze" => match shape {
                Some(Shape::Volume { h, w, .. }) => h == 1 && w == 1,
                _ => true,
            },
            _ => {
                // Reshape: to [batch, -1] / [batch, n]; a computed shape is assumed to flatten.
                let target = node.input.get(1).cloned().unwrap_or_default();
                match self.konst(&target)? {
                    Some((_, Some(t))) => {
                        let n = shape.map(|s| s.elements() as f64);
                        t.len() == 2
                            && (t[1] == -1.0 || Some(t[1]) == n)
                            && (t[0] == 0.0
                                || t[0] == -1.0
                                || t[0] == 1.0
                                || n.is_none()
                                || t[0] > 0.0)
                    }
                    _ => {
                        // Only a dense layer after it proves the result is N×K.
                        let out = node.output.first().cloned().unwrap_or_default();
                        let to_dense = self.consumers.get(&out).is_some_and(|ops| {
                            ops.iter().all(|op| matches!(*op, "Gemm" | "MatMul"))
                        });
                        if to_dense {
                            self.warnings.push(format!(
                                "Reshape `{name}` has a computed target shape; read as a flatten, as the dense layer after it needs"
                            ));
                        } else {
                            self.deviate(
                                node,
                                "Reshape (computed target shape)",
                                "read as a flatten to a vector, which it may not be",
                            );
                        }
                        true
                    }
                }
            }
        };
        if !ok {
            let label = format!("{op} (not to a vector)");
            return self.unsupported(node, label);
        }
        if matches!(shape, Some(Shape::Vector(_))) {
            // Already a vector: nothing to do.
            self.set_outputs(node, Val::Data { node: from, shape });
            return Ok(());
        }
        let (id, shape) = self.add(name, LayerKind::Flatten, &[Some(from)])?;
        self.origin.insert(id, "Flatten");
        if self.nhwc.contains(&x) {
            self.hwc_flattens.insert(self.graph.name_of(id).to_string());
        }
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    fn dense(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let b_name = node.input.get(1).cloned().unwrap_or_default();
        let gemm = node.op_type == "Gemm";
        if gemm && attr_i(node, "transA").unwrap_or(0) != 0 {
            return self.unsupported(node, "Gemm (transA)".into());
        }
        let Some((b_dims, b_vals)) = self.konst(&b_name)? else {
            let label = format!("{} (two data inputs)", node.op_type);
            return self.unsupported(node, label);
        };
        if b_dims.len() != 2 {
            let label = format!("{} ({}-D weights)", node.op_type, b_dims.len());
            return self.unsupported(node, label);
        }
        let trans_b = gemm && attr_i(node, "transB").unwrap_or(0) != 0;
        let alpha = if gemm {
            attr_f(node, "alpha").unwrap_or(1.0) as f64
        } else {
            1.0
        };
        let beta = if gemm {
            attr_f(node, "beta").unwrap_or(1.0) as f64
        } else {
            1.0
        };
        // Framework layout is [out][in].
        let (n_in, units) = if trans_b {
            (b_dims[1], b_dims[0])
        } else {
            (b_dims[0], b_dims[1])
        };
        let weight = b_vals.map(|v| {
            let mut w = vec![0.0; v.len()];
            for o in 0..units {
                for i in 0..n_in {
                    let src = if trans_b { o * n_in + i } else { i * units + o };
                    w[o * n_in + i] = alpha * v[src];
                }
            }
            w
        });
        let c = match node.input.get(2).filter(|c| !c.is_empty() && gemm) {
            Some(c) => self.konst(c)?,
            None => None,
        };
        let kind = LayerKind::Dense {
            units: positive_u32(node, "units", i64::try_from(units).unwrap_or(-1))?,
            bias: c.is_some(),
        };
        let from = self.data(&x)?.map(|(id, _)| id);
        let (id, shape) = self.add(name, kind, &[from])?;
        self.origin.insert(id, static_op(&node.op_type));
        self.store(id, "weight", vec![units, n_in], weight);
        if let Some((dims, vals)) = c {
            let n: usize = dims.iter().product();
            let vals = vals.map(|v| {
                if n == 1 {
                    vec![beta * v[0]; units]
                } else {
                    v.iter().map(|x| beta * x).collect()
                }
            });
            if n != 1 && n != units {
                self.warnings
                    .push(format!("Gemm `{name}`: bias of shape {dims:?} ignored"));
            } else {
                self.store(id, "bias", vec![units], vals);
            }
        }
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    fn single_use(&self, value: &str) -> bool {
        self.uses.get(value).copied().unwrap_or(0) <= 1
    }

    fn add_op(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let ins = present_inputs(node);
        let data: Vec<&String> = ins.iter().filter(|i| self.is_data(i)).collect();
        let consts: Vec<&String> = ins
            .iter()
            .filter(|i| matches!(self.values.get(*i), Some(Val::Const { .. })))
            .collect();
        // Bias add after a bias-free Conv or MatMul.
        if data.len() == 1 && consts.len() == 1 && ins.len() == 2 {
            let d = data[0].clone();
            let c = consts[0].clone();
            if let Some((id, shape)) = self.data(&d)?
                && self.single_use(&d)
                && let Some((dims, vals)) = self.konst(&c)?
            {
                let n: usize = dims.iter().product();
                let kind = self.graph.node(id).map(|n| n.kind.clone());
                let channel_dims = dims.iter().filter(|&&d| d != 1).count() <= 1;
                let (fits, is_conv) = match kind {
                    Some(LayerKind::Conv2d {
                        filters,
                        bias: false,
                        ..
                    }) => (
                        n == filters as usize && channel_dims && dims.len() != 1,
                        true,
                    ),
                    Some(LayerKind::Dense { units, bias: false }) => {
                        (n == units as usize && channel_dims, false)
                    }
                    _ => (false, false),
                };
                // A 1-D constant broadcasts over W in NCHW, not over channels.
                let fits = fits || (is_conv && n == 1);
                if fits {
                    if let Some(node_mut) = self.graph.node_mut(id) {
                        match &mut node_mut.kind {
                            LayerKind::Conv2d { bias, .. } | LayerKind::Dense { bias, .. } => {
                                *bias = true
                            }
                            _ => {}
                        }
                    }
                    let units = match self.graph.node(id).map(|n| &n.kind) {
                        Some(LayerKind::Conv2d { filters, .. }) => *filters as usize,
                        Some(LayerKind::Dense { units, .. }) => *units as usize,
                        _ => n,
                    };
                    let vals = vals.map(|v| if n == 1 { vec![v[0]; units] } else { v });
                    self.store(id, "bias", vec![units], vals);
                    self.set_outputs(node, Val::Data { node: id, shape });
                    return Ok(());
                }
            }
            if self.constant_affine(node, name, &d)? {
                return Ok(());
            }
            return self.unsupported(node, format!("{} (constant)", node.op_type));
        }
        if data.len() != ins.len() {
            return self.unsupported(node, format!("{} (constant)", node.op_type));
        }
        if ins.len() == 1 {
            let v = self.values.get(&ins[0]).cloned().unwrap_or(Val::Cut);
            self.set_outputs(node, v);
            return Ok(());
        }
        // Fold chains: an input that is a single-use Add absorbs the others.
        let mut sources = Vec::new();
        for i in &ins {
            sources.push((i.clone(), self.data(i)?));
        }
        let host = sources.iter().position(|(v, d)| {
            d.is_some_and(|(id, _)| self.origin.get(&id) == Some(&"Add"))
                && self.single_use(v)
                && !self.proto.output.iter().any(|o| &o.name == v)
        });
        if let Some(h) = host
            && let Some((host_id, _)) = sources[h].1
        {
            for (k, (_, d)) in sources.iter().enumerate() {
                if k == h {
                    continue;
                }
                let slot = self.graph.next_free_input(host_id).unwrap_or(0);
                if let Some((from, _)) = d {
                    self.graph
                        .connect(*from, host_id, slot)
                        .map_err(|e| InteropError::InvalidModel(e.to_string()))?;
                }
            }
            let known: Vec<(NodeId, Shape)> = self
                .graph
                .inputs_of(host_id)
                .into_iter()
                .flatten()
                .filter_map(|f| Some((f, self.shape_of(f)?)))
                .collect();
            let shape = infer::shape::output_shape(&LayerKind::Add, &known)
                .ok()
                .map(|(s, _)| s);
            // Update every alias of the host's output with the new shape.
            for v in self.values.values_mut() {
                if let Val::Data { node, shape: s } = v
                    && *node == host_id
                {
                    *s = shape;
                }
            }
            self.set_outputs(
                node,
                Val::Data {
                    node: host_id,
                    shape,
                },
            );
            return Ok(());
        }
        let froms: Vec<Option<NodeId>> = sources.iter().map(|(_, d)| d.map(|(id, _)| id)).collect();
        let (id, shape) = self.add(name, LayerKind::Add, &froms)?;
        self.origin.insert(id, "Add");
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    fn concat(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let ins = present_inputs(node);
        if ins.iter().any(|i| !self.is_data(i)) {
            return self.unsupported(node, "Concat (constant)".into());
        }
        let mut froms = Vec::new();
        let mut shape0 = None;
        for i in &ins {
            let d = self.data(i)?;
            if shape0.is_none() {
                shape0 = d.and_then(|(_, s)| s);
            }
            froms.push(d.map(|(id, _)| id));
        }
        let axis = attr_i(node, "axis").unwrap_or(1);
        let rank = match shape0 {
            Some(Shape::Volume { .. }) => 4,
            _ => 2,
        };
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis != 1 {
            return self.unsupported(node, format!("Concat (axis {axis})"));
        }
        if froms.len() == 1 {
            let v = self.values.get(&ins[0]).cloned().unwrap_or(Val::Cut);
            self.set_outputs(node, v);
            return Ok(());
        }
        let (id, shape) = self.add(name, LayerKind::Concat, &froms)?;
        self.origin.insert(id, "Concat");
        self.set_outputs(node, Val::Data { node: id, shape });
        Ok(())
    }

    /// Only NHWC → NCHW right after a graph input (as tf2onnx writes for
    /// Keras models): the input is then read as H×W×C.
    fn transpose(&mut self, node: &NodeProto) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        if attr_ints(node, "perm") == Some(&[0, 3, 1, 2])
            && let Some(Val::GraphInput(vi)) = self.values.get(&x).cloned()
        {
            let dims = static_dims_batch_free(vi).map_err(|e| {
                InteropError::InvalidModel(format!("graph input `{}`: {e}", vi.name))
            })?;
            if let [h, w, c] = dims[..] {
                let kind = LayerKind::Input {
                    height: input_u32(&vi.name, h)?,
                    width: input_u32(&vi.name, w)?,
                    channels: input_u32(&vi.name, c)?,
                };
                let (id, shape) = self.add(&vi.name, kind, &[])?;
                self.values.insert(x, Val::Data { node: id, shape });
                self.set_outputs(node, Val::Data { node: id, shape });
                return Ok(());
            }
        }
        if attr_ints(node, "perm") == Some(&[0, 2, 3, 1])
            && let Some((id, shape)) = self.data(&x)?
            && !matches!(shape, Some(Shape::Vector(_)))
        {
            // Keras-style flatten order: NHWC, then Reshape/Flatten.
            self.set_outputs(node, Val::Data { node: id, shape });
            if let Some(o) = node.output.first() {
                self.nhwc.insert(o.clone());
            }
            return Ok(());
        }
        let label = match attr_ints(node, "perm") {
            Some(p) => format!("Transpose {p:?}"),
            None => "Transpose".into(),
        };
        self.unsupported(node, label)
    }

    /// A gate vector `[N, C]` unsqueezed to `[N, C, 1, 1]` for a `Mul` with
    /// a volume (how a squeeze-and-excitation gate computed by Dense layers
    /// is written): the vector itself, which [`LayerKind::ChannelScale`]
    /// takes as its gate. Only when every reader is such a `Mul`.
    fn unsqueeze(&mut self, node: &NodeProto) -> Result<(), InteropError> {
        let axes = nchw_axes(self.axes(node)?.as_deref().unwrap_or_default());
        let x = node.input.first().cloned().unwrap_or_default();
        let out = node.output.first().cloned().unwrap_or_default();
        let to_mul = self
            .consumers
            .get(&out)
            .is_some_and(|ops| ops.iter().all(|op| *op == "Mul"));
        if to_mul
            && axes == [2, 3]
            && let Some((id, shape @ Some(Shape::Vector(_)))) = self.data(&x)?
        {
            self.set_outputs(node, Val::Data { node: id, shape });
            return Ok(());
        }
        let label = format!("Unsqueeze (axes {axes:?})");
        self.unsupported(node, label)
    }

    fn pad(&mut self, node: &NodeProto, name: &str) -> Result<(), InteropError> {
        let mode = attr_s(node, "mode").unwrap_or("constant");
        if mode != "constant" {
            return self.unsupported(node, format!("Pad ({mode})"));
        }
        let pads: Option<Vec<f64>> = if self.opset < 11 {
            attr_ints(node, "pads").map(|p| p.iter().map(|&v| v as f64).collect())
        } else {
            let p = node.input.get(1).cloned().unwrap_or_default();
            self.konst(&p)?.and_then(|(_, v)| v)
        };
        let value = if self.opset < 11 {
            attr_f(node, "value").unwrap_or(0.0) as f64
        } else {
            match node.input.get(2).filter(|v| !v.is_empty()) {
                Some(v) => self
                    .konst(v)?
                    .and_then(|(_, v)| v)
                    .and_then(|v| v.first().copied())
                    .unwrap_or(f64::NAN),
                None => 0.0,
            }
        };
        let axes_given = node.input.get(3).is_some_and(|a| !a.is_empty());
        let Some(p) = pads.filter(|p| p.len() == 8 && value == 0.0 && !axes_given) else {
            return self.unsupported(node, "Pad (not zero padding of H, W)".into());
        };
        if p[0] != 0.0 || p[1] != 0.0 || p[4] != 0.0 || p[5] != 0.0 || p.iter().any(|&v| v < 0.0) {
            return self.unsupported(node, "Pad (not zero padding of H, W)".into());
        }
        let amount = |v: f64| pad_u32(node, if v <= i64::MAX as f64 { v as i64 } else { -1 });
        let padding = [amount(p[2])?, amount(p[6])?, amount(p[3])?, amount(p[7])?];
        self.simple(node, name, LayerKind::ZeroPad2d { padding })
    }
}

/// Whether a conv's weight and bias are named as PyTorch's exporters name
/// a conv they folded a BatchNorm into: `onnx::Conv_N` for both (the legacy
/// exporter gives every folded tensor a fresh name) or `{conv}.weight` with
/// `{conv}.weight_bias` (dynamo). A conv's own bias keeps its module name
/// (`{conv}.bias`) with both.
fn folded_batchnorm(weight: &str, bias: &str) -> bool {
    let legacy = weight.starts_with("onnx::Conv_") && bias.starts_with("onnx::Conv_");
    let dynamo = !weight.is_empty() && bias.strip_suffix("_bias") == Some(weight);
    legacy || dynamo
}

/// Axes of an N×C×H×W tensor counted from 0 (ONNX allows −4…−1), sorted.
fn nchw_axes(axes: &[i64]) -> Vec<i64> {
    let mut axes: Vec<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + 4 } else { a })
        .collect();
    axes.sort_unstable();
    axes
}

/// The node's inputs that are given (ONNX marks a skipped optional one by `""`).
fn present_inputs(node: &NodeProto) -> Vec<String> {
    node.input
        .iter()
        .filter(|i| !i.is_empty())
        .cloned()
        .collect()
}

/// A constant that broadcasts over an N×C×H×W volume one value per channel
/// (dims `[1, C, 1, 1]`, `[C, 1, 1]`) or one value for all (a scalar or a
/// single value): its `channels` values. `None` for any other shape, or when
/// its values are unknown.
fn channel_constant(dims: &[usize], values: Option<Vec<f64>>, channels: usize) -> Option<Vec<f64>> {
    let values = values?;
    let n: usize = dims.iter().product();
    if n == 1 {
        return values.first().map(|&v| vec![v; channels]);
    }
    let per_channel = match dims {
        [1, c, 1, 1] | [c, 1, 1] => *c == channels,
        _ => false,
    };
    (per_channel && values.len() == channels).then_some(values)
}

/// A [`LayerKind::ChannelAffine`] of these constants, `None` when one is
/// not a finite `f32`.
fn affine_kind(scale: Vec<f64>, shift: Vec<f64>) -> Option<LayerKind> {
    let to_f32 = |v: Vec<f64>| -> Option<Vec<f32>> {
        v.into_iter()
            .map(|x| Some(x as f32).filter(|x| x.is_finite()))
            .collect()
    };
    Some(LayerKind::ChannelAffine {
        scale: to_f32(scale)?,
        shift: to_f32(shift)?,
    })
}

/// Layers whose parameter tensors are not all among the imported weights.
fn missing_weights(graph: &Graph, analysis: &infer::Analysis, weights: &Tensors) -> Vec<Deviation> {
    let mut out = Vec::new();
    for (id, node) in graph.nodes() {
        let input = analysis
            .node(id)
            .and_then(|info| info.input_shapes.first().copied().flatten());
        for (key, _) in crate::interop::param_shapes(&node.kind, input) {
            let name = format!("{}.{key}", node.name);
            if !weights.contains_key(&name) {
                out.push(Deviation {
                    node: node.name.clone(),
                    what: "weights".into(),
                    effect: format!(
                        "`{name}` is not in the model, so the layer would start from random values"
                    ),
                });
            }
        }
    }
    out
}

/// The Netloom name for a node: the module path of its weight when the
/// exporter scoped names PyTorch-style (`/layer1/layer1.0/conv1/Conv` with
/// weight `layer1.0.conv1.weight` → `layer1.0.conv1`), else the node name
/// without a leading `/`, else its first output's name.
fn layer_name(node: &NodeProto) -> String {
    let scoped = node.name.is_empty() || node.name.starts_with('/');
    if scoped
        && let Some(stem) = node
            .input
            .get(1)
            .and_then(|w| w.strip_suffix(".weight"))
            .filter(|s| !s.is_empty())
    {
        return stem.to_string();
    }
    let name = node.name.trim().trim_start_matches('/');
    if name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        name.to_string()
    }
}

fn static_op(op: &str) -> &'static str {
    match op {
        "Relu" => "Relu",
        "Sigmoid" => "Sigmoid",
        "Tanh" => "Tanh",
        "LeakyRelu" => "LeakyRelu",
        "Softmax" => "Softmax",
        "Dropout" => "Dropout",
        "GlobalAveragePool" => "GlobalAveragePool",
        "MaxPool" => "MaxPool",
        "AveragePool" => "AveragePool",
        "Gemm" => "Gemm",
        "MatMul" => "MatMul",
        "Pad" => "Pad",
        _ => "other",
    }
}

/// Dims of a stored tensor: non-negative, with a product Netloom can hold
/// (so every later product of them is safe).
fn to_dims(dims: &[i64]) -> Result<Vec<usize>, String> {
    let dims: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    checked_product(&dims)
        .ok_or_else(|| format!("dims {dims:?} hold more values than Netloom can represent"))?;
    Ok(dims)
}

/// The product of `dims` when it is at most [`infer::shape::MAX_ELEMENTS`].
fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n as u64 <= infer::shape::MAX_ELEMENTS)
}

/// All dims of a typed value, which must be static.
fn static_dims(vi: &ValueInfoProto) -> Result<Vec<usize>, String> {
    let shape = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .ok_or("it has no tensor shape")?;
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(DimValue::DimValue(v)) if *v >= 0 => Ok(*v as usize),
            Some(DimValue::DimParam(p)) => Err(format!("dimension `{p}` is symbolic")),
            _ => Err("a dimension is unknown".to_string()),
        })
        .collect::<Result<Vec<usize>, String>>()
        .and_then(|dims| {
            checked_product(&dims)
                .map(|_| dims.clone())
                .ok_or_else(|| format!("dims {dims:?} hold more values than Netloom can represent"))
        })
}

/// Dims of a graph input without its leading batch dimension, which may be symbolic.
fn static_dims_batch_free(vi: &ValueInfoProto) -> Result<Vec<usize>, String> {
    let shape = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .ok_or("it has no tensor shape")?;
    let elem = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .map_or(0, |t| t.elem_type);
    // Strings and booleans are not images; any numeric type is (uint8 pixels too).
    if elem == 8 || elem == 9 {
        return Err(format!("element type {elem} is not numeric"));
    }
    let rest = shape.dim.get(1..).unwrap_or_default();
    if shape.dim.len() < 2 {
        return Err(format!(
            "rank {} has no batch and feature axes",
            shape.dim.len()
        ));
    }
    rest.iter()
        .map(|d| match &d.value {
            Some(DimValue::DimValue(v)) if *v > 0 => Ok(*v as usize),
            Some(DimValue::DimParam(p)) => Err(format!(
                "dimension `{p}` is symbolic; Netloom needs fixed image sizes"
            )),
            _ => Err("a dimension is unknown or zero".to_string()),
        })
        .collect()
}

/// The bytes of one value of an ONNX data type stored as raw data.
fn element_size(data_type: i32) -> Option<usize> {
    match data_type {
        data_type::FLOAT | data_type::INT32 => Some(4),
        data_type::DOUBLE | data_type::INT64 => Some(8),
        data_type::FLOAT16 => Some(2),
        _ => None,
    }
}

/// The values of a tensor as f64, from the model file or its external data.
fn decode_tensor(
    t: &TensorProto,
    dims: &[usize],
    external: &ExternalData,
) -> Result<Vec<f64>, InteropError> {
    let n = element_count(&t.name, dims)?;
    let stored_outside;
    let raw: &[u8] = if is_external(t) {
        let Some(size) = element_size(t.data_type) else {
            return Err(InteropError::InvalidModel(format!(
                "tensor `{}` has data type {}, which Netloom does not read",
                t.name, t.data_type
            )));
        };
        let len = n.checked_mul(size).ok_or_else(|| {
            InteropError::InvalidModel(format!("tensor `{}` is too large to read", t.name))
        })?;
        stored_outside = external.read(t, len)?;
        &stored_outside
    } else {
        &t.raw_data
    };
    let bad = |what: &str| {
        InteropError::InvalidModel(format!(
            "tensor `{}`: dims {dims:?} need {n} values but {what}",
            t.name
        ))
    };
    let values: Vec<f64> = match t.data_type {
        data_type::FLOAT if !raw.is_empty() => {
            if raw.len() != 4 * n {
                return Err(bad(&format!("raw data has {} bytes", raw.len())));
            }
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect()
        }
        data_type::FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
        data_type::DOUBLE if !raw.is_empty() => {
            if raw.len() != 8 * n {
                return Err(bad(&format!("raw data has {} bytes", raw.len())));
            }
            raw.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        }
        data_type::DOUBLE => t.double_data.clone(),
        data_type::FLOAT16 if !raw.is_empty() => {
            if raw.len() != 2 * n {
                return Err(bad(&format!("raw data has {} bytes", raw.len())));
            }
            raw.chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64)
                .collect()
        }
        data_type::FLOAT16 => t
            .int32_data
            .iter()
            .map(|&v| f16_to_f32(v as u16) as f64)
            .collect(),
        data_type::INT64 if !raw.is_empty() => {
            if raw.len() != 8 * n {
                return Err(bad(&format!("raw data has {} bytes", raw.len())));
            }
            raw.chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                })
                .collect()
        }
        data_type::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        data_type::INT32 if !raw.is_empty() => {
            if raw.len() != 4 * n {
                return Err(bad(&format!("raw data has {} bytes", raw.len())));
            }
            raw.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect()
        }
        data_type::INT32 => t.int32_data.iter().map(|&v| v as f64).collect(),
        other => {
            return Err(InteropError::InvalidModel(format!(
                "tensor `{}` has data type {other}, which Netloom does not read",
                t.name
            )));
        }
    };
    if values.len() != n {
        return Err(bad(&format!("it holds {}", values.len())));
    }
    Ok(values)
}

/// IEEE half → single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign << 31,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            (sign << 31) | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => (sign << 31) | (0xff << 23) | (f << 13),
        (e, f) => (sign << 31) | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}
