//! Compare two designs: the headline ratio, totals side by side, and the
//! branches, blocks and layers that differ ([`diff`]), which the two
//! canvases highlight.

pub mod diff;

use super::command::Command;
use super::document::Document;
use super::training::TrainingSession;
use crate::infer::{Conventions, Totals, compact, thousands};
use diff::{Change, Diff, Side};
use egui::{RichText, Ui};
use std::sync::Arc;

/// The diff of A and B, computed again only when either design (its
/// generation) or the conventions change: it matches every layer by name,
/// work a large design should not redo every frame.
#[derive(Default)]
pub struct DiffCache {
    key: Option<(u64, u64, Conventions)>,
    diff: Arc<Diff>,
}

impl DiffCache {
    /// The diff of `a` and `b`, from the cache when neither changed.
    pub fn get(&mut self, a: &Document, b: &Document, conventions: &Conventions) -> Arc<Diff> {
        let key = (a.generation, b.generation, *conventions);
        if self.key != Some(key) {
            fn side(d: &Document) -> Side<'_> {
                Side {
                    graph: &d.graph,
                    analysis: &d.analysis,
                }
            }
            self.diff = Arc::new(diff::diff(side(a), side(b), conventions));
            self.key = Some(key);
        }
        Arc::clone(&self.diff)
    }
}

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
    ui.horizontal_wrapped(|ui| {
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

/// A change's one-character sign in the compare tables (`+` added, `-` not
/// in B, `*` parameters, `~` cost).
pub fn change_sign(change: Change) -> &'static str {
    match change {
        Change::Added => "+",
        Change::Removed => "-",
        Change::Parameters => "*",
        Change::Cost => "~",
    }
}

/// `b - a` in short form with its sign, e.g. `-110.4M`.
fn signed_compact(a: u64, b: u64) -> String {
    if b >= a {
        format!("+{}", compact(b - a))
    } else {
        format!("-{}", compact(a - b))
    }
}

/// A figure in short form, the exact count on hover; `-` when absent.
fn figure_ui(ui: &mut Ui, v: Option<u64>) {
    match v {
        Some(v) => {
            ui.monospace(compact(v)).on_hover_text(thousands(v));
        }
        None => {
            ui.monospace("-");
        }
    }
}

/// The A, B and B - A cells of one row.
fn delta_cells_ui(ui: &mut Ui, a: Option<u64>, b: Option<u64>) {
    figure_ui(ui, a);
    figure_ui(ui, b);
    ui.monospace(signed_compact(a.unwrap_or(0), b.unwrap_or(0)))
        .on_hover_text(delta_text(a.unwrap_or(0), b.unwrap_or(0)));
}

/// The widest a name may be in a table of name, A, B and B - A: what the
/// three figure columns leave of `ui`'s width, so the table fits the
/// inspector and long names wrap (a narrow inspector scrolls instead).
fn name_column_width(ui: &Ui) -> f32 {
    let font = egui::TextStyle::Monospace.resolve(ui.style());
    // "-110.4M": the widest figure `signed_compact` writes below 10G.
    let figure = ui.ctx().fonts_mut(|f| f.glyph_width(&font, '0')) * 7.0;
    let spacing = ui.spacing().item_spacing.x;
    (ui.available_width() - 3.0 * (figure + spacing)).max(80.0)
}

/// The compare section: headline, totals, then the branches, blocks and
/// layers that differ, each row with its MACs in A and B and the change.
/// Clicking a row selects its layers on both canvases.
pub fn compare_ui(
    ui: &mut Ui,
    a: &Document,
    b: &Document,
    diff: &Diff,
    conventions: &Conventions,
) -> Option<Command> {
    let mut out = None;
    let ta = a.analysis.totals(conventions);
    let tb = b.analysis.totals(conventions);
    ui.add(
        egui::Label::new(
            RichText::new(headline(&ta, &tb, conventions))
                .strong()
                .size(15.0),
        )
        .wrap(),
    );
    ui.add_space(4.0);
    let unit = conventions.ops_unit();
    egui::Grid::new("compare_totals")
        .num_columns(5)
        .striped(true)
        .show(ui, |ui| {
            for h in ["", "A", "B", "B - A", "A / B"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            let rows = [
                (unit, conventions.ops(ta.macs), conventions.ops(tb.macs)),
                ("Params", ta.total_params, tb.total_params),
                ("Trainable", ta.trainable_params, tb.trainable_params),
                ("Activations", ta.activation_bytes, tb.activation_bytes),
                ("Layers", a.graph.len() as u64, b.graph.len() as u64),
            ];
            for (what, x, y) in rows {
                ui.label(what);
                delta_cells_ui(ui, Some(x), Some(y));
                ui.monospace(ratio_text(x, y));
                ui.end_row();
            }
        });
    let ops = |f: Option<diff::Figures>| f.map(|f| conventions.ops(f.macs));
    let name_width = name_column_width(ui);
    if !diff.branches.is_empty() {
        ui.add_space(6.0);
        ui.label(RichText::new(format!("Per branch ({unit})")).strong());
        egui::Grid::new("compare_branches")
            .num_columns(4)
            .max_col_width(name_width)
            .striped(true)
            .show(ui, |ui| {
                for branch in &diff.branches {
                    let short = format!(
                        "{} {}: {}",
                        branch.merge,
                        branch.input,
                        branch.layers.first().map_or("identity", String::as_str)
                    );
                    if ui
                        .selectable_label(false, short)
                        .on_hover_text(branch.label())
                        .clicked()
                    {
                        out = Some(Command::SelectInCompare(branch.layers.clone()));
                    }
                    delta_cells_ui(ui, ops(branch.a), ops(branch.b));
                    ui.end_row();
                }
            });
    }
    if !diff.blocks.is_empty() {
        ui.add_space(6.0);
        ui.label(RichText::new(format!("Per block ({unit})")).strong());
        egui::Grid::new("compare_blocks")
            .num_columns(4)
            .max_col_width(name_width)
            .striped(true)
            .show(ui, |ui| {
                for block in &diff.blocks {
                    let members: Vec<String> = [(a, &block.a_name), (b, &block.b_name)]
                        .into_iter()
                        .filter_map(|(d, name)| {
                            let g = d.graph.find_group(name.as_ref()?)?;
                            Some(
                                d.graph.groups()[g]
                                    .members
                                    .iter()
                                    .map(|&id| d.graph.name_of(id).to_string())
                                    .collect::<Vec<_>>(),
                            )
                        })
                        .flatten()
                        .collect();
                    if ui.selectable_label(false, block.label()).clicked() {
                        out = Some(Command::SelectInCompare(members));
                    }
                    delta_cells_ui(ui, ops(block.a), ops(block.b));
                    ui.end_row();
                }
            });
    }
    ui.add_space(6.0);
    ui.label(RichText::new(format!("Layers that differ ({unit})")).strong());
    ui.label(
        RichText::new("+ added in B, - not in B, * parameters, ~ cost (its input changed)")
            .small()
            .weak(),
    );
    egui::Grid::new("compare_layers_grid")
        .num_columns(4)
        .max_col_width(name_width)
        .striped(true)
        .show(ui, |ui| {
            for layer in &diff.layers {
                let text = RichText::new(format!("{} {}", change_sign(layer.change), layer.name))
                    .color(super::canvas::change_color(layer.change));
                if ui
                    .selectable_label(false, text)
                    .on_hover_text(layer.change.label())
                    .clicked()
                {
                    out = Some(Command::SelectInCompare(vec![layer.name.clone()]));
                }
                delta_cells_ui(ui, ops(layer.a), ops(layer.b));
                ui.end_row();
            }
        });
    if diff.layers.is_empty() {
        ui.weak("A and B have the same layers.");
    }
    out
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
