//! PyTorch code export: a readable `nn.Module` with the design's layers and
//! wiring, and a state dict whose keys and layouts that module loads directly.
//!
//! Layer names become attribute names (sanitised into Python identifiers),
//! so `conv1.weight` in Netloom is `conv1.weight` in PyTorch too. Flattened
//! vectors are in PyTorch's C·H·W order; [`state_dict`] permutes the weights
//! that index them (see [`super`]).

use super::{InteropError, Tensors, design_errors, param_shapes, to_framework};
use crate::graph::{Graph, LayerKind, NodeId};
use crate::infer::{self, Shape};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

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

fn class_name(name: &str) -> String {
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
    let s = format!("{v}");
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

fn pair(a: u64, b: u64) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

/// Python source of an `nn.Module` equivalent to `graph` (NCHW tensors).
pub fn module_source(graph: &Graph) -> Result<String, InteropError> {
    module_source_with(graph, false)
}

/// [`module_source`] whose `forward` returns logits: a Softmax or Sigmoid
/// that is the design's only output is left out of `forward` and applied by
/// a `predict_proba` method instead (for `CrossEntropyLoss` and friends).
pub fn module_source_logits(graph: &Graph) -> Result<String, InteropError> {
    module_source_with(graph, true)
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

fn module_source_with(graph: &Graph, logits: bool) -> Result<String, InteropError> {
    let held_back = final_activation(graph).filter(|_| logits);
    let analysis = infer::analyze(graph);
    if let Some(errors) = design_errors(graph, &analysis) {
        return Err(InteropError::Design(errors));
    }
    let ids = identifiers(graph);
    let ident = |id: NodeId| ids.get(&id).cloned().unwrap_or_else(|| "x".into());
    let class = class_name(&graph.name);
    let mut init = String::new();
    let mut forward = String::new();
    let mut args = Vec::new();
    let mut input_doc = Vec::new();
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
        let x = ins.first().cloned().unwrap_or_default();
        let in_shape = info.input_shapes.first().copied().flatten();
        let cin = in_shape.map_or(0, |s| s.channels());
        let mut pad_init = String::new();
        let mut own_init = String::new();
        let mut module = |text: String| {
            let _ = writeln!(own_init, "        self.{me} = {text}");
        };
        let mut line = |text: String| {
            let _ = writeln!(forward, "        {me} = {text}");
        };
        // Symmetric padding goes into the layer; asymmetric padding becomes a pad module.
        let window = info.window;
        let (sym, pads) = match window {
            Some([ah, aw]) => (
                ah.pad_before == ah.pad_after && aw.pad_before == aw.pad_after,
                [ah.pad_before, ah.pad_after, aw.pad_before, aw.pad_after],
            ),
            None => (true, [0; 4]),
        };
        let [pt, pb, pl, pr] = pads;
        match &node.kind {
            _ if held_back.is_some_and(|(out, _)| out == id) => line(x.clone()),
            LayerKind::Input {
                height,
                width,
                channels,
            } => {
                args.push(me.clone());
                input_doc.push(format!("`{me}`: [N, {channels}, {height}, {width}]"));
            }
            LayerKind::Conv2d {
                filters,
                kernel,
                stride,
                groups,
                bias,
                dilation,
                ..
            } => {
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
                    module(format!(
                        "nn.Conv2d({cin}, {filters}, kernel_size={k}, stride={s}{p}{extra})"
                    ));
                    line(format!("self.{me}({x})"));
                } else {
                    let _ = writeln!(
                        pad_init,
                        "        self.{me}_pad = nn.ZeroPad2d(({pl}, {pr}, {pt}, {pb}))"
                    );
                    module(format!(
                        "nn.Conv2d({cin}, {filters}, kernel_size={k}, stride={s}{extra})"
                    ));
                    line(format!("self.{me}(self.{me}_pad({x}))"));
                }
            }
            LayerKind::ZeroPad2d {
                padding: [t, b, l, r],
            } => {
                module(format!("nn.ZeroPad2d(({l}, {r}, {t}, {b}))"));
                line(format!("self.{me}({x})"));
            }
            LayerKind::MaxPool2d {
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
            } => {
                let max = matches!(node.kind, LayerKind::MaxPool2d { .. });
                let k = pair(kernel[0] as u64, kernel[1] as u64);
                let s = pair(stride[0] as u64, stride[1] as u64);
                let ceil = if *ceil_mode { ", ceil_mode=True" } else { "" };
                // An average pool divides by the in-bounds count unless it
                // includes the padding (PyTorch's default).
                let include = matches!(
                    node.kind,
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
                    module(format!("nn.{op}({k}, stride={s}{p}{ceil}{exclude})"));
                    line(format!("self.{me}({x})"));
                } else {
                    let fill = if max { "float(\"-inf\")" } else { "0.0" };
                    let _ = writeln!(
                        pad_init,
                        "        self.{me}_pad = nn.ConstantPad2d(({pl}, {pr}, {pt}, {pb}), {fill})"
                    );
                    module(format!("nn.{op}({k}, stride={s}{ceil})"));
                    if max || include {
                        line(format!("self.{me}(self.{me}_pad({x}))"));
                    } else {
                        // Divide by the in-bounds count, as Netloom does.
                        line(format!(
                            "self.{me}(self.{me}_pad({x})) / self.{me}(self.{me}_pad(torch.ones_like({x}[:, :1])))"
                        ));
                    }
                }
            }
            LayerKind::GlobalAvgPool => {
                line(format!("torch.flatten(F.adaptive_avg_pool2d({x}, 1), 1)"));
            }
            LayerKind::BatchNorm { epsilon, momentum } => {
                let dim = if matches!(in_shape, Some(Shape::Vector(_))) {
                    "1d"
                } else {
                    "2d"
                };
                module(format!(
                    "nn.BatchNorm{dim}({cin}, eps={}, momentum={})",
                    py_float(*epsilon),
                    py_float(((1.0 - momentum) * 1e9).round() / 1e9)
                ));
                line(format!("self.{me}({x})"));
            }
            LayerKind::Relu => line(format!("F.relu({x})")),
            LayerKind::LeakyRelu { alpha } => {
                line(format!("F.leaky_relu({x}, {})", py_float(*alpha)))
            }
            LayerKind::Sigmoid => line(format!("torch.sigmoid({x})")),
            LayerKind::Tanh => line(format!("torch.tanh({x})")),
            LayerKind::Relu6 => line(format!("F.relu6({x})")),
            LayerKind::HardSigmoid => line(format!("F.hardsigmoid({x})")),
            LayerKind::HardSwish => line(format!("F.hardswish({x})")),
            LayerKind::Silu => line(format!("F.silu({x})")),
            LayerKind::Softmax => line(format!("torch.softmax({x}, dim=1)")),
            LayerKind::Dropout { rate } => {
                module(format!("nn.Dropout(p={})", py_float(*rate)));
                line(format!("self.{me}({x})"));
            }
            LayerKind::Flatten => line(format!("torch.flatten({x}, 1)")),
            LayerKind::Dense { units, bias } => {
                let n = in_shape.map_or(0, |s| s.elements());
                let b = if *bias { "" } else { ", bias=False" };
                module(format!("nn.Linear({n}, {units}{b})"));
                line(format!("self.{me}({x})"));
            }
            LayerKind::Add => line(ins.join(" + ")),
            LayerKind::ChannelScale => {
                let gate = ins.get(1).cloned().unwrap_or_default();
                match info.input_shapes.get(1).copied().flatten() {
                    Some(Shape::Vector(_)) => line(format!("{x} * {gate}[:, :, None, None]")),
                    _ => line(format!("{x} * {gate}")),
                }
            }
            LayerKind::Concat => line(format!("torch.cat([{}], dim=1)", ins.join(", "))),
        }
        init.push_str(&pad_init);
        init.push_str(&own_init);
    }
    let outputs: Vec<String> = graph.outputs().into_iter().map(ident).collect();
    let ret = match outputs.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    let mut src = String::new();
    let _ = writeln!(
        src,
        "\"\"\"{} — generated by Netloom: the design's layers and wiring as a PyTorch module.",
        graph.name
    );
    let _ = writeln!(src);
    let _ = writeln!(src, "Inputs (NCHW): {}.", input_doc.join(", "));
    let _ = writeln!(
        src,
        "Weights exported by Netloom load directly (flattened features are in C·H·W order):"
    );
    let _ = writeln!(src, "    from safetensors.torch import load_file");
    let _ = writeln!(
        src,
        "    model = {class}(); model.load_state_dict(load_file(\"weights.safetensors\"))"
    );
    let _ = writeln!(src, "\"\"\"");
    let _ = writeln!(src);
    let _ = writeln!(src, "import torch");
    let _ = writeln!(src, "import torch.nn.functional as F");
    let _ = writeln!(src, "from torch import nn");
    let _ = writeln!(src);
    let _ = writeln!(src);
    let _ = writeln!(src, "class {class}(nn.Module):");
    let _ = writeln!(src, "    def __init__(self):");
    let _ = writeln!(src, "        super().__init__()");
    src.push_str(&init);
    let _ = writeln!(src);
    let _ = writeln!(src, "    def forward(self, {}):", args.join(", "));
    src.push_str(&forward);
    let _ = writeln!(src, "        return {ret}");
    if let Some((_, proba)) = held_back {
        let _ = writeln!(src);
        let _ = writeln!(src, "    def predict_proba(self, {}):", args.join(", "));
        let _ = writeln!(
            src,
            "        \"\"\"Probabilities: `forward` returns logits.\"\"\""
        );
        let _ = writeln!(src, "        x = self.forward({})", args.join(", "));
        let _ = writeln!(src, "        return {proba}");
    }
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
    Ok(src)
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
