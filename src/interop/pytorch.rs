//! PyTorch code export: a readable `nn.Module` with the design's layers and
//! wiring (its `forward` returns logits), and a state dict whose keys and
//! layouts that module loads directly.
//!
//! Layer names become attribute names (sanitised into Python identifiers),
//! so `conv1.weight` in Netloom is `conv1.weight` in PyTorch too. Flattened
//! vectors are in PyTorch's C·H·W order; [`state_dict`] permutes the weights
//! that index them (see [`super`]).

use super::{InteropError, Tensors, design_errors, param_shapes, to_framework};
use crate::graph::{Graph, LayerKind, NodeId};
use crate::infer::{self, Analysis, Shape};
use crate::train::weights::WeightsMeta;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// `CLASSES`, `MEAN`, `STD`, `INPUT_SHAPE` and `preprocess` (placeholders
/// `@…@` filled per design).
const PREPROCESS_PY: &str = include_str!("pytorch/preprocess.py");

/// Names a generated module may not use as attributes or locals.
const RESERVED: &[&str] = &[
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "self",
    "torch",
    "nn",
    "F",
    "training",
    "forward",
    "modules",
    "parameters",
    "buffers",
    "children",
    "state_dict",
    "load_state_dict",
    "eval",
    "train",
    "to",
    "cuda",
    "cpu",
    "apply",
    "half",
    "float",
    "double",
    "type",
    "zero_grad",
    "add_module",
    "register_buffer",
    "register_parameter",
    "extra_repr",
    "requires_grad_",
    "dump_patches",
    "call_super_init",
    "get_submodule",
    "get_parameter",
    "get_buffer",
    "share_memory",
];

/// A Python identifier for every node, unique within the design.
pub fn identifiers(graph: &Graph) -> HashMap<NodeId, String> {
    let order = graph
        .topological_order()
        .unwrap_or_else(|_| graph.node_ids().collect());
    let mut used: HashSet<String> = HashSet::new();
    let mut out = HashMap::new();
    for id in order {
        let raw = graph.name_of(id);
        let mut s: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
            s = format!("layer_{s}");
        }
        if RESERVED.contains(&s.as_str()) || s.starts_with("__") {
            s.push('_');
        }
        let mut candidate = s.clone();
        let mut k = 2;
        while used.contains(&candidate) {
            candidate = format!("{s}_{k}");
            k += 1;
        }
        used.insert(candidate.clone());
        out.insert(id, candidate);
    }
    out
}

/// The generated module's class name.
pub(crate) fn class_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "Net");
    }
    out
}

fn py_float(v: f64) -> String {
    py_float_text(format!("{v}"))
}

/// A float's text made a Python float literal (`2` → `2.0`).
fn py_float_text(s: String) -> String {
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// An `f32` as the shortest Python literal that reads back as it.
fn py_f32(v: f32) -> String {
    py_float_text(format!("{v}"))
}

fn pair(a: u64, b: u64) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

/// How the generated module's docstring says to load trained weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightsDoc {
    /// Through the state dict `netloom export --pytorch --weights W
    /// --state-dict SD` writes (Netloom's own files are in Netloom layouts).
    #[default]
    StateDict,
    /// Netloom weights files directly, through a PyTorch project's
    /// `load_netloom_weights` (see [`super::pytorch_project`]).
    NetloomFile,
}

/// What [`module_source_with`] writes besides the layers.
#[derive(Clone, Copy, Debug)]
pub struct ModuleOptions<'a> {
    /// `forward` returns logits: a Softmax or Sigmoid that is the design's
    /// only output moves to a `predict_proba` method (for
    /// `CrossEntropyLoss` and friends). Otherwise `forward` returns what
    /// the design outputs.
    pub logits: bool,
    /// The run's class names and input normalisation (from its weights
    /// file), written as `CLASSES`, `MEAN`, `STD` beside `preprocess`.
    pub meta: Option<&'a WeightsMeta>,
    pub weights_doc: WeightsDoc,
    /// More module-level Python, placed after `preprocess` (a project's loader).
    pub helpers: &'a str,
}

impl Default for ModuleOptions<'_> {
    fn default() -> Self {
        ModuleOptions {
            logits: true,
            meta: None,
            weights_doc: WeightsDoc::StateDict,
            helpers: "",
        }
    }
}

