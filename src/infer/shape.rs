//! Output volume of every layer, with errors attached to the node at fault.

use crate::graph::{LayerKind, NodeId, Padding, parameter_free_activation};
use serde::Serialize;
use std::fmt;

/// A per-sample tensor shape: an H×W×C volume or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Shape {
    Volume { h: u64, w: u64, c: u64 },
    Vector(u64),
}

/// The most values one tensor of one sample may hold (2⁴⁸, about 2.8·10¹⁴):
/// far beyond any memory, yet small enough that sizes, costs and
/// byte counts derived from it stay far inside `u64`.
pub const MAX_ELEMENTS: u64 = 1 << 48;

impl Shape {
    /// Values per sample; saturates at `u64::MAX` (inference refuses any
    /// shape above [`MAX_ELEMENTS`], so an analysed shape never does).
    pub fn elements(&self) -> u64 {
        self.checked_elements().unwrap_or(u64::MAX)
    }

    /// Values per sample, or `None` when the product overflows `u64`.
    pub fn checked_elements(&self) -> Option<u64> {
        match *self {
            Shape::Volume { h, w, c } => h.checked_mul(w)?.checked_mul(c),
            Shape::Vector(n) => Some(n),
        }
    }

    /// An error when the shape holds more than [`MAX_ELEMENTS`] values.
    pub fn check_size(&self) -> Result<(), ShapeError> {
        match self.checked_elements() {
            Some(n) if n <= MAX_ELEMENTS => Ok(()),
            Some(n) => Err(ShapeError::new(format!(
                "output {self} has {n} values per sample, more than the 2^48 Netloom can represent"
            ))),
            None => Err(ShapeError::new(format!(
                "output {self} has more values per sample than 64-bit arithmetic can count"
            ))),
        }
    }

    /// The size of the last axis (features for BatchNorm and Softmax).
    pub fn channels(&self) -> u64 {
        match *self {
            Shape::Volume { c, .. } => c,
            Shape::Vector(n) => n,
        }
    }

    /// `[h, w, c]` or `[n]`, as in JSON output.
    pub fn dims(&self) -> Vec<u64> {
        match *self {
            Shape::Volume { h, w, c } => vec![h, w, c],
            Shape::Vector(n) => vec![n],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Volume { h, w, c } => write!(f, "{h}×{w}×{c}"),
            Shape::Vector(n) => write!(f, "{n}"),
        }
    }
}

/// A standard repair for a shape error, as data the UI can apply in one click.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum FixIt {
    /// Insert a 1×1 conv (with this stride and filter count) between `from`
    /// and input `input` of the Add: the ResNet convolutional-block shortcut.
    InsertProjection {
        from: NodeId,
        input: usize,
        stride: u32,
        filters: u32,
    },
    /// Insert a Flatten between `from` and the Dense layer.
    InsertFlatten { from: NodeId },
}

impl FixIt {
    pub fn describe(&self) -> String {
        match self {
            FixIt::InsertProjection {
                stride, filters, ..
            } => format!("insert a 1×1 conv, stride {stride}, {filters} filters on the shortcut"),
            FixIt::InsertFlatten { .. } => "insert a Flatten before the Dense layer".into(),
        }
    }
}

/// Why a node has no output shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShapeError {
    pub message: String,
    pub fix: Option<FixIt>,
}

impl ShapeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ShapeError {
            message: message.into(),
            fix: None,
        }
    }
}

/// A resolved sliding-window geometry along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Axis {
    pub input: u64,
    /// Taps of the window (the weight's extent, not its span).
    pub kernel: u64,
    /// Spacing of the taps: the window spans `dilation·(kernel − 1) + 1`.
    pub dilation: u64,
    pub stride: u64,
    pub pad_before: u64,
    pub pad_after: u64,
    pub output: u64,
}

