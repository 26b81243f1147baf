//! Layer kinds and their parameters: what a node *is*, independent of where it sits.

use serde::{Deserialize, Serialize};

/// How a conv or pool window is padded.
///
/// `Same` follows TensorFlow: output = ceil(n / stride), extra padding on the
/// bottom/right when the total is odd. `Explicit` is `[top, bottom, left, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    Same,
    #[default]
    Valid,
    Explicit([u32; 4]),
}

impl Padding {
    /// Symmetric padding of `p` on every side.
    pub fn symmetric(p: u32) -> Self {
        if p == 0 {
            Padding::Valid
        } else {
            Padding::Explicit([p, p, p, p])
        }
    }

    /// Short text for tables and node labels.
    pub fn label(&self) -> String {
        match self {
            Padding::Same => "same".into(),
            Padding::Valid => "valid".into(),
            Padding::Explicit([t, b, l, r]) if t == b && l == r && t == l => format!("pad {t}"),
            Padding::Explicit([t, b, l, r]) => format!("pad {t},{b},{l},{r}"),
        }
    }
}

fn one() -> u32 {
    1
}
fn one2() -> [u32; 2] {
    [1, 1]
}
fn yes() -> bool {
    true
}
fn default_bn_epsilon() -> f64 {
    1e-3
}
fn default_bn_momentum() -> f64 {
    0.9
}
fn default_leaky_alpha() -> f64 {
    0.01
}
fn is_one(v: &u32) -> bool {
    *v == 1
}
fn is_one2(v: &[u32; 2]) -> bool {
    *v == [1, 1]
}
fn is_true(v: &bool) -> bool {
    *v
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// Every layer kind with its parameters. Serialised with a `kind` tag so a
/// design file reads `{"kind": "conv2d", "filters": 32, ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerKind {
    Input {
        height: u32,
        width: u32,
        channels: u32,
    },
    Conv2d {
        filters: u32,
        kernel: [u32; 2],
        #[serde(default = "one2")]
        stride: [u32; 2],
        #[serde(default)]
        padding: Padding,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: u32,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
        /// `[height, width]` spacing of the kernel's taps (1: adjacent).
        #[serde(default = "one2", skip_serializing_if = "is_one2")]
        dilation: [u32; 2],
    },
    #[serde(rename = "zero_pad2d")]
    ZeroPad2d {
        /// `[top, bottom, left, right]`.
        padding: [u32; 4],
    },
    MaxPool2d {
        kernel: [u32; 2],
        stride: [u32; 2],
        #[serde(default)]
        padding: Padding,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
    },
    AvgPool2d {
        kernel: [u32; 2],
        stride: [u32; 2],
        #[serde(default)]
        padding: Padding,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
        /// Divide every window by its size clipped to the padded input
        /// (padded zeros count; PyTorch's default `count_include_pad=True`),
        /// instead of by the number of real input values in it (off; the
        /// behaviour of design files that do not say).
        #[serde(default, skip_serializing_if = "is_false")]
        include_padding: bool,
    },
    GlobalAvgPool,
    BatchNorm {
        #[serde(default = "default_bn_epsilon")]
        epsilon: f64,
        /// Running-statistics momentum: `running = m·running + (1−m)·batch`.
        #[serde(default = "default_bn_momentum")]
        momentum: f64,
    },
    Relu,
    LeakyRelu {
        #[serde(default = "default_leaky_alpha")]
        alpha: f64,
    },
    Sigmoid,
    Tanh,
    /// `min(max(x, 0), 6)` (MobileNet).
    Relu6,
    /// PyTorch's hard sigmoid, `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `x · hard_sigmoid(x)` (MobileNetV3).
    HardSwish,
    /// SiLU / Swish, `x · sigmoid(x)` (EfficientNet).
    Silu,
    Softmax,
    Dropout {
        rate: f64,
    },
    Flatten,
    Dense {
        units: u32,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// Element-wise sum of N inputs of identical shape.
    Add,
    /// Concatenation of N inputs along the channel axis.
    Concat,
    /// Input 0 (an H×W×C volume) with each channel multiplied by the matching
    /// value of input 1 (a gate of C values, as a vector or 1×1×C):
    /// squeeze-and-excitation.
    ChannelScale,
    /// Each channel `c` of an H×W×C volume mapped to `x·scale[c] + shift[c]`
    /// by constants of the design, not trained weights (no parameters):
    /// fixed input normalisation such as torchvision's `transform_input`.
    ChannelAffine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
}

/// The parameter-free element-wise activation kinds, as one pattern: the one
/// list that shape, cost, interop, the inspector and the palette match on.
/// A new parameter-free activation is added here (and to [`LayerKind`],
/// its catalogue and [`LayerKind::info`]); the places that then need it
/// (its kernel, plan lowering, ONNX and PyTorch export) are the exhaustive
/// `match`es the compiler points to.
macro_rules! parameter_free_activation {
    () => {
        $crate::graph::LayerKind::Relu
            | $crate::graph::LayerKind::Sigmoid
            | $crate::graph::LayerKind::Tanh
            | $crate::graph::LayerKind::Relu6
            | $crate::graph::LayerKind::HardSigmoid
            | $crate::graph::LayerKind::HardSwish
            | $crate::graph::LayerKind::Silu
    };
}
pub(crate) use parameter_free_activation;

/// The kinds without parameter tensors, as one pattern: what
/// `infer::param_tensors`, cost and [`LayerKind::has_weights`] match on, so
/// a new kind is listed once (here, or with its tensors in
/// `infer/params.rs`) and every one of those `match`es stays exhaustive.
macro_rules! weightless_kind {
    () => {
        $crate::graph::LayerKind::Input { .. }
            | $crate::graph::LayerKind::ZeroPad2d { .. }
            | $crate::graph::LayerKind::MaxPool2d { .. }
            | $crate::graph::LayerKind::AvgPool2d { .. }
            | $crate::graph::LayerKind::GlobalAvgPool
            | $crate::graph::parameter_free_activation!()
            | $crate::graph::LayerKind::LeakyRelu { .. }
            | $crate::graph::LayerKind::Softmax
            | $crate::graph::LayerKind::Dropout { .. }
            | $crate::graph::LayerKind::Flatten
            | $crate::graph::LayerKind::Add
            | $crate::graph::LayerKind::Concat
            | $crate::graph::LayerKind::ChannelScale
            | $crate::graph::LayerKind::ChannelAffine { .. }
    };
}
pub(crate) use weightless_kind;

/// A kind's catalogue entry, from [`LayerKind::info`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The serialised tag, e.g. `conv2d`.
    pub tag: &'static str,
    /// Human-readable kind, as shown in tables and on nodes.
    pub name: &'static str,
    /// One line on what the layer computes (the palette's tooltip).
    pub description: &'static str,
    /// How its output shape follows from its input.
    pub shape_rule: &'static str,
}