/// Python source of an `nn.Module` equivalent to `graph` (NCHW tensors)
/// whose `forward` returns logits (`predict_proba` applies the design's final
/// Softmax or Sigmoid), with `preprocess` and the normalisation constants.
pub fn module_source(graph: &Graph) -> Result<String, InteropError> {
    module_source_with(graph, &ModuleOptions::default())
}

/// [`module_source`]; the name says what `forward` returns.
pub fn module_source_logits(graph: &Graph) -> Result<String, InteropError> {
    module_source(graph)
}

/// [`module_source`] whose `forward` returns what the design outputs
/// (probabilities when it ends in Softmax or Sigmoid).
pub fn module_source_probabilities(graph: &Graph) -> Result<String, InteropError> {
    module_source_with(
        graph,
        &ModuleOptions {
            logits: false,
            ..ModuleOptions::default()
        },
    )
}

/// The only output of `graph` when it is a Softmax or Sigmoid: its id and the
/// torch expression that turns logits `x` into probabilities.
pub fn final_activation(graph: &Graph) -> Option<(NodeId, &'static str)> {
    let [out] = graph.outputs()[..] else {
        return None;
    };
    match graph.node(out)?.kind {
        LayerKind::Softmax => Some((out, "torch.softmax(x, dim=1)")),
        LayerKind::Sigmoid => Some((out, "torch.sigmoid(x)")),
        _ => None,
    }
}

/// The module's source: the design's layers become `__init__` modules and
/// `forward` lines, then the docstring, the class, the helpers and a
/// `__main__` block are written around them.
pub fn module_source_with(graph: &Graph, options: &ModuleOptions) -> Result<String, InteropError> {
    let analysis = infer::analyze(graph);
    if let Some(errors) = design_errors(graph, &analysis) {
        return Err(InteropError::Design(errors));
    }
    let held_back = final_activation(graph).filter(|_| options.logits);
    let body = module_body(graph, &analysis, held_back.map(|(id, _)| id));
    let class = class_name(&graph.name);
    let mut src = docstring(graph, &class, &body, held_back.is_some(), options);
    src.push_str(IMPORTS);
    src.push_str(&class_definition(&class, &body, held_back.map(|(_, p)| p)));
    src.push_str(&preprocess_helpers(graph, options.meta));
    if !options.helpers.is_empty() {
        src.push_str("\n\n");
        src.push_str(options.helpers);
    }
    src.push_str(&main_block(graph, &class));
    Ok(src)
}

const IMPORTS: &str = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n";

/// The class's insides: `__init__` lines, `forward` lines, its arguments
/// (one per Input layer), their docs, and what `forward` returns.
struct ModuleBody {
    init: String,
    forward: String,
    args: Vec<String>,
    input_doc: Vec<String>,
    ret: String,
}

/// Every layer of `graph`, in order, as its modules and its `forward` line.
/// `held_back` (the final activation moved to `predict_proba`) passes its
/// input through.
fn module_body(graph: &Graph, analysis: &Analysis, held_back: Option<NodeId>) -> ModuleBody {
    let ids = identifiers(graph);
    let ident = |id: NodeId| ids.get(&id).cloned().unwrap_or_else(|| "x".into());
    let mut body = ModuleBody {
        init: String::new(),
        forward: String::new(),
        args: Vec::new(),
        input_doc: Vec::new(),
        ret: String::new(),
    };
    for &id in &analysis.order {
        let (Some(node), Some(info)) = (graph.node(id), analysis.node(id)) else {
            continue;
        };
        let me = ident(id);
        let ins: Vec<String> = graph
            .inputs_of(id)
            .into_iter()
            .flatten()
            .map(ident)
            .collect();
        let mut code = LayerCode::new(&me);
        if held_back == Some(id) {
            code.line(ins.first().cloned().unwrap_or_default());
        } else if let LayerKind::Input {
            height,
            width,
            channels,
        } = node.kind
        {
            body.args.push(me.clone());
            body.input_doc
                .push(format!("`{me}`: [N, {channels}, {height}, {width}]"));
        } else {
            layer_code(&mut code, &node.kind, info, &ins);
        }
        body.init.push_str(&code.pad_init);
        body.init.push_str(&code.init);
        body.forward.push_str(&code.forward);
    }
    let outputs: Vec<String> = graph.outputs().into_iter().map(ident).collect();
    body.ret = match outputs.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    body
}

/// One layer's Python: pad modules (first), its own modules, its `forward` line.
struct LayerCode<'a> {
    me: &'a str,
    pad_init: String,
    init: String,
    forward: String,
}

