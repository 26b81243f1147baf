//! A layer kind's parameter tensors: the one place that says which tensors
//! a kind has, what each is for, its Netloom shape and its layout.
//!
//! Cost (`infer/cost.rs`: the param counts), the plan (`train/plan.rs`: the
//! tensors it allocates and initialises) and interop (`interop/mod.rs`:
//! the keys and shapes of exported weights and their framework layouts) all
//! read [`param_tensors`].

use super::shape::Shape;
use crate::graph::{LayerKind, weightless_kind};

/// What a parameter tensor is, which decides its key suffix, its init,
/// weight decay and update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    Weight,
    Bias,
    Gamma,
    Beta,
    RunningMean,
    RunningVar,
}

impl ParamRole {
    /// The key suffix: a tensor is stored as `{layer}.{suffix}`.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::Gamma => "gamma",
            ParamRole::Beta => "beta",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
        }
    }

    /// Learned by gradient descent (running statistics are not).
    pub fn is_learned(self) -> bool {
        !matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

/// How a tensor's values are laid out, in Netloom and in the frameworks
/// (ONNX, PyTorch), which decides how weights convert between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamLayout {
    /// Conv weight: Netloom HWIO `[kh][kw][cin/groups][cout]`, framework OIHW.
    ConvHwio,
    /// Dense weight: Netloom `[in][out]`, framework `[out][in]`; its input
    /// rows follow the flattened input's element order.
    DenseInOut,
    /// One value per output channel (a bias): the same in every layout.
    PerOutput,
    /// One value per input element (BatchNorm's vectors): follows the
    /// input's element order, like a Dense weight's rows.
    PerInput,
}

/// One parameter tensor of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub role: ParamRole,
    /// The Netloom shape (conv HWIO, dense `[in, out]`, vectors `[n]`).
    pub shape: Vec<u64>,
    pub layout: ParamLayout,
}

impl ParamSpec {
    /// The shape as `usize` dimensions.
    pub fn dims(&self) -> Vec<usize> {
        self.shape.iter().map(|&d| d as usize).collect()
    }

    /// The number of values, or `None` when it overflows `u64`.
    pub fn elements(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

/// The parameter tensors of `kind` given its (first) input's shape, in
/// Netloom key order. An unknown input counts as 0 channels/elements.
pub fn param_tensors(kind: &LayerKind, input: Option<Shape>) -> Vec<ParamSpec> {
    let spec = |role, shape, layout| ParamSpec {
        role,
        shape,
        layout,
    };
    let cin = input.map_or(0, |s| s.channels());
    match *kind {
        LayerKind::Conv2d {
            filters,
            kernel,
            groups,
            bias,
            ..
        } => {
            let f = filters as u64;
            let per_group = cin / (groups as u64).max(1);
            let shape = vec![kernel[0] as u64, kernel[1] as u64, per_group, f];
            let mut v = vec![spec(ParamRole::Weight, shape, ParamLayout::ConvHwio)];
            if bias {
                v.push(spec(ParamRole::Bias, vec![f], ParamLayout::PerOutput));
            }
            v
        }
        LayerKind::Dense { units, bias } => {
            let n = input.map_or(0, |s| s.elements());
            let u = units as u64;
            let mut v = vec![spec(ParamRole::Weight, vec![n, u], ParamLayout::DenseInOut)];
            if bias {
                v.push(spec(ParamRole::Bias, vec![u], ParamLayout::PerOutput));
            }
            v
        }
        LayerKind::BatchNorm { .. } => [
            ParamRole::Gamma,
            ParamRole::Beta,
            ParamRole::RunningMean,
            ParamRole::RunningVar,
        ]
        .into_iter()
        .map(|role| spec(role, vec![cin], ParamLayout::PerInput))
        .collect(),
        weightless_kind!() => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_kind_with_weights_has_tensors_and_no_other_does() {
        let input = Some(Shape::Volume { h: 8, w: 8, c: 4 });
        for kind in LayerKind::catalogue() {
            let tensors = param_tensors(&kind, input);
            assert_eq!(
                !tensors.is_empty(),
                kind.has_weights(),
                "{}",
                kind.display_name()
            );
        }
    }

    #[test]
    fn shapes_follow_the_input() {
        let conv = LayerKind::Conv2d {
            filters: 6,
            kernel: [3, 2],
            stride: [1, 1],
            padding: crate::graph::Padding::Valid,
            groups: 2,
            bias: true,
            dilation: [1, 1],
        };
        let t = param_tensors(&conv, Some(Shape::Volume { h: 9, w: 9, c: 4 }));
        assert_eq!(t[0].shape, [3, 2, 2, 6]);
        assert_eq!(
            (t[0].role, t[0].layout),
            (ParamRole::Weight, ParamLayout::ConvHwio)
        );
        assert_eq!(
            (t[1].role, t[1].shape.as_slice()),
            (ParamRole::Bias, &[6][..])
        );
        let dense = LayerKind::Dense {
            units: 5,
            bias: false,
        };
        let t = param_tensors(&dense, Some(Shape::Volume { h: 2, w: 3, c: 4 }));
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].dims(), t[0].elements()), (vec![24, 5], Some(120)));
    }
}