/// Resolves padding along one axis: `floor((n + p_total − f)/s) + 1`, or
/// `ceil(n/s)` for `same`, or the ceil-mode rule (the last window must start
/// inside the input or its left padding, as PyTorch and Caffe require).
pub fn resolve_axis(
    n: u64,
    kernel: u64,
    stride: u64,
    padding: Padding,
    axis: usize,
    ceil_mode: bool,
) -> Result<Axis, String> {
    let (before, after) = match padding {
        Padding::Valid => (0, 0),
        Padding::Explicit(p) => {
            let p = if axis == 0 {
                [p[0], p[1]]
            } else {
                [p[2], p[3]]
            };
            (p[0] as u64, p[1] as u64)
        }
        Padding::Same => {
            let out = n.div_ceil(stride);
            let total = out
                .saturating_sub(1)
                .saturating_mul(stride)
                .saturating_add(kernel)
                .saturating_sub(n);
            (total / 2, total - total / 2)
        }
    };
    let dim = if axis == 0 { "height" } else { "width" };
    if stride == 0 {
        return Err(format!("stride {dim} must be at least 1, got 0"));
    }
    let padded = n
        .checked_add(before)
        .and_then(|p| p.checked_add(after))
        .filter(|&p| p <= MAX_ELEMENTS)
        .ok_or_else(|| format!("padded input {dim} {n} + {before} + {after} is too large"))?;
    if padded < kernel {
        return Err(format!(
            "kernel {dim} {kernel} is larger than the padded input {dim} {padded}"
        ));
    }
    let span = padded - kernel;
    let mut output = if ceil_mode && padding != Padding::Same {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil_mode && (output - 1) * stride >= n + before {
        output -= 1;
    }
    Ok(Axis {
        input: n,
        kernel,
        dilation: 1,
        stride,
        pad_before: before,
        pad_after: after,
        output,
    })
}

/// [`resolve_axis`] for a window of `kernel` taps `dilation` apart: it spans
/// `d(f − 1) + 1` inputs, so `out = ⌊(n + p_total − d(f − 1) − 1)/s⌋ + 1`.
pub fn resolve_dilated_axis(
    n: u64,
    kernel: u64,
    dilation: u64,
    stride: u64,
    padding: Padding,
    axis: usize,
) -> Result<Axis, String> {
    let dim = if axis == 0 { "height" } else { "width" };
    if dilation == 0 {
        return Err(format!("dilation {dim} must be at least 1, got 0"));
    }
    let span = kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|s| s.checked_add(1))
        .filter(|&s| s <= MAX_ELEMENTS)
        .ok_or_else(|| format!("kernel {dim} {kernel} dilated by {dilation} is too large"))?;
    let mut a = resolve_axis(n, span, stride, padding, axis, false).map_err(|e| {
        if dilation > 1 {
            format!("{e} (the kernel {kernel} dilated by {dilation} spans {span})")
        } else {
            e
        }
    })?;
    a.kernel = kernel;
    a.dilation = dilation;
    Ok(a)
}