/// How many inputs a layer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    None,
    One,
    /// Two or more, numbered from 0.
    Many,
}

impl LayerKind {
    /// Every kind with sensible defaults, in palette order.
    pub fn catalogue() -> Vec<LayerKind> {
        use LayerKind::*;
        vec![
            Input {
                height: 64,
                width: 64,
                channels: 3,
            },
            Conv2d {
                filters: 32,
                kernel: [3, 3],
                stride: [1, 1],
                padding: Padding::Same,
                groups: 1,
                bias: true,
                dilation: [1, 1],
            },
            ZeroPad2d {
                padding: [1, 1, 1, 1],
            },
            MaxPool2d {
                kernel: [2, 2],
                stride: [2, 2],
                padding: Padding::Valid,
                ceil_mode: false,
            },
            AvgPool2d {
                kernel: [2, 2],
                stride: [2, 2],
                padding: Padding::Valid,
                ceil_mode: false,
                include_padding: false,
            },
            GlobalAvgPool,
            BatchNorm {
                epsilon: default_bn_epsilon(),
                momentum: default_bn_momentum(),
            },
            Relu,
            LeakyRelu {
                alpha: default_leaky_alpha(),
            },
            Sigmoid,
            Tanh,
            Relu6,
            HardSigmoid,
            HardSwish,
            Silu,
            Softmax,
            Dropout { rate: 0.5 },
            Flatten,
            Dense {
                units: 10,
                bias: true,
            },
            Add,
            Concat,
            ChannelScale,
            // The identity on RGB; its constants are edited in the design file.
            ChannelAffine {
                scale: vec![1.0; 3],
                shift: vec![0.0; 3],
            },
        ]
    }

