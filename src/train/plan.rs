//! Graph + shapes → an executable plan: ordered steps with resolved kernel
//! geometry, parameter tensors, activation buffers, and gradient buffers
//! assigned by liveness so a gradient's memory is reused once its producer
//! has consumed it.
//!
//! All buffers are allocated at compile time for the largest batch; a training
//! step then allocates nothing.

use crate::graph::{Graph, LayerKind, Node, NodeId};
use crate::infer::{Analysis, Axis, NodeInfo, Shape, param_tensors};
use crate::kernels::activation::Elementwise;
use crate::kernels::conv::DilatedConv2d;
use crate::kernels::misc::{SplitMix64, mix64};
use crate::kernels::{Conv2dGeometry, GeometryError, Pads, Pool2dGeometry};
use thiserror::Error;

/// Why a design cannot be trained as it is.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CompileError {
    #[error("the design has errors: {0}")]
    Invalid(String),
    #[error("the design needs exactly one Input layer, it has {0}")]
    InputCount(usize),
    #[error("the design needs exactly one output (a layer nothing consumes), it has {}: {}", .0.len(), .0.join(", "))]
    OutputCount(Vec<String>),
    #[error(
        "the output `{0}` is a {1} volume; a classifier must end in a vector of class scores (add GlobalAvgPool or Flatten, then Dense)"
    )]
    OutputNotVector(String, String),
    #[error("layer `{node}`: {message}")]
    Layer { node: String, message: String },
    #[error("batch size must be at least 1")]
    ZeroBatch,
    /// A buffer the memory estimate allowed for could not be had.
    #[error(
        "out of memory: the system refused the {buffer} ({}); the design needs more memory than its estimate, so try a smaller batch",
        super::memory::human_bytes(*.bytes)
    )]
    OutOfMemory { buffer: String, bytes: u64 },
}