/// The output shape of a layer given its input shapes, or the reason it has none.
/// `inputs` holds one entry per wired input; `None` means unconnected.
/// Returns the resolved window geometry for conv and pool layers too.
pub fn output_shape(
    kind: &LayerKind,
    inputs: &[(NodeId, Shape)],
) -> Result<(Shape, Option<[Axis; 2]>), ShapeError> {
    use LayerKind::*;
    let single = || -> Result<Shape, ShapeError> {
        match inputs {
            [(_, s)] => Ok(*s),
            _ => Err(ShapeError::new("needs exactly one input")),
        }
    };
    let volume = |what: &str| -> Result<(u64, u64, u64), ShapeError> {
        match single()? {
            Shape::Volume { h, w, c } => Ok((h, w, c)),
            Shape::Vector(n) => Err(ShapeError::new(format!(
                "{what} needs an H×W×C volume, but its input is a flat vector of {n}"
            ))),
        }
    };
    let window = |h: u64,
                  w: u64,
                  kernel: &[u32; 2],
                  stride: &[u32; 2],
                  padding: Padding,
                  ceil: bool|
     -> Result<[Axis; 2], ShapeError> {
        let ah = resolve_axis(h, kernel[0] as u64, stride[0] as u64, padding, 0, ceil)
            .map_err(ShapeError::new)?;
        let aw = resolve_axis(w, kernel[1] as u64, stride[1] as u64, padding, 1, ceil)
            .map_err(ShapeError::new)?;
        Ok([ah, aw])
    };
    match kind {
        Input {
            height,
            width,
            channels,
        } => Ok((
            Shape::Volume {
                h: *height as u64,
                w: *width as u64,
                c: *channels as u64,
            },
            None,
        )),
        Conv2d {
            filters,
            kernel,
            stride,
            padding,
            groups,
            dilation,
            ..
        } => {
            let (h, w, c) = volume("Conv2D")?;
            if *groups == 0 || c % *groups as u64 != 0 {
                return Err(ShapeError::new(format!(
                    "input channels ({c}) must be divisible by groups ({groups})"
                )));
            }
            let axis = |i: usize, n: u64| {
                let (k, d, s) = (kernel[i] as u64, dilation[i] as u64, stride[i] as u64);
                resolve_dilated_axis(n, k, d, s, *padding, i).map_err(ShapeError::new)
            };
            let axes = [axis(0, h)?, axis(1, w)?];
            Ok((
                Shape::Volume {
                    h: axes[0].output,
                    w: axes[1].output,
                    c: *filters as u64,
                },
                Some(axes),
            ))
        }
        ZeroPad2d { padding } => {
            let (h, w, c) = volume("ZeroPad2D")?;
            let p = padding.map(|v| v as u64);
            Ok((
                Shape::Volume {
                    h: h + p[0] + p[1],
                    w: w + p[2] + p[3],
                    c,
                },
                None,
            ))
        }
        MaxPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
        }
        | AvgPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
            ..
        } => {
            let (h, w, c) = volume(kind.display_name())?;
            let axes = window(h, w, kernel, stride, *padding, *ceil_mode)?;
            Ok((
                Shape::Volume {
                    h: axes[0].output,
                    w: axes[1].output,
                    c,
                },
                Some(axes),
            ))
        }
        GlobalAvgPool => {
            let (_, _, c) = volume("GlobalAvgPool")?;
            Ok((Shape::Vector(c), None))
        }
        Flatten => Ok((Shape::Vector(single()?.elements()), None)),
        Dense { units, .. } => match inputs {
            [(from, Shape::Volume { h, w, c })] => Err(ShapeError {
                message: format!(
                    "Dense needs a flat vector, but its input is a {h}×{w}×{c} volume: add Flatten or GlobalAvgPool before it"
                ),
                fix: Some(FixIt::InsertFlatten { from: *from }),
            }),
            _ => {
                single()?;
                Ok((Shape::Vector(*units as u64), None))
            }
        },
        BatchNorm { .. }
        | parameter_free_activation!()
        | LeakyRelu { .. }
        | Softmax
        | Dropout { .. } => Ok((single()?, None)),
        Add => add_shape(inputs).map(|s| (s, None)),
        Concat => concat_shape(inputs).map(|s| (s, None)),
        ChannelScale => channel_scale_shape(inputs).map(|s| (s, None)),
        ChannelAffine { scale, .. } => {
            let (_, _, c) = volume("ChannelAffine")?;
            if scale.len() as u64 != c {
                return Err(ShapeError::new(format!(
                    "ChannelAffine has {} scales and shifts but its input has {c} channels; \
                     give it one of each per channel",
                    scale.len()
                )));
            }
            Ok((single()?, None))
        }
    }
}

