//! The inspector: edit the selected node's parameters (validated), see its
//! shapes, parameters and the arithmetic behind its cost.

use super::command::Command;
use super::document::Document;
use crate::graph::{LayerKind, NodeId, Padding};
use crate::infer::{Conventions, OpCount, ParamStyle, compact, thousands};
use egui::{DragValue, RichText, Ui};
use std::collections::BTreeSet;

#[derive(Default)]
pub struct Inspector {
    /// Parameters being edited; kept while invalid so the user can fix them.
    draft: Option<(NodeId, LayerKind)>,
    name_draft: Option<(NodeId, String)>,
}

/// The convention switches; apply to every number shown.
pub fn conventions_ui(ui: &mut Ui, conventions: &Conventions) -> Option<Command> {
    let mut c = *conventions;
    ui.horizontal(|ui| {
        ui.label("Count");
        ui.selectable_value(&mut c.ops, OpCount::Macs, "MACs");
        ui.selectable_value(&mut c.ops, OpCount::Flops, "FLOPs");
    });
    ui.horizontal(|ui| {
        ui.label("Params");
        ui.selectable_value(&mut c.params, ParamStyle::Keras, "Keras");
        ui.selectable_value(&mut c.params, ParamStyle::PyTorch, "PyTorch");
    });
    (c != *conventions).then_some(Command::SetConventions(c))
}

impl Inspector {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        doc: &Document,
        selection: &BTreeSet<NodeId>,
        conventions: &Conventions,
        training_memory: &str,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if let Some(c) = conventions_ui(ui, conventions) {
            out.push(c);
        }
        ui.separator();
        let totals = doc.analysis.totals(conventions);
        egui::Grid::new("design_totals")
            .num_columns(2)
            .show(ui, |ui| {
                // Values wrap at the inspector's edge: a long one would
                // widen everything below it past the window.
                ui.label("Design");
                ui.add(egui::Label::new(RichText::new(&doc.graph.name).strong()).wrap());
                ui.end_row();
                ui.label("Layers");
                ui.label(doc.graph.len().to_string());
                ui.end_row();
                ui.label(conventions.ops_unit());
                ui.label(format!(
                    "{} ({})",
                    compact(conventions.ops(totals.macs)),
                    thousands(conventions.ops(totals.macs))
                ));
                ui.end_row();
                ui.label("Params");
                ui.label(format!(
                    "{} ({} trainable)",
                    thousands(totals.total_params),
                    thousands(totals.trainable_params)
                ));
                ui.end_row();
                ui.label("Training memory");
                ui.add(egui::Label::new(training_memory).wrap())
                    .on_hover_text("the estimate the trainer checks before a run with the Run setup's batch and optimizer: activations and gradients × batch, parameters, optimizer state, workspaces");
                ui.end_row();
            });
        if let Some(e) = &doc.analysis.design_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        ui.separator();

        let id = match selection.iter().next() {
            Some(&id) if selection.len() == 1 => id,
            _ => {
                self.draft = None;
                self.name_draft = None;
                if selection.len() > 1 {
                    ui.label(format!("{} layers selected", selection.len()));
                } else {
                    ui.weak("Select a layer to edit it.");
                }
                return out;
            }
        };
        let Some(node) = doc.graph.node(id) else {
            return out;
        };

        // Keep the draft in step with the design unless it holds an invalid edit.
        match &self.draft {
            Some((d, k)) if *d == id && k.validate().is_err() => {}
            _ => self.draft = Some((id, node.kind.clone())),
        }
        if !matches!(&self.name_draft, Some((d, _)) if *d == id) {
            self.name_draft = Some((id, node.name.clone()));
        }

        ui.heading(node.kind.display_name());
        if let Some((_, name)) = &mut self.name_draft {
            ui.horizontal(|ui| {
                let l = ui.label("Name");
                let r = ui.text_edit_singleline(name).labelled_by(l.id);
                if r.lost_focus() {
                    if name.trim() != node.name && !name.trim().is_empty() {
                        out.push(Command::Rename {
                            id,
                            name: name.trim().to_string(),
                        });
                    } else {
                        *name = node.name.clone();
                    }
                }
            });
        }
        let mut frozen = node.frozen;
        if node.kind.has_weights() && ui.checkbox(&mut frozen, "Frozen (not trained)").changed() {
            out.push(Command::SetFrozen { id, frozen });
        }

