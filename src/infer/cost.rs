//! Parameters and multiply counts per layer, under explicit conventions.
//!
//! Published figures disagree on what to count, so the conventions are data:
//! - MACs (the course's "multiplies": conv and dense weight products only —
//!   bias, BatchNorm, activations and pooling are not counted) or FLOPs = 2×MACs;
//! - Keras-style params (BatchNorm moving mean/variance counted, as
//!   non-trainable) or PyTorch-style (running statistics are buffers, not params).

use super::params::param_tensors;
use super::shape::{Axis, Shape};
use crate::graph::{LayerKind, weightless_kind};
use serde::Serialize;

/// How operations are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum OpCount {
    #[default]
    Macs,
    /// 2 × MACs: one multiply and one add each.
    Flops,
}

/// Which parameters are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ParamStyle {
    /// BatchNorm moving mean/variance are non-trainable params.
    #[default]
    Keras,
    /// BatchNorm running statistics are buffers and not counted.
    PyTorch,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Conventions {
    pub ops: OpCount,
    pub params: ParamStyle,
}

impl Conventions {
    /// Operations for a MAC count under this convention.
    pub fn ops(&self, macs: u64) -> u64 {
        match self.ops {
            OpCount::Macs => macs,
            OpCount::Flops => macs.saturating_mul(2),
        }
    }

    pub fn ops_unit(&self) -> &'static str {
        match self.ops {
            OpCount::Macs => "MACs",
            OpCount::Flops => "FLOPs",
        }
    }
}

/// The cost of one layer, convention-free; apply [`Conventions`] to read it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerCost {
    /// Learned weights (kernels, biases, BN γ/β).
    pub weights: u64,
    /// BatchNorm moving mean and variance.
    pub running_stats: u64,
    pub macs: u64,
    /// How the MACs arise, e.g. `28·28·32 · 5·5·192 = 120,422,400`.
    pub macs_arithmetic: String,
    /// How the params arise, e.g. `5·5·192·32 + 32 = 153,632`.
    pub params_arithmetic: String,
}

impl LayerCost {
    /// `(trainable, non_trainable)` under `style`; frozen layers' weights are non-trainable.
    pub fn params(&self, style: ParamStyle, frozen: bool) -> (u64, u64) {
        let stats = match style {
            ParamStyle::Keras => self.running_stats,
            ParamStyle::PyTorch => 0,
        };
        if frozen {
            (0, self.weights + stats)
        } else {
            (self.weights, stats)
        }
    }
}

/// Formats an integer with thousands separators: `120,422,400`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Short human form: `120.4M`, `1.58G`, `15.9K`.
pub fn compact(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}G", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1}M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}K", f / 1e3)
    } else {
        n.to_string()
    }
}

/// The product of `factors`, or an error naming `what` when it overflows `u64`.
fn product(what: &str, factors: &[u64]) -> Result<u64, String> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            let text: Vec<String> = factors.iter().map(u64::to_string).collect();
            format!(
                "{what} {} overflows 64-bit arithmetic; the layer is far too large",
                text.join("·")
            )
        })
}

/// `(learned, running statistics)`: the values of `kind`'s parameter
/// tensors ([`param_tensors`]), or an error when a count overflows `u64`.
fn tensor_counts(kind: &LayerKind, input: Option<Shape>) -> Result<(u64, u64), String> {
    let mut counts = (0u64, 0u64);
    for t in param_tensors(kind, input) {
        let n = product("parameter count", &t.shape)?;
        let sum = if t.role.is_learned() {
            &mut counts.0
        } else {
            &mut counts.1
        };
        *sum = sum
            .checked_add(n)
            .ok_or("parameter count overflows 64-bit arithmetic")?;
    }
    Ok(counts)
}