/// A zeroed buffer of `len` floats: every buffer of a plan (and its
/// optimizer state) is allocated through here, so memory the system cannot
/// give is an error naming `buffer()`, never an abort.
///
/// The memory comes from the allocator's zeroing path (`calloc`: large
/// buffers are fresh pages the system zeroes on first touch), as
/// `vec![0.0; len]` would, so a buffer a run never writes — a gradient slot of
/// a frozen prefix, a workspace larger than this batch needs — costs no
/// resident memory.
pub(crate) fn zeroed(
    buffer: impl FnOnce() -> String,
    len: usize,
) -> Result<Vec<f32>, CompileError> {
    let refused = |buffer: String| CompileError::OutOfMemory {
        buffer,
        bytes: (len as u64).saturating_mul(4),
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let Ok(layout) = std::alloc::Layout::array::<f32>(len) else {
        return Err(refused(buffer()));
    };
    // SAFETY: `layout` has a non-zero size (len > 0). A non-null result is a
    // block of `len` zeroed f32s (all-zero bits are 0.0) from the global
    // allocator with exactly the layout `Vec<f32>` uses for capacity `len`,
    // so the Vec may own and free it.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<f32>();
    if ptr.is_null() {
        return Err(refused(buffer()));
    }
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

pub use crate::infer::ParamRole;

/// One named tensor of the model: `{layer}.{role}`.
#[derive(Clone, Debug)]
pub struct ParamTensor {
    pub name: String,
    pub layer: String,
    pub role: ParamRole,
    /// Netloom layouts: conv HWIO `[kh, kw, cin/groups, cout]`, dense `[in, out]`.
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// Empty for tensors that get no gradient (running stats, frozen layers).
    pub grad: Vec<f32>,
    pub frozen: bool,
}

impl ParamTensor {
    /// Updated by the optimizer this run.
    pub fn is_trainable(&self) -> bool {
        self.role.is_learned() && !self.frozen
    }
}

/// The resolved operation of one step. Indices point into `Plan::params`.
#[derive(Clone, Debug)]
pub enum Op {
    Input,
    Conv {
        geo: Conv2dGeometry,
        weight: usize,
        bias: Option<usize>,
    },
    /// A convolution with dilation above 1 (its own kernels; no fusions).
    DilatedConv {
        conv: DilatedConv2d,
        weight: usize,
        bias: Option<usize>,
    },
    ZeroPad {
        hwc: (usize, usize, usize),
        pad: Pads,
    },
    /// (Its backward finds each window's winner from its input and output.)
    MaxPool {
        geo: Pool2dGeometry,
    },
    AvgPool {
        geo: Pool2dGeometry,
        /// Padded zeros count in each window's divisor.
        include_padding: bool,
    },
    GlobalAvgPool {
        hw: usize,
        c: usize,
    },
    BatchNorm {
        c: usize,
        eps: f32,
        momentum: f32,
        gamma: usize,
        beta: usize,
        running_mean: usize,
        running_var: usize,
        save_mean: Vec<f32>,
        save_invstd: Vec<f32>,
    },
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// A parameter-free element-wise function whose backward reads the input.
    Elementwise(Elementwise),
    Softmax {
        classes: usize,
    },
    Dropout {
        rate: f32,
        seed: u64,
    },
    Flatten,
    Dense {
        n_in: usize,
        n_out: usize,
        weight: usize,
        bias: Option<usize>,
    },
    Add,
    /// Input 0 (`hw` positions × `c` channels) times input 1's `c` gate values.
    ChannelScale {
        hw: usize,
        c: usize,
    },
    /// `x · scale + shift` per channel, by the design's constants.
    ChannelAffine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Concat {
        channels: Vec<usize>,
    },
}

/// How the gradient of one input is delivered by a step's backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradWrite {
    /// The input needs no gradient.
    Skip,
    /// First contribution (in reverse order): overwrite the buffer.
    Overwrite,
    /// Later contributions (skip paths, branches): add into it.
    Accumulate,
    /// (A ReLU after a trainable BatchNorm, its only consumer) the input's
    /// gradient buffer is this step's own: the BatchNorm's backward applies
    /// the ReLU's mask itself ([`Step::backward_relu`]), so the ReLU's
    /// backward reads and writes nothing.
    Shared,
}

/// Forward fusions of memory-bound layers, decided at compile time. An
/// elementwise layer after a producer reads and writes the whole activation
/// again; fused, the producer applies it and writes straight into the last
/// fused step's buffer, so the intermediate values are not materialised.
///
/// - BatchNorm or Add → ReLU (training and evaluation): backward is
///   unchanged (the ReLU's arm masks with its own output; neither BatchNorm's
///   nor Add's arm reads its own output), so gradients are bit-identical.
/// - Conv → BatchNorm (evaluation only): the conv applies the BatchNorm's
///   fixed affine map (and its fused ReLU) to each output tile in cache. In
///   training BatchNorm's backward needs the conv output, so it stays separate.
/// - Conv → BatchNorm → two-input Add (evaluation only): the conv also adds
///   the Add's other input (computed before the conv) and the Add's fused
///   ReLU — a residual block's tail in one pass.
/// - Conv → BatchNorm → ReLU → 2×2 stride-2 MaxPool (evaluation only): the
///   conv pools its output tiles and writes only the pooled quarter.
///
/// A fusion applies only when both steps run in the same pass (see
/// [`Plan::forward_through`], [`Plan::forward_from`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fusion {
    /// (BatchNorm or Add) also applies ReLU step `r`, its only consumer.
    pub relu_into: Option<usize>,
    /// (Conv) in evaluation passes also applies BatchNorm step `b`, its only consumer.
    pub bn_into: Option<usize>,
    /// (BatchNorm fused into a Conv) the two-input Add step, its only
    /// consumer, that the conv completes too.
    pub add_into: Option<usize>,
    /// (ReLU fused into a BatchNorm fused into a Conv) the 2×2 MaxPool step,
    /// its only consumer, that the conv applies too.
    pub pool_into: Option<usize>,
    /// This step's output is written by the step that fused it.
    pub done_by: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub node: NodeId,
    pub name: String,
    pub op: Op,
    /// Value indices (= step indices of the producers), in input order.
    pub inputs: Vec<usize>,
    /// How each input's gradient is written.
    pub grad_writes: Vec<GradWrite>,
    /// This step's layer is frozen (no parameter gradients; BN uses running stats).
    pub frozen: bool,
    /// Whether backward runs for this step at all.
    pub runs_backward: bool,
    /// Forward fusion with a neighbouring step.
    pub fusion: Fusion,
    /// (BatchNorm) the ReLU step after it whose mask its backward also
    /// applies, sharing that step's gradient buffer ([`GradWrite::Shared`]).
    /// Fixed at compile time: unlike [`Fusion`], [`Plan::unfuse`] leaves it.
    pub backward_relu: Option<usize>,
}

/// The training objective, fused with the final activation for stability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Softmax + cross-entropy over `classes` (the design ends in Softmax, or in raw scores).
    SoftmaxCrossEntropy,
    /// Sigmoid + binary cross-entropy per output (the design ends in Sigmoid).
    SigmoidBinaryCrossEntropy,
}