    /// What the catalogue says about the kind: its serialised tag, name,
    /// one-line description and shape rule, from one table so they cannot
    /// drift apart.
    pub fn info(&self) -> KindInfo {
        use LayerKind::*;
        let (tag, name, description, shape_rule) = match self {
            Input { .. } => (
                "input",
                "Input",
                "The images fed to the network.",
                "H×W×C as set",
            ),
            Conv2d { .. } => (
                "conv2d",
                "Conv2D",
                "Learned filters slid over the volume (optionally grouped and dilated).",
                "out = floor((n + 2p - d(f-1) - 1)/s) + 1 per axis; C = filters",
            ),
            ZeroPad2d { .. } => (
                "zero_pad2d",
                "ZeroPad2D",
                "Zeros added around the border.",
                "H + top + bottom × W + left + right × C",
            ),
            MaxPool2d { .. } => (
                "max_pool2d",
                "MaxPool2D",
                "The largest value of each window.",
                "out = floor((n + 2p - f)/s) + 1 per axis; C unchanged",
            ),
            AvgPool2d { .. } => (
                "avg_pool2d",
                "AvgPool2D",
                "The mean of each window, counting padded zeros or not.",
                "out = floor((n + 2p - f)/s) + 1 per axis; C unchanged",
            ),
            GlobalAvgPool => (
                "global_avg_pool",
                "GlobalAvgPool",
                "The mean of each channel over the whole image.",
                "H×W×C -> C",
            ),
            BatchNorm { .. } => (
                "batch_norm",
                "BatchNorm",
                "Normalises each channel over the batch, then scales and shifts it.",
                "unchanged",
            ),
            Relu => ("relu", "ReLU", "max(x, 0), element-wise.", "unchanged"),
            LeakyRelu { .. } => (
                "leaky_relu",
                "LeakyReLU",
                "x for x > 0, else α·x, element-wise.",
                "unchanged",
            ),
            Sigmoid => (
                "sigmoid",
                "Sigmoid",
                "1 / (1 + e^-x), element-wise.",
                "unchanged",
            ),
            Tanh => ("tanh", "Tanh", "tanh(x), element-wise.", "unchanged"),
            Relu6 => (
                "relu6",
                "ReLU6",
                "min(max(x, 0), 6), element-wise (MobileNet).",
                "unchanged",
            ),
            HardSigmoid => (
                "hard_sigmoid",
                "HardSigmoid",
                "relu6(x + 3) / 6, element-wise: a cheap sigmoid.",
                "unchanged",
            ),
            HardSwish => (
                "hard_swish",
                "HardSwish",
                "x · relu6(x + 3) / 6, element-wise (MobileNetV3).",
                "unchanged",
            ),
            Silu => (
                "silu",
                "SiLU",
                "Swish: x · sigmoid(x), element-wise (EfficientNet).",
                "unchanged",
            ),
            Softmax => (
                "softmax",
                "Softmax",
                "Class probabilities: e^x / Σ e^x over the last axis.",
                "unchanged",
            ),
            Dropout { .. } => (
                "dropout",
                "Dropout",
                "Zeroes a random share of values while training.",
                "unchanged",
            ),
            Flatten => (
                "flatten",
                "Flatten",
                "The volume as one vector.",
                "H×W×C -> H·W·C",
            ),
            Dense { .. } => (
                "dense",
                "Dense",
                "Every input connected to every unit (fully connected).",
                "vector -> units",
            ),
            Add => (
                "add",
                "Add",
                "Element-wise sum of two or more inputs.",
                "all inputs the same shape; unchanged",
            ),
            Concat => (
                "concat",
                "Concat",
                "Inputs stacked along the channel axis.",
                "same H×W; C = sum of the inputs' C",
            ),
            ChannelScale => (
                "channel_scale",
                "ChannelScale",
                "Each channel of input 0 times the matching gate value of input 1 (squeeze-and-excitation).",
                "H×W×C (input 0) × C or 1×1×C (input 1) -> H×W×C",
            ),
            ChannelAffine { .. } => (
                "channel_affine",
                "ChannelAffine",
                "Each channel times a fixed scale plus a fixed shift (constants, not trained): input normalisation.",
                "unchanged; C = the number of scales and shifts",
            ),
        };
        KindInfo {
            tag,
            name,
            description,
            shape_rule,
        }
    }