/// Input 0 is the H×W×C volume, input 1 its gate: C values, as a vector or
/// a 1×1×C volume. The output is the volume's shape.
fn channel_scale_shape(inputs: &[(NodeId, Shape)]) -> Result<Shape, ShapeError> {
    let [(_, volume), (_, gate)] = inputs else {
        return Err(ShapeError::new(format!(
            "ChannelScale needs exactly 2 inputs (the volume on input 0, the gate on input 1), has {}",
            inputs.len()
        )));
    };
    let Shape::Volume { c, .. } = *volume else {
        return Err(ShapeError::new(format!(
            "ChannelScale's input 0 must be an H×W×C volume, but it is a flat vector of {volume}"
        )));
    };
    let gate_c = match *gate {
        Shape::Vector(n) => n,
        Shape::Volume { h: 1, w: 1, c } => c,
        Shape::Volume { .. } => {
            return Err(ShapeError::new(format!(
                "ChannelScale's input 1 (the gate) must be 1×1×C or a vector of C, but it is {gate}; \
                 is the volume wired to input 1?"
            )));
        }
    };
    if gate_c != c {
        return Err(ShapeError::new(format!(
            "ChannelScale's gate has {gate_c} values but the volume has {c} channels"
        )));
    }
    Ok(*volume)
}

fn add_shape(inputs: &[(NodeId, Shape)]) -> Result<Shape, ShapeError> {
    if inputs.len() < 2 {
        return Err(ShapeError::new(format!(
            "Add needs at least 2 inputs, has {}",
            inputs.len()
        )));
    }
    // The target is the most downsampled, widest input: in a residual block
    // that is the main path, and the shortcut is what needs projecting.
    let target = inputs
        .iter()
        .map(|(_, s)| *s)
        .min_by_key(|s| match *s {
            Shape::Volume { h, w, c } => (h.saturating_mul(w), u64::MAX - c),
            Shape::Vector(n) => (1, u64::MAX - n),
        })
        .unwrap_or(inputs[0].1);
    let Some((index, (from, odd))) = inputs.iter().enumerate().find(|(_, (_, s))| *s != target)
    else {
        return Ok(target);
    };
    let shapes: Vec<String> = inputs.iter().map(|(_, s)| s.to_string()).collect();
    let mut error = ShapeError::new(format!(
        "Add needs identical input shapes, got {}",
        shapes.join(" + ")
    ));
    if let (
        Shape::Volume { h, w, .. },
        Shape::Volume {
            h: th,
            w: tw,
            c: tc,
        },
    ) = (*odd, target)
        && h % th == 0
        && w % tw == 0
        && h / th == w / tw
    {
        error.fix = Some(FixIt::InsertProjection {
            from: *from,
            input: index,
            stride: (h / th) as u32,
            filters: tc as u32,
        });
        error.message.push_str(&format!(
            "; {}",
            error.fix.as_ref().map(FixIt::describe).unwrap_or_default()
        ));
    }
    Err(error)
}

fn sum_or_error(a: u64, b: u64, what: &str) -> Result<u64, ShapeError> {
    a.checked_add(b)
        .filter(|&s| s <= MAX_ELEMENTS)
        .ok_or_else(|| ShapeError::new(format!("{what} overflow: {a} + {b} is too large")))
}