/// The cost of `kind` with input shape `input` and output shape `output`,
/// or why a count does not fit in `u64`.
pub fn layer_cost(
    kind: &LayerKind,
    input: Option<Shape>,
    output: Shape,
    window: Option<&[Axis; 2]>,
) -> Result<LayerCost, String> {
    Ok(match kind {
        LayerKind::Conv2d {
            filters,
            kernel,
            groups,
            bias,
            ..
        } => {
            let cin = input.map(|s| s.channels()).unwrap_or(0);
            let per_group = cin / (*groups as u64).max(1);
            let (kh, kw, f) = (kernel[0] as u64, kernel[1] as u64, *filters as u64);
            let (weights, _) = tensor_counts(kind, input)?;
            let (oh, ow) = window.map_or((0, 0), |a| (a[0].output, a[1].output));
            let macs = product("multiply count", &[oh, ow, f, kh, kw, per_group])?;
            let cin_text = if *groups > 1 {
                format!("({cin}/{groups})")
            } else {
                cin.to_string()
            };
            LayerCost {
                weights,
                running_stats: 0,
                macs,
                macs_arithmetic: format!(
                    "{oh}·{ow}·{f} · {kh}·{kw}·{cin_text} = {}",
                    thousands(macs)
                ),
                params_arithmetic: if *bias {
                    format!("{kh}·{kw}·{cin_text}·{f} + {f} = {}", thousands(weights))
                } else {
                    format!("{kh}·{kw}·{cin_text}·{f} = {}", thousands(weights))
                },
            }
        }
        LayerKind::Dense { units, bias } => {
            let n = input.map(|s| s.elements()).unwrap_or(0);
            let u = *units as u64;
            let macs = product("weight count", &[n, u])?;
            let (weights, _) = tensor_counts(kind, input)?;
            LayerCost {
                weights,
                running_stats: 0,
                macs,
                macs_arithmetic: format!("{n} · {u} = {}", thousands(macs)),
                params_arithmetic: if *bias {
                    format!("{n}·{u} + {u} = {}", thousands(weights))
                } else {
                    format!("{n}·{u} = {}", thousands(weights))
                },
            }
        }
        LayerKind::BatchNorm { .. } => {
            let c = output.channels();
            let (weights, running_stats) = tensor_counts(kind, input)?;
            LayerCost {
                weights,
                running_stats,
                macs: 0,
                macs_arithmetic: "not counted (normalisation)".into(),
                params_arithmetic: format!(
                    "γ,β: 2·{c} = {} trainable; mean,var: 2·{c} = {} running statistics",
                    thousands(2 * c),
                    thousands(2 * c)
                ),
            }
        }
        weightless_kind!() => LayerCost {
            macs_arithmetic: "0 (no weights)".into(),
            params_arithmetic: "0".into(),
            ..Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_and_compact() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(120_422_400), "120,422,400");
        assert_eq!(compact(120_422_400), "120.4M");
        assert_eq!(compact(1_582_671_872), "1.58G");
    }

    #[test]
    fn bn_params_follow_style() {
        let cost = layer_cost(
            &LayerKind::BatchNorm {
                epsilon: 1e-3,
                momentum: 0.9,
            },
            Some(Shape::Vector(32)),
            Shape::Vector(32),
            None,
        )
        .unwrap();
        assert_eq!(cost.params(ParamStyle::Keras, false), (64, 64));
        assert_eq!(cost.params(ParamStyle::PyTorch, false), (64, 0));
        assert_eq!(cost.params(ParamStyle::Keras, true), (0, 128));
    }

    #[test]
    fn a_channel_affine_costs_nothing() {
        let affine = LayerKind::ChannelAffine {
            scale: vec![2.0; 3],
            shift: vec![1.0; 3],
        };
        let v = Shape::Volume { h: 8, w: 8, c: 3 };
        let cost = layer_cost(&affine, Some(v), v, None).unwrap();
        assert_eq!((cost.weights, cost.running_stats, cost.macs), (0, 0, 0));
    }

    #[test]
    fn overflowing_counts_are_errors_not_wraps() {
        let dense = LayerKind::Dense {
            units: u32::MAX,
            bias: true,
        };
        let n = 1u64 << 40;
        let err = layer_cost(&dense, Some(Shape::Vector(n)), Shape::Vector(1), None).unwrap_err();
        assert!(err.contains("overflows"), "{err}");
        let ok = layer_cost(&dense, Some(Shape::Vector(1 << 31)), Shape::Vector(1), None).unwrap();
        assert_eq!(ok.macs, (1u64 << 31) * u32::MAX as u64);
    }
}
