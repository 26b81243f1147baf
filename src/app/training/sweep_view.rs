//! The Sweep dialog (what to vary, its values, epochs per run) and the
//! Sweep tab: validation accuracy against MACs per value with the Pareto
//! front, and a table of each value's figures. Drawing only.

use super::TrainingSession;
use super::sweep::{SweepPoint, SweepRequest};
use crate::app::command::Command;
use crate::graph::{Graph, NodeId};
use crate::infer::compact;
use crate::train::experiment::SweepTarget;
use crate::train::experiment::cli::parse_values;
use egui::{RichText, Ui};
use egui_plot::{Line, Plot, PlotPoints, Points, Text};

/// The numeric parameters of `node` a sweep can vary, by their design-file names.
pub fn sweepable_params(graph: &Graph, node: NodeId) -> Vec<String> {
    let Some(n) = graph.node(node) else {
        return Vec::new();
    };
    match serde_json::to_value(&n.kind) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter(|(_, v)| {
                v.is_number()
                    || v.as_array()
                        .is_some_and(|a| a.iter().all(|x| x.is_number()))
            })
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    }
}

/// The Sweep… window.
pub struct SweepDialog {
    pub open: bool,
    /// `NODE.PARAM`, `batch` or `lr`.
    pub target: String,
    pub values: String,
    pub epochs: u64,
    error: Option<String>,
}

impl Default for SweepDialog {
    fn default() -> Self {
        SweepDialog {
            open: false,
            target: String::new(),
            values: "8, 16, 32, 64".into(),
            epochs: 2,
            error: None,
        }
    }
}

impl SweepDialog {
    /// Opens the dialog on `node`'s first sweepable parameter (or the batch size).
    pub fn open_for(&mut self, graph: &Graph, node: Option<NodeId>) {
        let first = node.and_then(|id| {
            sweepable_params(graph, id)
                .into_iter()
                .next()
                .map(|p| format!("{}.{p}", graph.name_of(id)))
        });
        self.target = first.unwrap_or_else(|| "batch".into());
        self.error = None;
        self.open = true;
    }

    /// Opens the dialog on parameter `param` of `node` (the inspector's
    /// right-click "Sweep…").
    pub fn open_on(&mut self, graph: &Graph, node: NodeId, param: &str) {
        self.target = format!("{}.{param}", graph.name_of(node));
        self.error = None;
        self.open = true;
    }

    /// Reopens the dialog with the reason its sweep was refused.
    pub fn refuse(&mut self, why: String) {
        self.error = Some(why);
        self.open = true;
    }

    /// The request the fields describe, or why they do not describe one.
    pub fn request(&self) -> Result<SweepRequest, String> {
        Ok(SweepRequest {
            target: SweepTarget::parse(&self.target).map_err(|e| e.to_string())?,
            values: parse_values(&self.values).map_err(|e| e.to_string())?,
            epochs: self.epochs.max(1),
        })
    }

    pub fn ui(
        &mut self,
        ctx: &egui::Context,
        graph: &Graph,
        node: Option<NodeId>,
    ) -> Option<Command> {
        let mut command = None;
        let mut open = self.open;
        egui::Window::new("Sweep")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label("Train one run per value, one after another, each on its own copy of the design.");
                egui::Grid::new("sweep_dialog").num_columns(2).show(ui, |ui| {
                    let vary = ui.label("Vary");
                    egui::ComboBox::from_id_salt("sweep_target")
                        .selected_text(self.target.clone())
                        .show_ui(ui, |ui| {
                            let mut choices: Vec<String> = node
                                .map(|id| {
                                    sweepable_params(graph, id)
                                        .into_iter()
                                        .map(|p| format!("{}.{p}", graph.name_of(id)))
                                        .collect()
                                })
                                .unwrap_or_default();
                            choices.extend(["batch".to_string(), "lr".to_string()]);
                            for c in choices {
                                ui.selectable_value(&mut self.target, c.clone(), c);
                            }
                        })
                        .response
                        .labelled_by(vary.id);
                    ui.end_row();
                    let l = ui.label("Values");
                    ui.text_edit_singleline(&mut self.values)
                        .labelled_by(l.id)
                        .on_hover_text("a list (8, 16, 32) or a range: 8..64*2 doubles, 8..64+8 adds 8");
                    ui.end_row();
                    let l = ui.label("Epochs per run");
                    ui.add(egui::DragValue::new(&mut self.epochs).range(1..=1000))
                        .labelled_by(l.id);
                    ui.end_row();
                });
                if let Some(e) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                if ui.button("Start sweep").clicked() {
                    match self.request() {
                        Ok(r) => {
                            self.error = None;
                            command = Some(Command::StartSweep(Box::new(r)));
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
            });
        self.open = open && command.is_none();
        command
    }
}

/// The accessible summary of a sweep's points, which UI tests read back.
fn describe(label: &str, points: &[SweepPoint]) -> String {
    let each: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{} = {}: {} MACs, val {}",
                label,
                p.value,
                p.macs,
                p.val_acc
                    .map_or("–".into(), |a| format!("{:.2}%", 100.0 * a))
            )
        })
        .collect();
    format!(
        "Sweep plot with {} points; {}",
        points.len(),
        each.join("; ")
    )
}