/// A compiled design with all its buffers.
pub struct Plan {
    pub steps: Vec<Step>,
    pub params: Vec<ParamTensor>,
    /// Elements per sample of each value (value `i` is step `i`'s output).
    pub value_elems: Vec<usize>,
    /// Activation buffer of each value, sized for `max_batch`.
    pub(crate) acts: Vec<Vec<f32>>,
    /// Gradient buffer slot of each value, if it needs a gradient.
    pub(crate) grad_slot: Vec<Option<usize>>,
    pub(crate) grad_slots: Vec<Vec<f32>>,
    /// Scratch for accumulating gradient contributions.
    pub(crate) scratch: Vec<f32>,
    pub(crate) workspace: Vec<f32>,
    pub(crate) probs: Vec<f32>,
    pub(crate) labels_f32: Vec<f32>,
    pub head: Head,
    /// The value holding the class scores (logits) the head consumes.
    pub logits: usize,
    pub classes: usize,
    /// Input `(h, w, c)`.
    pub input_shape: (usize, usize, usize),
    pub max_batch: usize,
    /// Training forward passes so far (drives dropout masks).
    pub(crate) iteration: u64,
    pub(crate) seed: u64,
    /// Accumulated wall time per step (forward + backward), for the per-layer timing view.
    pub step_nanos: Vec<u64>,
    /// The batch of the last forward pass.
    pub(crate) batch: usize,
}

fn shape_err(node: &str, message: impl Into<String>) -> CompileError {
    CompileError::Layer {
        node: node.to_string(),
        message: message.into(),
    }
}

fn dims(shape: Shape) -> (usize, usize, usize) {
    match shape {
        Shape::Volume { h, w, c } => (h as usize, w as usize, c as usize),
        Shape::Vector(n) => (1, 1, n as usize),
    }
}

/// A stable per-tensor seed: adding a layer does not change other layers' init.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix64(seed ^ h)
}

struct ParamBuilder<'a> {
    params: &'a mut Vec<ParamTensor>,
    seed: u64,
}

/// The indices in `Plan::params` of one layer's tensors, by role.
struct LayerParams(Vec<(ParamRole, usize)>);

impl LayerParams {
    fn get(&self, role: ParamRole) -> Option<usize> {
        self.0.iter().find(|(r, _)| *r == role).map(|&(_, i)| i)
    }

    /// The tensor of `role`, which the layer's kind always has.
    fn need(&self, layer: &str, role: ParamRole) -> Result<usize, CompileError> {
        self.get(role)
            .ok_or_else(|| shape_err(layer, format!("has no {} tensor", role.suffix())))
    }
}

impl ParamBuilder<'_> {
    /// Adds every parameter tensor of `node` ([`param_tensors`]) given its input shape.
    fn add_layer(
        &mut self,
        node: &Node,
        input: Option<Shape>,
    ) -> Result<LayerParams, CompileError> {
        param_tensors(&node.kind, input)
            .into_iter()
            .map(|t| Ok((t.role, self.add(&node.name, t.role, t.dims(), node.frozen)?)))
            .collect::<Result<_, _>>()
            .map(LayerParams)
    }

    fn add(
        &mut self,
        layer: &str,
        role: ParamRole,
        shape: Vec<usize>,
        frozen: bool,
    ) -> Result<usize, CompileError> {
        let len: usize = shape.iter().product();
        let name = format!("{layer}.{}", role.suffix());
        let mut data = zeroed(|| format!("parameters `{name}`"), len)?;
        initialise(&mut data, role, &shape, tensor_seed(self.seed, &name));
        let grad = if role.is_learned() && !frozen {
            zeroed(|| format!("gradient of `{name}`"), len)?
        } else {
            Vec::new()
        };
        self.params.push(ParamTensor {
            name,
            layer: layer.to_string(),
            role,
            shape,
            data,
            grad,
            frozen,
        });
        Ok(self.params.len() - 1)
    }
}

/// A tensor's initial values for its role, drawn from `seed`.
fn initialise(data: &mut [f32], role: ParamRole, shape: &[usize], seed: u64) {
    match role {
        ParamRole::Weight => {
            let mut rng = SplitMix64::new(seed);
            if shape.len() == 4 {
                // He normal for convs (ReLU networks): std = sqrt(2 / fan_in).
                let fan_in = (shape[0] * shape[1] * shape[2]) as f32;
                let std = (2.0 / fan_in).sqrt();
                data.iter_mut().for_each(|v| *v = rng.next_normal() * std);
            } else {
                // Glorot uniform for dense layers (Keras' default).
                let limit = (6.0 / (shape[0] + shape[1]) as f32).sqrt();
                data.iter_mut()
                    .for_each(|v| *v = (rng.next_f32() * 2.0 - 1.0) * limit);
            }
        }
        ParamRole::Gamma | ParamRole::RunningVar => data.fill(1.0),
        ParamRole::Bias | ParamRole::Beta | ParamRole::RunningMean => data.fill(0.0),
    }
}