impl<'a> LayerCode<'a> {
    fn new(me: &'a str) -> Self {
        LayerCode {
            me,
            pad_init: String::new(),
            init: String::new(),
            forward: String::new(),
        }
    }

    /// `self.{me} = {text}` in `__init__`.
    fn module(&mut self, text: String) {
        let _ = writeln!(self.init, "        self.{} = {text}", self.me);
    }

    /// `self.{me}_pad = {text}` in `__init__`, before the layer's own modules.
    fn pad(&mut self, text: String) {
        let _ = writeln!(self.pad_init, "        self.{}_pad = {text}", self.me);
    }

    /// `{me} = {text}` in `forward`.
    fn line(&mut self, text: String) {
        let _ = writeln!(self.forward, "        {} = {text}", self.me);
    }
}

/// A window's padding: whether it is symmetric, and `[top, bottom, left, right]`.
fn window_pads(info: &infer::NodeInfo) -> (bool, [u64; 4]) {
    match info.window {
        Some([ah, aw]) => (
            ah.pad_before == ah.pad_after && aw.pad_before == aw.pad_after,
            [ah.pad_before, ah.pad_after, aw.pad_before, aw.pad_after],
        ),
        None => (true, [0; 4]),
    }
}

/// The Python of one layer that is not an Input (the per-kind rule).
fn layer_code(code: &mut LayerCode, kind: &LayerKind, info: &infer::NodeInfo, ins: &[String]) {
    let x = ins.first().cloned().unwrap_or_default();
    let in_shape = info.input_shapes.first().copied().flatten();
    let cin = in_shape.map_or(0, |s| s.channels());
    let me = code.me;
    match kind {
        LayerKind::Input { .. } => {}
        LayerKind::Conv2d { .. } => conv_code(code, kind, info, cin, &x),
        LayerKind::ZeroPad2d {
            padding: [t, b, l, r],
        } => {
            code.module(format!("nn.ZeroPad2d(({l}, {r}, {t}, {b}))"));
            code.line(format!("self.{me}({x})"));
        }
        LayerKind::MaxPool2d { .. } | LayerKind::AvgPool2d { .. } => {
            pool_code(code, kind, info, &x)
        }
        LayerKind::GlobalAvgPool => {
            code.line(format!("torch.flatten(F.adaptive_avg_pool2d({x}, 1), 1)"));
        }
        LayerKind::BatchNorm { epsilon, momentum } => {
            let dim = if matches!(in_shape, Some(Shape::Vector(_))) {
                "1d"
            } else {
                "2d"
            };
            code.module(format!(
                "nn.BatchNorm{dim}({cin}, eps={}, momentum={})",
                py_float(*epsilon),
                py_float(((1.0 - momentum) * 1e9).round() / 1e9)
            ));
            code.line(format!("self.{me}({x})"));
        }
        LayerKind::Relu => code.line(format!("F.relu({x})")),
        LayerKind::LeakyRelu { alpha } => {
            code.line(format!("F.leaky_relu({x}, {})", py_float(*alpha)))
        }
        LayerKind::Sigmoid => code.line(format!("torch.sigmoid({x})")),
        LayerKind::Tanh => code.line(format!("torch.tanh({x})")),
        LayerKind::Relu6 => code.line(format!("F.relu6({x})")),
        LayerKind::HardSigmoid => code.line(format!("F.hardsigmoid({x})")),
        LayerKind::HardSwish => code.line(format!("F.hardswish({x})")),
        LayerKind::Silu => code.line(format!("F.silu({x})")),
        LayerKind::Softmax => code.line(format!("torch.softmax({x}, dim=1)")),
        LayerKind::Dropout { rate } => {
            code.module(format!("nn.Dropout(p={})", py_float(*rate)));
            code.line(format!("self.{me}({x})"));
        }
        LayerKind::Flatten => code.line(format!("torch.flatten({x}, 1)")),
        LayerKind::Dense { units, bias } => {
            let n = in_shape.map_or(0, |s| s.elements());
            let b = if *bias { "" } else { ", bias=False" };
            code.module(format!("nn.Linear({n}, {units}{b})"));
            code.line(format!("self.{me}({x})"));
        }
        LayerKind::Add => code.line(ins.join(" + ")),
        LayerKind::ChannelScale => {
            let gate = ins.get(1).cloned().unwrap_or_default();
            match info.input_shapes.get(1).copied().flatten() {
                Some(Shape::Vector(_)) => code.line(format!("{x} * {gate}[:, :, None, None]")),
                _ => code.line(format!("{x} * {gate}")),
            }
        }
        LayerKind::ChannelAffine { scale, shift } => {
            // Buffers that are not saved: constants of the module, as
            // torchvision's `transform_input`, so the state dict (and its
            // strict loading) holds the trained tensors only.
            let c = scale.len();
            for (what, values) in [("scale", scale), ("shift", shift)] {
                let list: Vec<String> = values.iter().map(|&v| py_f32(v)).collect();
                let _ = writeln!(
                    code.init,
                    "        self.register_buffer(\"{me}_{what}\", torch.tensor([{}]).view(1, {c}, 1, 1), persistent=False)",
                    list.join(", ")
                );
            }
            code.line(format!("{x} * self.{me}_scale + self.{me}_shift"));
        }
        LayerKind::Concat => code.line(format!("torch.cat([{}], dim=1)", ins.join(", "))),
    }
}

