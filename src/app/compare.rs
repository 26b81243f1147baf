//! Compare two designs: totals side by side, deltas, ratio, per-layer differences.

use super::command::Command;
use super::document::Document;
use super::training::TrainingSession;
use crate::infer::{Conventions, Totals, compact, thousands};
use egui::{RichText, Ui};

/// `a / b` as shown to the user, e.g. `9.68×`.
pub fn ratio_text(a: u64, b: u64) -> String {
    if b == 0 {
        "n/a".into()
    } else {
        format!("{:.2}×", a as f64 / b as f64)
    }
}

fn delta_text(a: u64, b: u64) -> String {
    if b >= a {
        format!("+{}", thousands(b - a))
    } else {
        format!("-{}", thousands(a - b))
    }
}

/// The sentence summarising the compute difference.
pub fn headline(a: &Totals, b: &Totals, conventions: &Conventions) -> String {
    let (ao, bo) = (conventions.ops(a.macs), conventions.ops(b.macs));
    let unit = conventions.ops_unit();
    if bo == 0 || ao == 0 {
        return format!("A: {} {unit} · B: {} {unit}", compact(ao), compact(bo));
    }
    if ao >= bo {
        format!(
            "B needs {} fewer {unit} than A ({} vs {})",
            ratio_text(ao, bo),
            compact(ao),
            compact(bo)
        )
    } else {
        format!(
            "B needs {} more {unit} than A ({} vs {})",
            ratio_text(bo, ao),
            compact(ao),
            compact(bo)
        )
    }
}

/// "Train both": A and B trained with the Run setup, one after another,
/// and the state of the last such pair.
pub fn train_both_ui(ui: &mut Ui, session: &TrainingSession) -> Option<Command> {
    let mut out = None;
    ui.horizontal(|ui| {
        let busy = session.is_active() || session.pair_in_progress();
        if ui
            .add_enabled(!busy, egui::Button::new("Train both"))
            .on_hover_text("train A, then B, with the Run setup (same data, seed and settings); the Runs tab shows both")
            .clicked()
        {
            out = Some(Command::TrainBoth);
        }
        if let Some(pair) = &session.pair {
            let states: Vec<String> = pair
                .runs
                .iter()
                .zip(["A", "B"])
                .filter_map(|(id, which)| {
                    let r = session.runs.iter().find(|r| r.id == *id)?;
                    Some(format!("{which} #{id} {}", r.status.label()))
                })
                .collect();
            ui.weak(states.join(" · "));
        }
    });
    out
}

pub fn compare_ui(ui: &mut Ui, a: &Document, b: &Document, conventions: &Conventions) {
    let ta = a.analysis.totals(conventions);
    let tb = b.analysis.totals(conventions);
    ui.label(
        RichText::new(headline(&ta, &tb, conventions))
            .strong()
            .size(15.0),
    );
    ui.add_space(4.0);
    egui::Grid::new("compare_totals")
        .num_columns(5)
        .striped(true)
        .show(ui, |ui| {
            ui.label("");
            ui.label(RichText::new(format!("A: {}", a.title())).strong());
            ui.label(RichText::new(format!("B: {}", b.title())).strong());
            ui.label(RichText::new("B - A").strong());
            ui.label(RichText::new("A / B").strong());
            ui.end_row();
            let rows = [
                (
                    conventions.ops_unit(),
                    conventions.ops(ta.macs),
                    conventions.ops(tb.macs),
                ),
                ("Params", ta.total_params, tb.total_params),
                ("Trainable", ta.trainable_params, tb.trainable_params),
                ("Activation bytes", ta.activation_bytes, tb.activation_bytes),
                ("Layers", a.graph.len() as u64, b.graph.len() as u64),
            ];
            for (what, x, y) in rows {
                ui.label(what);
                ui.monospace(thousands(x));
                ui.monospace(thousands(y));
                ui.monospace(delta_text(x, y));
                ui.monospace(ratio_text(x, y));
                ui.end_row();
            }
        });
    ui.add_space(6.0);
    ui.label(RichText::new("Per layer (matched by name)").small().weak());
    let mut names: Vec<String> = a.graph.nodes().map(|(_, n)| n.name.clone()).collect();
    for (_, n) in b.graph.nodes() {
        if a.graph.find(&n.name).is_none() {
            names.push(n.name.clone());
        }
    }
    let ops_of = |d: &Document, name: &str| {
        d.graph
            .find(name)
            .and_then(|id| d.analysis.node(id))
            .map(|n| conventions.ops(n.cost.macs))
    };
    egui::ScrollArea::vertical()
        .id_salt("compare_layers")
        .max_height(220.0)
        .show(ui, |ui| {
            egui::Grid::new("compare_layers_grid")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    ui.label(RichText::new("Layer").strong());
                    ui.label(RichText::new("A").strong());
                    ui.label(RichText::new("B").strong());
                    ui.label(RichText::new("B - A").strong());
                    ui.end_row();
                    for name in names {
                        let x = ops_of(a, &name);
                        let y = ops_of(b, &name);
                        if x == y {
                            continue;
                        }
                        let show = |v: Option<u64>| v.map(thousands).unwrap_or_else(|| "-".into());
                        ui.label(&name);
                        ui.monospace(show(x));
                        ui.monospace(show(y));
                        ui.monospace(delta_text(x.unwrap_or(0), y.unwrap_or(0)));
                        ui.end_row();
                    }
                });
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::command::preset_graph;

    #[test]
    fn inception_ratio_is_9_68() {
        let a = Document::new(preset_graph("inception-naive").unwrap(), None);
        let b = Document::new(preset_graph("inception-bottleneck").unwrap(), None);
        let c = Conventions::default();
        let h = headline(&a.analysis.totals(&c), &b.analysis.totals(&c), &c);
        assert!(h.contains("9.68×"), "{h}");
    }
}