/// The Sweep tab.
pub fn sweep_ui(ui: &mut Ui, session: &TrainingSession) -> Vec<Command> {
    let mut out = Vec::new();
    let labels = session.sweep_labels();
    let Some(label) = labels.last() else {
        ui.weak("No sweep yet. Run › Sweep… trains one run per value of a parameter and plots accuracy against cost here.");
        return out;
    };
    let points = session.sweep_points(label);
    ui.horizontal(|ui| {
        if let Some(q) = &session.sweep {
            ui.label(format!(
                "Sweeping {} · {} runs still to train",
                q.label,
                q.remaining()
            ));
        }
        let export = Command::ExportSweepCsv;
        if ui
            .add_enabled(
                !points.is_empty(),
                egui::Button::new(export.text().unwrap_or_default()),
            )
            .clicked()
        {
            out.push(export);
        }
    });
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width((ui.available_width() * 0.45).max(280.0));
            egui::Grid::new("sweep_table").striped(true).show(ui, |ui| {
                for h in [
                    label.as_str(),
                    "MACs",
                    "Params",
                    "ms/step",
                    "Val acc",
                    "Test acc",
                    "Pareto",
                ] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                let pct = |v: Option<f32>| v.map_or("–".into(), |a| format!("{:.2}%", 100.0 * a));
                for p in &points {
                    ui.label(p.value.to_string());
                    ui.label(compact(p.macs));
                    ui.label(compact(p.params));
                    ui.label(p.ms_per_step.map_or("–".into(), |t| format!("{t:.1}")));
                    ui.label(pct(p.val_acc));
                    ui.label(pct(p.test_acc));
                    ui.label(if p.pareto { "yes" } else { "" });
                    ui.end_row();
                }
            });
        });
        ui.vertical(|ui| {
            ui.label(format!(
                "Validation accuracy against MACs per image · {label}"
            ));
            let mut front: Vec<[f64; 2]> = points
                .iter()
                .filter(|p| p.pareto)
                .map(|p| [p.macs as f64 / 1e6, p.val_acc.unwrap_or(0.0) as f64])
                .collect();
            front.sort_by(|a, b| a[0].total_cmp(&b[0]));
            let resp = Plot::new("sweep_plot")
                .x_axis_label("MACs per image (millions)")
                .y_axis_label("validation accuracy")
                .y_axis_formatter(|m, _| format!("{:.0}%", 100.0 * m.value))
                .include_y(0.0)
                .include_y(1.0)
                .include_x(0.0)
                .show(ui, |p| {
                    p.line(Line::new("Pareto front", PlotPoints::from(front)).width(1.5));
                    for pt in &points {
                        let xy = [pt.macs as f64 / 1e6, pt.val_acc.unwrap_or(0.0) as f64];
                        p.points(
                            Points::new(
                                format!("{label} = {}", pt.value),
                                PlotPoints::from(vec![xy]),
                            )
                            .radius(5.0),
                        );
                        p.text(Text::new(
                            format!("{label} {}", pt.value),
                            egui_plot::PlotPoint::new(xy[0], xy[1] + 0.04),
                            pt.value.to_string(),
                        ));
                    }
                });
            let name = describe(label, &points);
            resp.response
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));
        });
    });
    out
}