/// A convolution: symmetric padding goes into `nn.Conv2d`, asymmetric
/// padding becomes a `ZeroPad2d` before it.
fn conv_code(code: &mut LayerCode, kind: &LayerKind, info: &infer::NodeInfo, cin: u64, x: &str) {
    let LayerKind::Conv2d {
        filters,
        kernel,
        stride,
        groups,
        bias,
        dilation,
        ..
    } = kind
    else {
        return;
    };
    let me = code.me;
    let (sym, pads) = window_pads(info);
    let [pt, pb, pl, pr] = pads;
    let k = pair(kernel[0] as u64, kernel[1] as u64);
    let s = pair(stride[0] as u64, stride[1] as u64);
    let mut extra = String::new();
    if *dilation != [1, 1] {
        let d = pair(dilation[0] as u64, dilation[1] as u64);
        let _ = write!(extra, ", dilation={d}");
    }
    if *groups != 1 {
        let _ = write!(extra, ", groups={groups}");
    }
    if !bias {
        extra.push_str(", bias=False");
    }
    if sym {
        let p = if pads == [0; 4] {
            String::new()
        } else {
            format!(", padding={}", pair(pt, pl))
        };
        code.module(format!(
            "nn.Conv2d({cin}, {filters}, kernel_size={k}, stride={s}{p}{extra})"
        ));
        code.line(format!("self.{me}({x})"));
    } else {
        code.pad(format!("nn.ZeroPad2d(({pl}, {pr}, {pt}, {pb}))"));
        code.module(format!(
            "nn.Conv2d({cin}, {filters}, kernel_size={k}, stride={s}{extra})"
        ));
        code.line(format!("self.{me}(self.{me}_pad({x}))"));
    }
}

/// A max or average pool: padding PyTorch's pool accepts goes into it;
/// other padding becomes a `ConstantPad2d` before it (−∞ for max, 0 for
/// average, then divided by the in-bounds count unless the pool includes
/// its padding, as Netloom computes it).
fn pool_code(code: &mut LayerCode, kind: &LayerKind, info: &infer::NodeInfo, x: &str) {
    let (LayerKind::MaxPool2d {
        kernel,
        stride,
        ceil_mode,
        ..
    }
    | LayerKind::AvgPool2d {
        kernel,
        stride,
        ceil_mode,
        ..
    }) = kind
    else {
        return;
    };
    let me = code.me;
    let (sym, pads) = window_pads(info);
    let [pt, pb, pl, pr] = pads;
    let max = matches!(kind, LayerKind::MaxPool2d { .. });
    let k = pair(kernel[0] as u64, kernel[1] as u64);
    let s = pair(stride[0] as u64, stride[1] as u64);
    let ceil = if *ceil_mode { ", ceil_mode=True" } else { "" };
    // An average pool divides by the in-bounds count unless it includes the
    // padding (PyTorch's default).
    let include = matches!(
        kind,
        LayerKind::AvgPool2d {
            include_padding: true,
            ..
        }
    );
    let exclude = if !max && !include && pads != [0; 4] {
        ", count_include_pad=False"
    } else {
        ""
    };
    let fits = sym && 2 * pt <= kernel[0] as u64 && 2 * pl <= kernel[1] as u64;
    let op = if max { "MaxPool2d" } else { "AvgPool2d" };
    if fits {
        let p = if pads == [0; 4] {
            String::new()
        } else {
            format!(", padding={}", pair(pt, pl))
        };
        code.module(format!("nn.{op}({k}, stride={s}{p}{ceil}{exclude})"));
        code.line(format!("self.{me}({x})"));
    } else {
        let fill = if max { "float(\"-inf\")" } else { "0.0" };
        code.pad(format!(
            "nn.ConstantPad2d(({pl}, {pr}, {pt}, {pb}), {fill})"
        ));
        code.module(format!("nn.{op}({k}, stride={s}{ceil})"));
        if max || include {
            code.line(format!("self.{me}(self.{me}_pad({x}))"));
        } else {
            // Divide by the in-bounds count, as Netloom does.
            code.line(format!(
                "self.{me}(self.{me}_pad({x})) / self.{me}(self.{me}_pad(torch.ones_like({x}[:, :1])))"
            ));
        }
    }
}