    /// The serialised tag, e.g. `conv2d`.
    pub fn tag(&self) -> &'static str {
        self.info().tag
    }

    /// Human-readable kind, as shown in tables and on nodes.
    pub fn display_name(&self) -> &'static str {
        self.info().name
    }

    /// Key parameters in a few characters, e.g. `32 · 3×3 /2 same`.
    pub fn summary(&self) -> String {
        use LayerKind::*;
        let stride = |s: &[u32; 2]| {
            if s[0] == s[1] {
                if s[0] == 1 {
                    String::new()
                } else {
                    format!(" /{}", s[0])
                }
            } else {
                format!(" /{}×{}", s[0], s[1])
            }
        };
        match self {
            Input {
                height,
                width,
                channels,
            } => format!("{height}×{width}×{channels}"),
            Conv2d {
                filters,
                kernel,
                stride: s,
                padding,
                groups,
                dilation,
                ..
            } => {
                let g = if *groups > 1 {
                    format!(" g{groups}")
                } else {
                    String::new()
                };
                let d = match *dilation {
                    [1, 1] => String::new(),
                    [a, b] if a == b => format!(" d{a}"),
                    [a, b] => format!(" d{a}×{b}"),
                };
                format!(
                    "{filters} · {}×{}{} {}{g}{d}",
                    kernel[0],
                    kernel[1],
                    stride(s),
                    padding.label()
                )
            }
            ZeroPad2d { padding } => Padding::Explicit(*padding).label(),
            MaxPool2d {
                kernel,
                stride: s,
                padding,
                ceil_mode,
            }
            | AvgPool2d {
                kernel,
                stride: s,
                padding,
                ceil_mode,
                ..
            } => format!(
                "{}×{}{} {}{}{}",
                kernel[0],
                kernel[1],
                stride(s),
                padding.label(),
                if *ceil_mode { " ceil" } else { "" },
                match self {
                    AvgPool2d {
                        include_padding: true,
                        padding: Padding::Same | Padding::Explicit(_),
                        ..
                    } => " incl. pad",
                    _ => "",
                }
            ),
            BatchNorm { momentum, .. } => format!("momentum {momentum}"),
            LeakyRelu { alpha } => format!("α {alpha}"),
            Dropout { rate } => format!("rate {rate}"),
            Dense { units, .. } => format!("{units} units"),
            ChannelAffine { scale, .. } => format!("×/+ {} ch", scale.len()),
            GlobalAvgPool
            | parameter_free_activation!()
            | Softmax
            | Flatten
            | Add
            | Concat
            | ChannelScale => String::new(),
        }
    }

    pub fn arity(&self) -> Arity {
        match self {
            LayerKind::Input { .. } => Arity::None,
            // ChannelScale takes exactly two; inference says so when it has more.
            LayerKind::Add | LayerKind::Concat | LayerKind::ChannelScale => Arity::Many,
            _ => Arity::One,
        }
    }

    /// Whether the layer holds trainable parameters.
    pub fn has_weights(&self) -> bool {
        match self {
            LayerKind::Conv2d { .. } | LayerKind::Dense { .. } | LayerKind::BatchNorm { .. } => {
                true
            }
            weightless_kind!() => false,
        }
    }

    /// Checks parameters that are wrong whatever the layer is connected to.
    pub fn validate(&self) -> Result<(), String> {
        use LayerKind::*;
        let positive = |what: &str, v: u32| {
            if v == 0 {
                Err(format!("{what} must be at least 1, got 0"))
            } else {
                Ok(())
            }
        };
        let pair = |what: &str, v: &[u32; 2]| {
            positive(&format!("{what} height"), v[0])?;
            positive(&format!("{what} width"), v[1])
        };
        match self {
            Input {
                height,
                width,
                channels,
            } => {
                positive("height", *height)?;
                positive("width", *width)?;
                positive("channels", *channels)
            }
            Conv2d {
                filters,
                kernel,
                stride,
                groups,
                dilation,
                ..
            } => {
                positive("filters", *filters)?;
                pair("kernel", kernel)?;
                pair("stride", stride)?;
                pair("dilation", dilation)?;
                positive("groups", *groups)?;
                if filters % groups != 0 {
                    return Err(format!(
                        "filters ({filters}) must be divisible by groups ({groups})"
                    ));
                }
                Ok(())
            }
            MaxPool2d { kernel, stride, .. } | AvgPool2d { kernel, stride, .. } => {
                pair("kernel", kernel)?;
                pair("stride", stride)
            }
            BatchNorm { epsilon, momentum } => {
                if !(epsilon.is_finite() && *epsilon > 0.0) {
                    return Err(format!("epsilon must be positive, got {epsilon}"));
                }
                if !(0.0..1.0).contains(momentum) {
                    return Err(format!("momentum must be in [0, 1), got {momentum}"));
                }
                Ok(())
            }
            LeakyRelu { alpha } => {
                if alpha.is_finite() {
                    Ok(())
                } else {
                    Err(format!("alpha must be finite, got {alpha}"))
                }
            }
            Dropout { rate } => {
                if (0.0..1.0).contains(rate) {
                    Ok(())
                } else {
                    Err(format!("rate must be in [0, 1), got {rate}"))
                }
            }
            Dense { units, .. } => positive("units", *units),
            ChannelAffine { scale, shift } => {
                if scale.is_empty() || scale.len() != shift.len() {
                    return Err(format!(
                        "needs one scale and one shift per channel, got {} scales and {} shifts",
                        scale.len(),
                        shift.len()
                    ));
                }
                match scale.iter().chain(shift).find(|v| !v.is_finite()) {
                    Some(v) => Err(format!("scales and shifts must be finite, got {v}")),
                    None => Ok(()),
                }
            }
            ZeroPad2d { .. }
            | GlobalAvgPool
            | parameter_free_activation!()
            | Softmax
            | Flatten
            | Add
            | Concat
            | ChannelScale => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_defaults_fill_in_and_round_trip() {
        let kind: LayerKind =
            serde_json::from_str(r#"{"kind":"conv2d","filters":8,"kernel":[3,3]}"#).unwrap();
        assert_eq!(
            kind,
            LayerKind::Conv2d {
                filters: 8,
                kernel: [3, 3],
                stride: [1, 1],
                padding: Padding::Valid,
                groups: 1,
                bias: true,
                dilation: [1, 1],
            }
        );
        let text = serde_json::to_string(&kind).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"conv2d","filters":8,"kernel":[3,3],"stride":[1,1],"padding":"valid"}"#
        );
    }

    #[test]
    fn explicit_padding_serialises_readably() {
        let p = serde_json::to_string(&Padding::Explicit([1, 2, 3, 4])).unwrap();
        assert_eq!(p, r#"{"explicit":[1,2,3,4]}"#);
    }

    #[test]
    fn every_catalogue_kind_round_trips_and_validates() {
        for kind in LayerKind::catalogue() {
            kind.validate().unwrap();
            let text = serde_json::to_string(&kind).unwrap();
            assert!(text.contains(kind.tag()), "{text}");
            let back: LayerKind = serde_json::from_str(&text).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn zero_kernel_and_stride_are_refused() {
        let conv = LayerKind::Conv2d {
            filters: 8,
            kernel: [0, 3],
            stride: [1, 1],
            padding: Padding::Valid,
            groups: 1,
            bias: true,
            dilation: [1, 1],
        };
        assert_eq!(
            conv.validate().unwrap_err(),
            "kernel height must be at least 1, got 0"
        );
        let pool = LayerKind::MaxPool2d {
            kernel: [2, 2],
            stride: [2, 0],
            padding: Padding::Valid,
            ceil_mode: false,
        };
        assert!(pool.validate().unwrap_err().contains("stride width"));
    }

    #[test]
    fn channel_affine_needs_matching_finite_constants() {
        let affine = |scale: Vec<f32>, shift: Vec<f32>| LayerKind::ChannelAffine { scale, shift };
        assert!(affine(vec![2.0, 0.5], vec![-1.0, 0.0]).validate().is_ok());
        let err = affine(vec![1.0; 3], vec![0.0; 2]).validate().unwrap_err();
        assert!(err.contains("3 scales and 2 shifts"), "{err}");
        assert!(affine(vec![], vec![]).validate().is_err());
        let err = affine(vec![f32::NAN], vec![0.0]).validate().unwrap_err();
        assert!(err.contains("finite"), "{err}");
        let text = serde_json::to_string(&affine(vec![0.458, 1.0], vec![-0.03, 0.0])).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"channel_affine","scale":[0.458,1.0],"shift":[-0.03,0.0]}"#
        );
    }
}