        if let Some((_, draft)) = &mut self.draft {
            let mut sweep = None;
            let changed = egui::Grid::new("params")
                .num_columns(2)
                .show(ui, |ui| kind_editor_ui(ui, draft, &mut sweep))
                .inner;
            if let Some(param) = sweep {
                out.push(Command::OpenSweepOn {
                    node: id,
                    param: param.to_string(),
                });
            }
            match draft.validate() {
                Err(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                Ok(()) if changed && *draft != node.kind => out.push(Command::SetKind {
                    id,
                    kind: draft.clone(),
                }),
                Ok(()) => {}
            }
        }

        ui.separator();
        let Some(info) = doc.analysis.node(id) else {
            return out;
        };
        egui::Grid::new("shapes").num_columns(2).show(ui, |ui| {
            for (i, s) in info.input_shapes.iter().enumerate() {
                ui.label(format!("Input {i}"));
                ui.monospace(s.map(|s| s.to_string()).unwrap_or_else(|| "?".into()));
                ui.end_row();
            }
            ui.label("Output");
            ui.monospace(
                info.output_shape
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into()),
            );
            ui.end_row();
            let (tr, non) = info.params(conventions);
            ui.label("Params");
            ui.label(format!(
                "{} trainable, {} non-trainable",
                thousands(tr),
                thousands(non)
            ));
            ui.end_row();
            ui.label(conventions.ops_unit());
            ui.label(thousands(conventions.ops(info.cost.macs)));
            ui.end_row();
        });
        if let Some(err) = &info.error {
            ui.colored_label(ui.visuals().error_fg_color, &err.message);
            if let Some(fix) = &err.fix
                && ui
                    .button(format!("Apply fix: {}", fix.describe()))
                    .clicked()
            {
                out.push(Command::ApplyFix(fix.clone()));
            }
        } else if info.is_blocked() {
            ui.weak("Waiting for an input upstream to be fixed.");
        }
        if !info.cost.macs_arithmetic.is_empty() {
            ui.label(RichText::new("MACs").small().weak());
            ui.monospace(&info.cost.macs_arithmetic);
            if conventions.ops == OpCount::Flops {
                ui.monospace(format!(
                    "FLOPs = 2 · MACs = {}",
                    thousands(conventions.ops(info.cost.macs))
                ));
            }
        }
        if !info.cost.params_arithmetic.is_empty() {
            ui.label(RichText::new("Params").small().weak());
            ui.monospace(&info.cost.params_arithmetic);
        }
        out
    }
}

/// Where the parameter editors report a right-click "Sweep…": the
/// parameter's design-file name.
type SweepAsk = Option<&'static str>;

/// Offers "Sweep…" on a right-click of parameter `key`'s widget.
fn sweep_menu(response: &egui::Response, key: &'static str, sweep: &mut SweepAsk) {
    response.context_menu(|ui| {
        if ui
            .button("Sweep…")
            .on_hover_text("train one run per value of this parameter")
            .clicked()
        {
            *sweep = Some(key);
            ui.close();
        }
    });
}

fn u32_ui(ui: &mut Ui, label: &str, key: &'static str, v: &mut u32, sweep: &mut SweepAsk) -> bool {
    let l = ui.label(label);
    let r = ui
        .add(DragValue::new(v).range(0..=1_000_000).speed(0.2))
        .labelled_by(l.id);
    sweep_menu(&r, key, sweep);
    ui.end_row();
    r.changed()
}

fn pair_ui(
    ui: &mut Ui,
    label: &str,
    key: &'static str,
    v: &mut [u32; 2],
    sweep: &mut SweepAsk,
) -> bool {
    let l = ui.label(label);
    let c = ui
        .horizontal(|ui| {
            let a = ui
                .add(DragValue::new(&mut v[0]).range(0..=4096).speed(0.1))
                .labelled_by(l.id);
            sweep_menu(&a, key, sweep);
            ui.label("×");
            let b = ui
                .add(DragValue::new(&mut v[1]).range(0..=4096).speed(0.1))
                .labelled_by(l.id);
            sweep_menu(&b, key, sweep);
            a.changed() || b.changed()
        })
        .inner;
    ui.end_row();
    c
}

fn f64_ui(
    ui: &mut Ui,
    label: &str,
    key: &'static str,
    v: &mut f64,
    speed: f64,
    sweep: &mut SweepAsk,
) -> bool {
    let l = ui.label(label);
    let r = ui
        .add(DragValue::new(v).speed(speed).max_decimals(6))
        .labelled_by(l.id);
    sweep_menu(&r, key, sweep);
    ui.end_row();
    r.changed()
}

fn bool_ui(ui: &mut Ui, label: &str, v: &mut bool) -> bool {
    let l = ui.label(label);
    let c = ui.checkbox(v, "").labelled_by(l.id).changed();
    ui.end_row();
    c
}