/// The module docstring: what the file is, its inputs, what `forward`
/// returns, and how trained weights load (truthfully for `options`).
fn docstring(
    graph: &Graph,
    class: &str,
    body: &ModuleBody,
    logits: bool,
    options: &ModuleOptions,
) -> String {
    let mut src = String::new();
    let _ = writeln!(
        src,
        "\"\"\"{} — generated by Netloom: the design's layers and wiring as a PyTorch module.",
        graph.name
    );
    let _ = writeln!(src);
    let _ = writeln!(src, "Inputs (NCHW): {}.", body.input_doc.join(", "));
    if logits {
        let _ = writeln!(
            src,
            "`forward` returns logits (for `nn.CrossEntropyLoss`); `predict_proba` applies the"
        );
        let _ = writeln!(src, "design's final activation.");
    }
    let _ = writeln!(
        src,
        "Inputs are normalised per channel with MEAN and STD first (`preprocess(images)` does it)."
    );
    let _ = writeln!(src);
    match options.weights_doc {
        WeightsDoc::StateDict => {
            let _ = writeln!(
                src,
                "Netloom weights files (`netloom train --save`) hold Netloom's tensor layouts and do"
            );
            let _ = writeln!(
                src,
                "not load here as they are; convert one to this module's state dict (flattened"
            );
            let _ = writeln!(src, "features are in C·H·W order) with");
            let _ = writeln!(
                src,
                "    netloom export DESIGN.json --pytorch --weights W.safetensors --state-dict state_dict.safetensors"
            );
            let _ = writeln!(src, "and load that:");
            let _ = writeln!(src, "    from safetensors.torch import load_file");
            let _ = writeln!(
                src,
                "    model = {class}(); model.load_state_dict(load_file(\"state_dict.safetensors\"))"
            );
        }
        WeightsDoc::NetloomFile => {
            let _ = writeln!(
                src,
                "Netloom weights files (train.py's output, `netloom train --save`) load with"
            );
            let _ = writeln!(src, "    from model import load_netloom_weights");
            let _ = writeln!(
                src,
                "    model, meta = load_netloom_weights(\"weights.safetensors\")"
            );
        }
    }
    let _ = writeln!(src, "\"\"\"");
    let _ = writeln!(src);
    src
}

/// `class …(nn.Module)` with `__init__`, `forward` and, when the final
/// activation was held back, `predict_proba` applying `proba`.
fn class_definition(class: &str, body: &ModuleBody, proba: Option<&str>) -> String {
    let args = body.args.join(", ");
    let mut src = String::new();
    let _ = writeln!(src, "class {class}(nn.Module):");
    let _ = writeln!(src, "    def __init__(self):");
    let _ = writeln!(src, "        super().__init__()");
    src.push_str(&body.init);
    let _ = writeln!(src);
    let _ = writeln!(src, "    def forward(self, {args}):");
    src.push_str(&body.forward);
    let _ = writeln!(src, "        return {}", body.ret);
    if let Some(proba) = proba {
        let _ = writeln!(src);
        let _ = writeln!(src, "    def predict_proba(self, {args}):");
        let _ = writeln!(
            src,
            "        \"\"\"Probabilities: `forward` returns logits.\"\"\""
        );
        let _ = writeln!(src, "        x = self.forward({args})");
        let _ = writeln!(src, "        return {proba}");
    }
    src
}

