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
            Softmax,
            Dropout { rate: 0.5 },
            Flatten,
            Dense {
                units: 10,
                bias: true,
            },
            Add,
            Concat,
        ]
    }

    /// The serialised tag and the human-readable name, from one table so they cannot drift apart.
    fn names(&self) -> (&'static str, &'static str) {
        use LayerKind::*;
        match self {
            Input { .. } => ("input", "Input"),
            Conv2d { .. } => ("conv2d", "Conv2D"),
            ZeroPad2d { .. } => ("zero_pad2d", "ZeroPad2D"),
            MaxPool2d { .. } => ("max_pool2d", "MaxPool2D"),
            AvgPool2d { .. } => ("avg_pool2d", "AvgPool2D"),
            GlobalAvgPool => ("global_avg_pool", "GlobalAvgPool"),
            BatchNorm { .. } => ("batch_norm", "BatchNorm"),
            Relu => ("relu", "ReLU"),
            LeakyRelu { .. } => ("leaky_relu", "LeakyReLU"),
            Sigmoid => ("sigmoid", "Sigmoid"),
            Tanh => ("tanh", "Tanh"),
            Softmax => ("softmax", "Softmax"),
            Dropout { .. } => ("dropout", "Dropout"),
            Flatten => ("flatten", "Flatten"),
            Dense { .. } => ("dense", "Dense"),
            Add => ("add", "Add"),
            Concat => ("concat", "Concat"),
        }
    }

    /// The serialised tag, e.g. `conv2d`.
    pub fn tag(&self) -> &'static str {
        self.names().0
    }

    /// Human-readable kind, as shown in tables and on nodes.
    pub fn display_name(&self) -> &'static str {
        self.names().1
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
                ..
            } => {
                let g = if *groups > 1 {
                    format!(" g{groups}")
                } else {
                    String::new()
                };
                format!(
                    "{filters} · {}×{}{} {}{g}",
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
            } => format!(
                "{}×{}{} {}{}",
                kernel[0],
                kernel[1],
                stride(s),
                padding.label(),
                if *ceil_mode { " ceil" } else { "" }
            ),
            BatchNorm { momentum, .. } => format!("momentum {momentum}"),
            LeakyRelu { alpha } => format!("α {alpha}"),
            Dropout { rate } => format!("rate {rate}"),
            Dense { units, .. } => format!("{units} units"),
            GlobalAvgPool | Relu | Sigmoid | Tanh | Softmax | Flatten | Add | Concat => {
                String::new()
            }
        }
    }

    pub fn arity(&self) -> Arity {
        match self {
            LayerKind::Input { .. } => Arity::None,
            LayerKind::Add | LayerKind::Concat => Arity::Many,
            _ => Arity::One,
        }
    }

    /// Whether the layer holds trainable parameters.
    pub fn has_weights(&self) -> bool {
        matches!(
            self,
            LayerKind::Conv2d { .. } | LayerKind::Dense { .. } | LayerKind::BatchNorm { .. }
        )
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
                ..
            } => {
                positive("filters", *filters)?;
                pair("kernel", kernel)?;
                pair("stride", stride)?;
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
            ZeroPad2d { .. }
            | GlobalAvgPool
            | Relu
            | Sigmoid
            | Tanh
            | Softmax
            | Flatten
            | Add
            | Concat => Ok(()),
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
                bias: true
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
}
