//! Per-channel arithmetic on a graph input written channel by channel, as
//! torchvision's GoogLeNet and Inception-v3 do with `transform_input`:
//!
//! ```text
//! x_c = unsqueeze(x[:, c], 1) * scale_c + shift_c    for every channel c
//! x   = cat((x_0, x_1, x_2), 1)
//! ```
//!
//! ONNX spells it `Gather(axis 1)` → `Unsqueeze([1])` → `Mul`/`Add` by
//! scalars → `Concat(axis 1)`. Each selected channel is tracked as a
//! [`Val::Channel`]; a Concat of all of them in order becomes one
//! [`LayerKind::ChannelAffine`](crate::graph::LayerKind::ChannelAffine)
//! holding the scales and shifts (constants, as in torch: no parameters).
//! Anything else done to a selected channel is refused by name.

use super::{Importer, Val, present_inputs};
use crate::infer::Shape;
use crate::interop::InteropError;
use crate::interop::onnx::attributes::attr_i;
use crate::interop::proto::NodeProto;

/// One channel taken out of a volume, with the affine map applied so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Channel {
    pub source: crate::graph::NodeId,
    /// Channels of the source volume.
    pub channels: u64,
    pub index: u64,
    pub scale: f64,
    pub shift: f64,
    /// Whether the channel axis is still there (after `Unsqueeze([1])`).
    pub kept: bool,
}

impl<'m> Importer<'m> {
    /// `Gather` of one channel (axis 1, a constant index) of a volume.
    pub(super) fn gather(&mut self, node: &NodeProto) -> Result<(), InteropError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let index = node.input.get(1).cloned().unwrap_or_default();
        let axis = attr_i(node, "axis").unwrap_or(0);
        let source = self.data(&x)?;
        let picked = self.konst(&index)?;
        if let (Some((id, Some(Shape::Volume { c, .. }))), Some((dims, Some(v)))) = (source, picked)
            && (axis == 1 || axis == -3)
            && v.len() == 1
            && dims.len() <= 1
        {
            let i = if v[0] < 0.0 { v[0] + c as f64 } else { v[0] };
            if i >= 0.0 && i < c as f64 {
                let channel = Channel {
                    source: id,
                    channels: c,
                    index: i as u64,
                    scale: 1.0,
                    shift: 0.0,
                    // `x[:, [i]]` keeps the axis, `x[:, i]` drops it.
                    kept: dims.len() == 1,
                };
                self.set_outputs(node, Val::Channel(channel));
                return Ok(());
            }
        }
        self.unsupported(node, "Gather (not one channel of a volume)".into())
    }

    /// An operator reading a [`Val::Channel`].
    pub(super) fn channel_op(&mut self, node: &NodeProto) -> Result<(), InteropError> {
        let ins = present_inputs(node);
        let channels: Vec<Channel> = ins
            .iter()
            .filter_map(|i| match self.values.get(i) {
                Some(Val::Channel(c)) => Some(*c),
                _ => None,
            })
            .collect();
        let op = node.op_type.as_str();
        let updated = match op {
            "Unsqueeze" => self.unsqueezed(node, channels[0])?,
            "Mul" | "Div" | "Add" | "Sub" if ins.len() == 2 && channels.len() == 1 => {
                self.affine(node, &ins, channels[0])?
            }
            "Concat" if channels.len() == ins.len() => {
                return self.concat_channels(node, &channels);
            }
            _ => None,
        };
        match updated {
            Some(c) => {
                self.set_outputs(node, Val::Channel(c));
                Ok(())
            }
            None => self.unsupported(node, format!("{op} (of one selected channel)")),
        }
    }

    fn unsqueezed(
        &mut self,
        node: &NodeProto,
        c: Channel,
    ) -> Result<Option<Channel>, InteropError> {
        let axes = self.axes(node)?;
        let ok = !c.kept && axes.is_some_and(|a| a == [1] || a == [-3]);
        Ok(ok.then_some(Channel { kept: true, ..c }))
    }

    /// `channel ∘ scalar` for Mul, Div, Add and Sub (either order where it commutes).
    fn affine(
        &mut self,
        node: &NodeProto,
        ins: &[String],
        c: Channel,
    ) -> Result<Option<Channel>, InteropError> {
        let channel_first = matches!(self.values.get(&ins[0]), Some(Val::Channel(_)));
        let other = if channel_first { &ins[1] } else { &ins[0] };
        let Some((dims, Some(v))) = self.konst(other)? else {
            return Ok(None);
        };
        if v.len() != 1 || dims.iter().any(|&d| d != 1) {
            return Ok(None);
        }
        let k = v[0];
        let next = match (node.op_type.as_str(), channel_first) {
            ("Mul", _) => Some((c.scale * k, c.shift * k)),
            ("Div", true) if k != 0.0 => Some((c.scale / k, c.shift / k)),
            ("Add", _) => Some((c.scale, c.shift + k)),
            ("Sub", true) => Some((c.scale, c.shift - k)),
            ("Sub", false) => Some((-c.scale, k - c.shift)),
            _ => None,
        };
        Ok(next.map(|(scale, shift)| Channel { scale, shift, ..c }))
    }

    /// All channels of one source, in order, back together: a ChannelAffine
    /// with their scales and shifts.
    fn concat_channels(&mut self, node: &NodeProto, parts: &[Channel]) -> Result<(), InteropError> {
        let axis = attr_i(node, "axis").unwrap_or(1);
        let first = parts[0];
        let whole = parts.len() as u64 == first.channels
            && parts
                .iter()
                .enumerate()
                .all(|(i, p)| p.source == first.source && p.index == i as u64 && p.kept)
            && (axis == 1 || axis == -3);
        if !whole {
            return self.unsupported(
                node,
                "Concat (of selected channels, not all in order)".into(),
            );
        }
        let name = super::layer_name(node);
        let scale = parts.iter().map(|p| p.scale).collect();
        let shift = parts.iter().map(|p| p.shift).collect();
        self.channel_affine(node, &name, first.source, scale, shift)
    }
}