/// `CLASSES`, `MEAN`, `STD`, `INPUT_SHAPE` (from `meta` when it fits the
/// design's input, else `None`) and `preprocess`, for a design with one
/// Input layer; nothing otherwise.
fn preprocess_helpers(graph: &Graph, meta: Option<&WeightsMeta>) -> String {
    let inputs = graph.input_nodes();
    let [input] = inputs[..] else {
        return String::new();
    };
    let Some(LayerKind::Input {
        height,
        width,
        channels,
    }) = graph.node(input).map(|n| n.kind.clone())
    else {
        return String::new();
    };
    let stats = normalisation(meta, channels);
    let classes = meta.map(|m| m.classes.as_slice()).filter(|c| !c.is_empty());
    let text = PREPROCESS_PY
        .replace("@CLASSES@", &py_list(classes, true))
        .replace("@MEAN@", &py_list(stats.map(|(m, _)| m), false))
        .replace("@STD@", &py_list(stats.map(|(_, s)| s), false))
        .replace("@CHANNELS@", &channels.to_string())
        .replace("@HEIGHT@", &height.to_string())
        .replace("@WIDTH@", &width.to_string());
    format!("\n\n{text}")
}

/// The per-channel mean and standard deviation of `meta`, when it has one
/// of each per input channel.
pub(crate) fn normalisation(meta: Option<&WeightsMeta>, channels: u32) -> Option<(&[f32], &[f32])> {
    let m = meta?;
    (m.mean.len() == channels as usize && m.std.len() == channels as usize)
        .then_some((m.mean.as_slice(), m.std.as_slice()))
}

/// Python list literal of `items` (strings quoted as JSON), or `None`.
pub(crate) fn py_list<T: std::fmt::Display>(items: Option<&[T]>, quote: bool) -> String {
    match items {
        None => "None".into(),
        Some(v) => {
            let parts: Vec<String> = v
                .iter()
                .map(|x| {
                    if quote {
                        serde_json::to_string(&x.to_string()).unwrap_or_default()
                    } else {
                        format!("{x}")
                    }
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// `if __name__ == "__main__":` building the module and running zeros through it.
fn main_block(graph: &Graph, class: &str) -> String {
    let mut src = String::new();
    let _ = writeln!(src);
    let _ = writeln!(src);
    let _ = writeln!(src, "if __name__ == \"__main__\":");
    let _ = writeln!(src, "    model = {class}()");
    let dummies: Vec<String> = graph
        .input_nodes()
        .into_iter()
        .filter_map(|id| match graph.node(id)?.kind {
            LayerKind::Input {
                height,
                width,
                channels,
            } => Some(format!("torch.zeros(1, {channels}, {height}, {width})")),
            _ => None,
        })
        .collect();
    let _ = writeln!(src, "    out = model({})", dummies.join(", "));
    let _ = writeln!(
        src,
        "    print(sum(p.numel() for p in model.parameters()), \"parameters\")"
    );
    src
}

/// The weights as a PyTorch state dict for the module of [`module_source`]:
/// keys `{attr}.weight`/`.bias` (conv, linear; BatchNorm γ/β), BatchNorm
/// `.running_mean`/`.running_var`/`.num_batches_tracked`, in PyTorch layouts.
/// Tensors of layers the design does not have are dropped.
pub fn state_dict(graph: &Graph, tensors: &Tensors) -> Result<Tensors, InteropError> {
    let analysis = infer::analyze(graph);
    if let Some(errors) = design_errors(graph, &analysis) {
        return Err(InteropError::Design(errors));
    }
    let framework = to_framework(graph, &analysis, tensors)?;
    let ids = identifiers(graph);
    let mut out = Tensors::new();
    let mut missing = Vec::new();
    for (id, node) in graph.nodes() {
        let Some(ident) = ids.get(&id) else { continue };
        let input = analysis
            .node(id)
            .and_then(|i| i.input_shapes.first().copied().flatten());
        for (key, _) in param_shapes(&node.kind, input) {
            let name = format!("{}.{key}", node.name);
            let Some(t) = framework.get(&name) else {
                missing.push(name);
                continue;
            };
            let torch_key = match key {
                "gamma" => "weight",
                "beta" => "bias",
                other => other,
            };
            out.insert(format!("{ident}.{torch_key}"), t.clone());
        }
        if matches!(node.kind, LayerKind::BatchNorm { .. })
            && out.contains_key(&format!("{ident}.running_mean"))
        {
            out.insert(format!("{ident}.num_batches_tracked"), (vec![], vec![0.0]));
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
        return Err(InteropError::Weights(format!(
            "{} tensors of the design are not in the weights file, so the state dict would be partial: {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )));
    }
    Ok(out)
}