fn concat_shape(inputs: &[(NodeId, Shape)]) -> Result<Shape, ShapeError> {
    if inputs.len() < 2 {
        return Err(ShapeError::new(format!(
            "Concat needs at least 2 inputs, has {}",
            inputs.len()
        )));
    }
    match inputs[0].1 {
        Shape::Volume { h, w, .. } => {
            let mut channels = 0;
            for (_, s) in inputs {
                match *s {
                    Shape::Volume {
                        h: sh,
                        w: sw,
                        c: sc,
                    } if sh == h && sw == w => {
                        channels = sum_or_error(channels, sc, "Concat channels")?
                    }
                    other => {
                        let shapes: Vec<String> =
                            inputs.iter().map(|(_, s)| s.to_string()).collect();
                        return Err(ShapeError::new(format!(
                            "Concat needs equal H×W on every input, got {} ({other} differs from {h}×{w})",
                            shapes.join(", ")
                        )));
                    }
                }
            }
            Ok(Shape::Volume { h, w, c: channels })
        }
        Shape::Vector(_) => {
            let mut total = 0;
            for (_, s) in inputs {
                match *s {
                    Shape::Vector(n) => total = sum_or_error(total, n, "Concat features")?,
                    other => {
                        return Err(ShapeError::new(format!(
                            "Concat cannot join a vector with a {other} volume"
                        )));
                    }
                }
            }
            Ok(Shape::Vector(total))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(h: u64, w: u64, c: u64) -> Shape {
        Shape::Volume { h, w, c }
    }

    #[test]
    fn window_formula_matches_floor_rule() {
        // floor((n + 2p − f)/s) + 1
        let a = resolve_axis(227, 11, 4, Padding::Valid, 0, false).unwrap();
        assert_eq!(a.output, 55);
        let a = resolve_axis(27, 5, 1, Padding::symmetric(2), 0, false).unwrap();
        assert_eq!(a.output, 27);
        let a = resolve_axis(224, 7, 2, Padding::symmetric(3), 0, false).unwrap();
        assert_eq!(a.output, 112);
    }

    #[test]
    fn same_padding_follows_tensorflow() {
        let a = resolve_axis(64, 3, 2, Padding::Same, 0, false).unwrap();
        assert_eq!((a.output, a.pad_before, a.pad_after), (32, 0, 1));
        let a = resolve_axis(28, 5, 1, Padding::Same, 0, false).unwrap();
        assert_eq!((a.output, a.pad_before, a.pad_after), (28, 2, 2));
    }

    #[test]
    fn ceil_mode_rounds_up_but_keeps_last_window_inside() {
        let a = resolve_axis(112, 3, 2, Padding::Valid, 0, true).unwrap();
        assert_eq!(a.output, 56);
        let a = resolve_axis(112, 3, 2, Padding::Valid, 0, false).unwrap();
        assert_eq!(a.output, 55);
        // 4 wide, kernel 2, stride 2: ceil would add a window starting at 4 = outside.
        let a = resolve_axis(4, 2, 2, Padding::Valid, 0, true).unwrap();
        assert_eq!(a.output, 2);
    }

    #[test]
    fn kernel_larger_than_input_is_an_error() {
        let err = resolve_axis(3, 5, 1, Padding::Valid, 1, false).unwrap_err();
        assert_eq!(
            err,
            "kernel width 5 is larger than the padded input width 3"
        );
    }

    #[test]
    fn add_mismatch_offers_projection() {
        let main = (NodeId(1), vol(28, 28, 128));
        let shortcut = (NodeId(2), vol(56, 56, 64));
        let err = output_shape(&LayerKind::Add, &[main, shortcut]).unwrap_err();
        assert_eq!(
            err.fix,
            Some(FixIt::InsertProjection {
                from: NodeId(2),
                input: 1,
                stride: 2,
                filters: 128
            })
        );
        assert!(err.message.contains("56×56×64"));
        assert!(
            err.message
                .ends_with("insert a 1×1 conv, stride 2, 128 filters on the shortcut")
        );
    }

    #[test]
    fn concat_sums_channels_and_checks_spatial() {
        let ins = [
            (NodeId(0), vol(28, 28, 64)),
            (NodeId(1), vol(28, 28, 128)),
            (NodeId(2), vol(28, 28, 32)),
        ];
        assert_eq!(
            output_shape(&LayerKind::Concat, &ins).unwrap().0,
            vol(28, 28, 224)
        );
        let bad = [(NodeId(0), vol(28, 28, 64)), (NodeId(1), vol(14, 14, 64))];
        assert!(
            output_shape(&LayerKind::Concat, &bad)
                .unwrap_err()
                .message
                .contains("equal H×W")
        );
    }

    #[test]
    fn dense_after_volume_suggests_flatten() {
        let err = output_shape(
            &LayerKind::Dense {
                units: 10,
                bias: true,
            },
            &[(NodeId(3), vol(7, 7, 512))],
        )
        .unwrap_err();
        assert_eq!(err.fix, Some(FixIt::InsertFlatten { from: NodeId(3) }));
    }

    #[test]
    fn dilated_windows_span_d_times_f_minus_1_plus_1() {
        // 3×3 dilated by 2 with padding 2 keeps the size (DeepLab's atrous conv).
        let a = resolve_dilated_axis(17, 3, 2, 1, Padding::symmetric(2), 0).unwrap();
        assert_eq!((a.output, a.kernel, a.dilation), (17, 3, 2));
        // ⌊(10 + 0 − 2·2 − 1)/2⌋ + 1 = 3.
        let a = resolve_dilated_axis(10, 3, 2, 2, Padding::Valid, 0).unwrap();
        assert_eq!(a.output, 3);
        // `same` pads for the spanned window: 3 taps 3 apart span 7, pad 3 + 3.
        let a = resolve_dilated_axis(9, 3, 3, 1, Padding::Same, 1).unwrap();
        assert_eq!((a.output, a.pad_before, a.pad_after), (9, 3, 3));
        // Dilation 1 is the plain rule.
        assert_eq!(
            resolve_dilated_axis(27, 5, 1, 1, Padding::symmetric(2), 0).unwrap(),
            Axis {
                dilation: 1,
                ..resolve_axis(27, 5, 1, Padding::symmetric(2), 0, false).unwrap()
            }
        );
        let err = resolve_dilated_axis(4, 3, 2, 1, Padding::Valid, 0).unwrap_err();
        assert!(err.contains("spans 5"), "{err}");
        let err = resolve_dilated_axis(4, 3, 0, 1, Padding::Valid, 1).unwrap_err();
        assert_eq!(err, "dilation width must be at least 1, got 0");
        let err = resolve_dilated_axis(4, u64::MAX, u64::MAX, 1, Padding::Valid, 0).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn channel_scale_takes_a_volume_and_its_gate() {
        let scale = |ins: &[Shape]| {
            let ins: Vec<(NodeId, Shape)> = ins.iter().map(|s| (NodeId(0), *s)).collect();
            output_shape(&LayerKind::ChannelScale, &ins).map(|(s, _)| s)
        };
        assert_eq!(scale(&[vol(7, 5, 8), Shape::Vector(8)]), Ok(vol(7, 5, 8)));
        assert_eq!(scale(&[vol(7, 5, 8), vol(1, 1, 8)]), Ok(vol(7, 5, 8)));
        let err = scale(&[vol(7, 5, 8), Shape::Vector(4)]).unwrap_err();
        assert!(
            err.message.contains("4 values but the volume has 8"),
            "{err:?}"
        );
        let err = scale(&[Shape::Vector(8), vol(7, 5, 8)]).unwrap_err();
        assert!(
            err.message.contains("input 0 must be an H×W×C volume"),
            "{err:?}"
        );
        let err = scale(&[vol(1, 1, 8), vol(7, 5, 8)]).unwrap_err();
        assert!(
            err.message.contains("is the volume wired to input 1?"),
            "{err:?}"
        );
        let err = scale(&[vol(7, 5, 8)]).unwrap_err();
        assert!(err.message.contains("exactly 2 inputs"), "{err:?}");
    }

    #[test]
    fn channel_affine_keeps_a_volume_with_one_constant_pair_per_channel() {
        let affine = LayerKind::ChannelAffine {
            scale: vec![2.0; 3],
            shift: vec![0.5; 3],
        };
        let shape = |s: Shape| output_shape(&affine, &[(NodeId(0), s)]).map(|(s, _)| s);
        assert_eq!(shape(vol(5, 4, 3)), Ok(vol(5, 4, 3)));
        let err = shape(vol(5, 4, 8)).unwrap_err();
        assert!(
            err.message
                .contains("3 scales and shifts but its input has 8 channels"),
            "{err:?}"
        );
        let err = shape(Shape::Vector(3)).unwrap_err();
        assert!(err.message.contains("needs an H×W×C volume"), "{err:?}");
    }
}