impl Plan {
    /// Compiles `graph` (already analysed) for batches of up to `max_batch`,
    /// initialising parameters from `seed`: validate the design, lower each
    /// node to a step, decide the fusions, assign gradient buffers by
    /// liveness, then allocate every buffer.
    pub fn compile(
        graph: &Graph,
        analysis: &Analysis,
        max_batch: usize,
        seed: u64,
    ) -> Result<Plan, CompileError> {
        let output = validate(graph, analysis, max_batch)?;
        let mut lowered = lower(graph, analysis, max_batch, seed, output.fused)?;
        fuse(&mut lowered.steps);
        let input_shape = input_shape(graph, &lowered.steps)?;
        let grads = assign_grad_slots(&mut lowered, max_batch);
        allocate(lowered, grads, output.head, input_shape, max_batch, seed)
    }

    /// Learned parameters updated in training.
    pub fn trainable_param_count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.is_trainable())
            .map(|p| p.data.len())
            .sum()
    }

    /// Every stored number: learned, frozen and running statistics.
    pub fn total_param_count(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    pub fn param(&self, name: &str) -> Option<&ParamTensor> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn param_mut(&mut self, name: &str) -> Option<&mut ParamTensor> {
        self.params.iter_mut().find(|p| p.name == name)
    }

    /// Bytes held by activation, gradient and scratch buffers.
    pub fn buffer_bytes(&self) -> usize {
        let acts: usize = self.acts.iter().map(Vec::len).sum();
        let grads: usize = self.grad_slots.iter().map(Vec::len).sum();
        4 * (acts + grads + self.scratch.len() + self.workspace.len())
    }

    /// The output of `step` for the last forward pass (`batch × elems`).
    /// A step another was fused into (a Conv or BatchNorm, see [`Fusion`])
    /// does not write its own buffer in a full pass; [`Plan::forward_through`]
    /// ending at it, or [`Plan::unfuse`] beforehand, does.
    pub fn activation(&self, step: usize) -> &[f32] {
        &self.acts[step][..self.batch * self.value_elems[step]]
    }

    /// Class probabilities of the last forward pass (`batch × classes`).
    pub fn probabilities(&self) -> &[f32] {
        &self.probs[..self.batch * self.classes]
    }

    /// The step computing `name`'s output, if it is part of the plan.
    pub fn step_of(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// The deepest value of the frozen prefix that is all the later steps
    /// read from before it, so its activations can be computed once and
    /// reused every epoch (transfer learning). `None` when nothing is
    /// trainable, the first layer is trainable, or no such single cut exists
    /// (a skip path crosses it, or dropout — random per pass — precedes it).
    pub fn frozen_cut(&self) -> Option<usize> {
        let first_trainable = self.steps.iter().position(|s| {
            step_param_indices(&s.op)
                .iter()
                .any(|&p| self.params[p].is_trainable())
        })?;
        (1..first_trainable).rev().find(|&c| {
            !self.steps[..=c]
                .iter()
                .any(|s| matches!(s.op, Op::Dropout { .. }))
                && self.steps[c + 1..]
                    .iter()
                    .all(|s| s.inputs.iter().all(|&u| u >= c))
        })
    }

    /// Undoes every [`Fusion`]: each step then runs its own kernel (a
    /// reference for tests, and a way to inspect every layer's output).
    pub fn unfuse(&mut self) {
        for s in &mut self.steps {
            s.fusion = Fusion::default();
        }
    }

    /// Resets parameters to their seeded initial values (and running stats).
    pub fn reinitialise(&mut self, seed: u64) {
        for p in &mut self.params {
            initialise(&mut p.data, p.role, &p.shape, tensor_seed(seed, &p.name));
        }
        self.seed = seed;
        self.iteration = 0;
    }

    /// Restarts the sequence of dropout masks (each training-mode forward
    /// pass draws the next ones), so that two passes see the same masks, as
    /// a finite-difference gradient check needs.
    pub fn restart_dropout_masks(&mut self) {
        self.iteration = 0;
    }
}

/// The design's output as training sees it: the head it feeds, and the
/// final Softmax/Sigmoid fused into the loss (its step is dropped).
struct OutputHead {
    head: Head,
    fused: Option<NodeId>,
}

/// Checks that the design can be compiled at all: a batch, no errors, one
/// input, one output that is a vector of class scores.
fn validate(
    graph: &Graph,
    analysis: &Analysis,
    max_batch: usize,
) -> Result<OutputHead, CompileError> {
    if max_batch == 0 {
        return Err(CompileError::ZeroBatch);
    }
    if let Some(e) = &analysis.design_error {
        return Err(CompileError::Invalid(e.clone()));
    }
    if let Some((id, e)) = analysis.errors().first() {
        return Err(CompileError::Invalid(format!(
            "`{}`: {}",
            graph.name_of(*id),
            e.message
        )));
    }
    let inputs = graph.input_nodes();
    if inputs.len() != 1 {
        return Err(CompileError::InputCount(inputs.len()));
    }
    let outputs = graph.outputs();
    if outputs.len() != 1 {
        return Err(CompileError::OutputCount(
            outputs
                .iter()
                .map(|&id| graph.name_of(id).to_string())
                .collect(),
        ));
    }
    let output = outputs[0];
    let out_shape = analysis
        .node(output)
        .and_then(|n| n.output_shape)
        .ok_or_else(|| CompileError::Invalid("output has no shape".into()))?;
    if let Shape::Volume { .. } = out_shape {
        return Err(CompileError::OutputNotVector(
            graph.name_of(output).to_string(),
            out_shape.to_string(),
        ));
    }
    Ok(match graph.node(output).map(|n| &n.kind) {
        Some(LayerKind::Softmax) => OutputHead {
            head: Head::SoftmaxCrossEntropy,
            fused: Some(output),
        },
        Some(LayerKind::Sigmoid) => OutputHead {
            head: Head::SigmoidBinaryCrossEntropy,
            fused: Some(output),
        },
        _ => OutputHead {
            head: Head::SoftmaxCrossEntropy,
            fused: None,
        },
    })
}

/// The steps of a design before any buffer exists: each node's operation,
/// its parameters (initialised), and the size of each value.
struct Lowered {
    steps: Vec<Step>,
    params: Vec<ParamTensor>,
    /// Elements per sample of each value (value `i` is step `i`'s output).
    value_elems: Vec<usize>,
}

/// Lowers every node in topological order (except `skip`, the head's fused
/// activation) to a step reading its producers' values.
fn lower(
    graph: &Graph,
    analysis: &Analysis,
    max_batch: usize,
    seed: u64,
    skip: Option<NodeId>,
) -> Result<Lowered, CompileError> {
    let mut params = Vec::new();
    let mut pb = ParamBuilder {
        params: &mut params,
        seed,
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut value_of: Vec<Option<usize>> = vec![None; graph.id_capacity()];
    let mut value_elems = Vec::new();
    for &id in &analysis.order {
        if Some(id) == skip {
            continue;
        }
        let node = graph
            .node(id)
            .ok_or_else(|| CompileError::Invalid("stale node".into()))?;
        let info = analysis
            .node(id)
            .ok_or_else(|| CompileError::Invalid(format!("`{}` not inferred", node.name)))?;
        let out = info
            .output_shape
            .ok_or_else(|| shape_err(&node.name, "no output shape"))?;
        let input_values: Vec<usize> = graph
            .inputs_of(id)
            .iter()
            .map(|f| f.and_then(|f| value_of[f.index()]))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| shape_err(&node.name, "an input is not connected"))?;
        let op = lower_op(node, info, out, max_batch, seed, &mut pb)?;
        value_of[id.index()] = Some(steps.len());
        value_elems.push(out.elements() as usize);
        steps.push(Step {
            node: id,
            name: node.name.clone(),
            op,
            grad_writes: vec![GradWrite::Skip; input_values.len()],
            inputs: input_values,
            frozen: node.frozen,
            runs_backward: false,
            fusion: Fusion::default(),
            backward_relu: None,
        });
    }
    Ok(Lowered {
        steps,
        params,
        value_elems,
    })
}

/// The operation of one node (the per-kind rule), adding its parameters.
fn lower_op(
    node: &Node,
    info: &NodeInfo,
    out: Shape,
    max_batch: usize,
    seed: u64,
    pb: &mut ParamBuilder,
) -> Result<Op, CompileError> {
    let in_shape = info.input_shapes.first().copied().flatten();
    let name = node.name.as_str();
    let input_dims = || {
        in_shape
            .map(dims)
            .ok_or_else(|| shape_err(name, "no input"))
    };
    let window = || {
        info.window
            .ok_or_else(|| shape_err(name, "unresolved window"))
    };
    Ok(match &node.kind {
        LayerKind::Input { .. } => Op::Input,
        LayerKind::Conv2d {
            filters,
            groups,
            dilation,
            ..
        } => {
            let win = window()?;
            let geo = conv_geometry(max_batch, input_dims()?, *filters, &win, *groups)
                .map_err(|e| shape_err(name, e.to_string()))?;
            let params = pb.add_layer(node, in_shape)?;
            let weight = params.need(name, ParamRole::Weight)?;
            let bias = params.get(ParamRole::Bias);
            if *dilation == [1, 1] {
                Op::Conv { geo, weight, bias }
            } else {
                let conv = DilatedConv2d::dilate(
                    geo,
                    (win[0].dilation as usize, win[1].dilation as usize),
                )
                .map_err(|e| shape_err(name, e.to_string()))?;
                if (conv.geo.out_h, conv.geo.out_w)
                    != (win[0].output as usize, win[1].output as usize)
                {
                    return Err(shape_err(
                        name,
                        "conv geometry disagrees with shape inference",
                    ));
                }
                Op::DilatedConv { conv, weight, bias }
            }
        }
        LayerKind::ZeroPad2d { padding } => {
            let hwc = input_dims()?;
            let [top, bottom, left, right] = padding.map(|v| v as usize);
            Op::ZeroPad {
                hwc,
                pad: Pads::new(top, bottom, left, right),
            }
        }
        LayerKind::MaxPool2d { ceil_mode, .. } | LayerKind::AvgPool2d { ceil_mode, .. } => {
            let (h, w, c) = input_dims()?;
            let win = window()?;
            let geo = Pool2dGeometry::new(
                max_batch,
                (h, w, c),
                (win[0].kernel as usize, win[1].kernel as usize),
                (win[0].stride as usize, win[1].stride as usize),
                window_pads(&win),
                *ceil_mode,
            )
            .map_err(|e| shape_err(name, e.to_string()))?;
            if (geo.out_h, geo.out_w) != (win[0].output as usize, win[1].output as usize) {
                return Err(shape_err(
                    name,
                    "pool geometry disagrees with shape inference",
                ));
            }
            match node.kind {
                LayerKind::AvgPool2d {
                    include_padding, ..
                } => Op::AvgPool {
                    geo,
                    include_padding,
                },
                _ => Op::MaxPool { geo },
            }
        }
        LayerKind::GlobalAvgPool => {
            let (h, w, c) = input_dims()?;
            Op::GlobalAvgPool { hw: h * w, c }
        }
        LayerKind::BatchNorm { epsilon, momentum } => {
            let c = out.channels() as usize;
            let params = pb.add_layer(node, in_shape)?;
            Op::BatchNorm {
                c,
                eps: *epsilon as f32,
                momentum: *momentum as f32,
                gamma: params.need(name, ParamRole::Gamma)?,
                beta: params.need(name, ParamRole::Beta)?,
                running_mean: params.need(name, ParamRole::RunningMean)?,
                running_var: params.need(name, ParamRole::RunningVar)?,
                save_mean: zeroed(|| format!("batch mean of `{name}`"), c)?,
                save_invstd: zeroed(|| format!("batch deviation of `{name}`"), c)?,
            }
        }
        LayerKind::Relu => Op::Relu,
        LayerKind::LeakyRelu { alpha } => Op::LeakyRelu {
            alpha: *alpha as f32,
        },
        LayerKind::Sigmoid => Op::Sigmoid,
        LayerKind::Tanh => Op::Tanh,
        LayerKind::Relu6 => Op::Elementwise(Elementwise::Relu6),
        LayerKind::HardSigmoid => Op::Elementwise(Elementwise::HardSigmoid),
        LayerKind::HardSwish => Op::Elementwise(Elementwise::HardSwish),
        LayerKind::Silu => Op::Elementwise(Elementwise::Silu),
        LayerKind::Softmax => Op::Softmax {
            classes: out.channels() as usize,
        },
        LayerKind::Dropout { rate } => Op::Dropout {
            rate: *rate as f32,
            seed: tensor_seed(seed, name),
        },
        LayerKind::Flatten => Op::Flatten,
        LayerKind::Dense { units, .. } => {
            let n_in = in_shape.map(|s| s.elements() as usize).unwrap_or(0);
            let n_out = *units as usize;
            let params = pb.add_layer(node, in_shape)?;
            let weight = params.need(name, ParamRole::Weight)?;
            let bias = params.get(ParamRole::Bias);
            Op::Dense {
                n_in,
                n_out,
                weight,
                bias,
            }
        }
        LayerKind::Add => Op::Add,
        LayerKind::ChannelScale => {
            let c = out.channels() as usize;
            Op::ChannelScale {
                hw: out.elements() as usize / c.max(1),
                c,
            }
        }
        LayerKind::ChannelAffine { scale, shift } => Op::ChannelAffine {
            scale: scale.clone(),
            shift: shift.clone(),
        },
        LayerKind::Concat => Op::Concat {
            channels: info
                .input_shapes
                .iter()
                .map(|s| s.map_or(0, |s| s.channels() as usize))
                .collect(),
        },
    })
}

/// A window's padding as inference resolved it (axis 0 is the height).
fn window_pads(win: &[Axis; 2]) -> Pads {
    Pads::new(
        win[0].pad_before as usize,
        win[0].pad_after as usize,
        win[1].pad_before as usize,
        win[1].pad_after as usize,
    )
}

/// A convolution's geometry for batches of `batch`, compiled from
/// inference's resolved window: taps, stride and padding all come from
/// `win` (for a dilated conv, the undilated taps; see
/// [`DilatedConv2d::dilate`]). The plan and the memory estimate both build
/// conv geometry here.
pub(crate) fn conv_geometry(
    batch: usize,
    input: (usize, usize, usize),
    filters: u32,
    win: &[Axis; 2],
    groups: u32,
) -> Result<Conv2dGeometry, GeometryError> {
    Conv2dGeometry::new(
        batch,
        input,
        filters as usize,
        (win[0].kernel as usize, win[1].kernel as usize),
        (win[0].stride as usize, win[1].stride as usize),
        window_pads(win),
        groups as usize,
    )
}

/// The input `(h, w, c)`: the first step must be the design's Input layer.
fn input_shape(graph: &Graph, steps: &[Step]) -> Result<(usize, usize, usize), CompileError> {
    match steps.first().map(|s| s.node).and_then(|id| graph.node(id)) {
        Some(node) => match node.kind {
            LayerKind::Input {
                height,
                width,
                channels,
            } => Ok((height as usize, width as usize, channels as usize)),
            _ => Err(CompileError::InputCount(0)),
        },
        None => Err(CompileError::InputCount(0)),
    }
}

/// Which value uses which gradient buffer, and each buffer's length.
struct GradSlots {
    slot_of: Vec<Option<usize>>,
    lens: Vec<usize>,
    /// Buffers no live gradient uses (during assignment).
    free: Vec<usize>,
}

impl GradSlots {
    /// A free buffer of `len` elements, or a new one.
    fn take(&mut self, len: usize) -> usize {
        if let Some(pos) = self.free.iter().position(|&s| self.lens[s] == len) {
            self.free.swap_remove(pos)
        } else {
            self.lens.push(len);
            self.lens.len() - 1
        }
    }
}

/// Values that need a gradient: those downstream of a trainable parameter.
fn needs_gradient(steps: &[Step], params: &[ParamTensor]) -> Vec<bool> {
    let mut needs_grad = vec![false; steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let own = step_param_indices(&step.op)
            .iter()
            .any(|&p| params[p].is_trainable());
        needs_grad[i] = own || step.inputs.iter().any(|&u| needs_grad[u]);
    }
    needs_grad
}

/// Assigns gradient buffers by liveness, walking the backward order: a
/// buffer is free again once its value's producer has run its backward.
/// Marks the steps whose backward runs and how each writes its inputs'
/// gradients.
fn assign_grad_slots(lowered: &mut Lowered, max_batch: usize) -> GradSlots {
    let needs_grad = needs_gradient(&lowered.steps, &lowered.params);
    let (steps, value_elems) = (&mut lowered.steps, &lowered.value_elems);
    let logits = steps.len() - 1;
    let mut slots = GradSlots {
        slot_of: vec![None; steps.len()],
        lens: Vec::new(),
        free: Vec::new(),
    };
    if needs_grad[logits] {
        slots.slot_of[logits] = Some(slots.take(value_elems[logits] * max_batch));
    }
    for i in (0..steps.len()).rev() {
        let Some(own_slot) = slots.slot_of[i] else {
            continue;
        };
        steps[i].runs_backward = true;
        if let Some(p) = relu_backward_into_bn(steps, i)
            && needs_grad[p]
            && slots.slot_of[p].is_none()
        {
            slots.slot_of[p] = Some(own_slot);
            steps[i].grad_writes[0] = GradWrite::Shared;
            steps[p].backward_relu = Some(i);
            continue;
        }
        for k in 0..steps[i].inputs.len() {
            let u = steps[i].inputs[k];
            if !needs_grad[u] {
                continue;
            }
            steps[i].grad_writes[k] = if slots.slot_of[u].is_some() {
                GradWrite::Accumulate
            } else {
                slots.slot_of[u] = Some(slots.take(value_elems[u] * max_batch));
                GradWrite::Overwrite
            };
        }
        slots.free.push(own_slot);
    }
    slots
}

/// Allocates every buffer of the plan: activations, gradient slots, the
/// scratch, the convolution workspace and the head's probabilities and
/// targets — each through [`zeroed`], so one the system refuses is named.
fn allocate(
    lowered: Lowered,
    grads: GradSlots,
    head: Head,
    input_shape: (usize, usize, usize),
    max_batch: usize,
    seed: u64,
) -> Result<Plan, CompileError> {
    let Lowered {
        steps,
        params,
        value_elems,
    } = lowered;
    let logits = steps.len() - 1;
    let classes = value_elems[logits];
    let max_elems = value_elems.iter().copied().max().unwrap_or(0) * max_batch;
    let workspace_len = steps
        .iter()
        .map(|s| match &s.op {
            Op::Conv { geo, .. } => geo.workspace_len(),
            Op::DilatedConv { conv, .. } => conv.workspace_len(),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let acts = steps
        .iter()
        .zip(&value_elems)
        .map(|(s, &e)| zeroed(|| format!("activations of `{}`", s.name), e * max_batch))
        .collect::<Result<_, _>>()?;
    let grad_slots = grads
        .lens
        .iter()
        .enumerate()
        .map(|(k, &l)| zeroed(|| format!("gradient buffer {k}"), l))
        .collect::<Result<_, _>>()?;
    Ok(Plan {
        acts,
        grad_slots,
        grad_slot: grads.slot_of,
        scratch: zeroed(|| "scratch buffer".into(), max_elems)?,
        workspace: zeroed(|| "convolution workspace".into(), workspace_len)?,
        probs: zeroed(|| "class probabilities".into(), classes * max_batch)?,
        labels_f32: zeroed(|| "class targets".into(), classes * max_batch)?,
        step_nanos: vec![0; steps.len()],
        steps,
        params,
        value_elems,
        head,
        logits,
        classes,
        input_shape,
        max_batch,
        iteration: 0,
        seed,
        batch: 0,
    })
}

/// The trainable BatchNorm whose backward can apply ReLU step `i`'s mask:
/// its only input, with `i` its only consumer (a forward fusion).
fn relu_backward_into_bn(steps: &[Step], i: usize) -> Option<usize> {
    let (Op::Relu, &[p]) = (&steps[i].op, steps[i].inputs.as_slice()) else {
        return None;
    };
    (matches!(steps[p].op, Op::BatchNorm { .. })
        && !steps[p].frozen
        && steps[p].fusion.relu_into == Some(i))
    .then_some(p)
}

/// Decides the [`Fusion`]s: a ReLU into a BatchNorm or Add, a BatchNorm into
/// a Conv, and an Add into that Conv, whenever the producer has no other consumer.
fn fuse(steps: &mut [Step]) {
    let mut consumers = vec![0usize; steps.len()];
    for s in steps.iter() {
        for &u in &s.inputs {
            consumers[u] += 1;
        }
    }
    for i in 0..steps.len() {
        let &[p] = steps[i].inputs.as_slice() else {
            continue;
        };
        if consumers[p] != 1 {
            continue;
        }
        let fits = match (&steps[i].op, &steps[p].op) {
            (Op::Relu, Op::BatchNorm { .. } | Op::Add) => {
                steps[p].fusion.relu_into = Some(i);
                true
            }
            (Op::BatchNorm { c, .. }, Op::Conv { geo, .. }) if *c == geo.out_c => {
                steps[p].fusion.bn_into = Some(i);
                true
            }
            _ => false,
        };
        if fits {
            steps[i].fusion.done_by = Some(p);
        }
    }
    for a in 0..steps.len() {
        let (Op::Add, &[u, v]) = (&steps[a].op, steps[a].inputs.as_slice()) else {
            continue;
        };
        for (bn, other) in [(u, v), (v, u)] {
            if let Some(conv) = steps[bn].fusion.done_by
                && consumers[bn] == 1
                && matches!(steps[bn].op, Op::BatchNorm { .. })
                && other < conv
            {
                steps[bn].fusion.add_into = Some(a);
                steps[a].fusion.done_by = Some(conv);
                break;
            }
        }
    }
    for p in 0..steps.len() {
        let (Op::MaxPool { geo: pool, .. }, &[r]) = (&steps[p].op, steps[p].inputs.as_slice())
        else {
            continue;
        };
        let pool2 = (pool.k_h, pool.k_w, pool.stride_h, pool.stride_w) == (2, 2, 2, 2)
            && (pool.pad_top, pool.pad_left, pool.pad_bottom, pool.pad_right) == (0, 0, 0, 0)
            && (pool.out_h * 2, pool.out_w * 2) == (pool.in_h, pool.in_w);
        let conv = steps[r]
            .fusion
            .done_by
            .filter(|_| matches!(steps[r].op, Op::Relu) && consumers[r] == 1)
            .and_then(|bn| steps[bn].fusion.done_by);
        if let Some(conv) = conv
            && let Op::Conv { geo, .. } = &steps[conv].op
            && pool2
            && geo.can_fuse_max_pool2()
        {
            steps[r].fusion.pool_into = Some(p);
            steps[p].fusion.done_by = Some(conv);
        }
    }
}

/// Parameter indices a step reads.
pub fn step_param_indices(op: &Op) -> Vec<usize> {
    match op {
        Op::Conv { weight, bias, .. }
        | Op::DilatedConv { weight, bias, .. }
        | Op::Dense { weight, bias, .. } => {
            let mut v = vec![*weight];
            v.extend(bias);
            v
        }
        Op::BatchNorm {
            gamma,
            beta,
            running_mean,
            running_var,
            ..
        } => vec![*gamma, *beta, *running_mean, *running_var],
        _ => Vec::new(),
    }
}