fn padding_ui(ui: &mut Ui, p: &mut Padding) -> bool {
    let l = ui.label("Padding");
    let mut changed = false;
    ui.horizontal(|ui| {
        let before = *p;
        egui::ComboBox::from_id_salt("padding")
            .selected_text(match p {
                Padding::Same => "same",
                Padding::Valid => "valid",
                Padding::Explicit(_) => "explicit",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(p, Padding::Same, "same");
                ui.selectable_value(p, Padding::Valid, "valid");
                if ui
                    .selectable_label(matches!(p, Padding::Explicit(_)), "explicit")
                    .clicked()
                    && !matches!(p, Padding::Explicit(_))
                {
                    *p = Padding::Explicit([1, 1, 1, 1]);
                }
            })
            .response
            .labelled_by(l.id);
        changed |= *p != before;
    });
    ui.end_row();
    if let Padding::Explicit(v) = p {
        let l = ui.label("top, bottom, left, right");
        ui.horizontal(|ui| {
            for x in v.iter_mut() {
                changed |= ui
                    .add(DragValue::new(x).range(0..=1024))
                    .labelled_by(l.id)
                    .changed();
            }
        });
        ui.end_row();
    }
    changed
}

/// Editors for every parameter of `kind`; returns whether anything changed.
/// A right-click "Sweep…" on a numeric parameter puts its design-file name in `sweep`.
pub fn kind_editor_ui(ui: &mut Ui, kind: &mut LayerKind, sweep: &mut SweepAsk) -> bool {
    use LayerKind::*;
    match kind {
        Input {
            height,
            width,
            channels,
        } => {
            let mut c = u32_ui(ui, "Height", "height", height, sweep);
            c |= u32_ui(ui, "Width", "width", width, sweep);
            c | u32_ui(ui, "Channels", "channels", channels, sweep)
        }
        Conv2d {
            filters,
            kernel,
            stride,
            padding,
            groups,
            bias,
            dilation,
        } => {
            let mut c = u32_ui(ui, "Filters", "filters", filters, sweep);
            c |= pair_ui(ui, "Kernel", "kernel", kernel, sweep);
            c |= pair_ui(ui, "Stride", "stride", stride, sweep);
            c |= pair_ui(ui, "Dilation", "dilation", dilation, sweep);
            c |= padding_ui(ui, padding);
            c |= u32_ui(ui, "Groups", "groups", groups, sweep);
            c | bool_ui(ui, "Bias", bias)
        }
        ZeroPad2d { padding } => {
            let l = ui.label("top, bottom, left, right");
            let c = ui
                .horizontal(|ui| {
                    let mut c = false;
                    for x in padding.iter_mut() {
                        c |= ui
                            .add(DragValue::new(x).range(0..=1024))
                            .labelled_by(l.id)
                            .changed();
                    }
                    c
                })
                .inner;
            ui.end_row();
            c
        }
        MaxPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
        } => {
            let mut c = pair_ui(ui, "Kernel", "kernel", kernel, sweep);
            c |= pair_ui(ui, "Stride", "stride", stride, sweep);
            c |= padding_ui(ui, padding);
            c | bool_ui(ui, "Ceil mode", ceil_mode)
        }
        AvgPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
            include_padding,
        } => {
            let mut c = pair_ui(ui, "Kernel", "kernel", kernel, sweep);
            c |= pair_ui(ui, "Stride", "stride", stride, sweep);
            c |= padding_ui(ui, padding);
            c |= bool_ui(ui, "Ceil mode", ceil_mode);
            c | bool_ui(ui, "Count padding", include_padding)
        }
        BatchNorm { epsilon, momentum } => {
            let c = f64_ui(ui, "Epsilon", "epsilon", epsilon, 0.0001, sweep);
            c | f64_ui(ui, "Momentum", "momentum", momentum, 0.001, sweep)
        }
        LeakyRelu { alpha } => f64_ui(ui, "Alpha", "alpha", alpha, 0.001, sweep),
        ChannelAffine { scale, shift } => {
            // One row per channel: its scale and its shift.
            let mut c = false;
            for (i, (a, b)) in scale.iter_mut().zip(shift.iter_mut()).enumerate() {
                let l = ui.label(format!("Channel {i}: scale, shift"));
                ui.horizontal(|ui| {
                    for v in [a, b] {
                        c |= ui
                            .add(DragValue::new(v).speed(0.001))
                            .labelled_by(l.id)
                            .changed();
                    }
                });
                ui.end_row();
            }
            c
        }
        Dropout { rate } => f64_ui(ui, "Rate", "rate", rate, 0.01, sweep),
        Dense { units, bias } => {
            let c = u32_ui(ui, "Units", "units", units, sweep);
            c | bool_ui(ui, "Bias", bias)
        }
        GlobalAvgPool
        | crate::graph::parameter_free_activation!()
        | Softmax
        | Flatten
        | Add
        | Concat
        | ChannelScale => {
            ui.weak("No parameters");
            ui.end_row();
            false
        }
    }
}
