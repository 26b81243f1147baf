//! Keras-style per-layer table: sortable, with totals; a click selects the layer.

use super::command::Command;
use super::document::Document;
use crate::graph::NodeId;
use crate::infer::{Conventions, thousands};
use egui::{Align, Layout, RichText, Sense, Ui, vec2};
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Order,
    Name,
    Kind,
    Params,
    Ops,
}

pub struct CostTable {
    pub sort: SortBy,
    pub descending: bool,
    /// Height of the Total row and its separator, measured when drawn.
    footer_height: f32,
}

impl Default for CostTable {
    fn default() -> Self {
        CostTable {
            sort: SortBy::Order,
            descending: false,
            footer_height: 0.0,
        }
    }
}

struct Row {
    id: NodeId,
    order: usize,
    name: String,
    kind: &'static str,
    output: String,
    trainable: u64,
    non_trainable: u64,
    ops: u64,
    error: bool,
}

const WIDTHS: [f32; 7] = [170.0, 100.0, 110.0, 110.0, 110.0, 130.0, 60.0];

impl CostTable {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        doc: &Document,
        selection: &BTreeSet<NodeId>,
        conventions: &Conventions,
    ) -> Option<Command> {
        let mut out = None;
        let analysis = &doc.analysis;
        let order: Vec<NodeId> = if analysis.order.is_empty() {
            doc.graph.node_ids().collect()
        } else {
            analysis.order.clone()
        };
        let totals = analysis.totals(conventions);
        let mut rows: Vec<Row> = order
            .iter()
            .enumerate()
            .filter_map(|(i, &id)| {
                let node = doc.graph.node(id)?;
                let info = analysis.node(id);
                let (tr, non) = info.map(|n| n.params(conventions)).unwrap_or((0, 0));
                Some(Row {
                    id,
                    order: i,
                    name: node.name.clone(),
                    kind: node.kind.display_name(),
                    output: info
                        .and_then(|n| n.output_shape)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into()),
                    trainable: tr,
                    non_trainable: non,
                    ops: conventions.ops(info.map_or(0, |n| n.cost.macs)),
                    error: info.is_some_and(|n| n.error.is_some()),
                })
            })
            .collect();
        match self.sort {
            SortBy::Order => rows.sort_by_key(|r| r.order),
            SortBy::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            SortBy::Kind => rows.sort_by(|a, b| a.kind.cmp(b.kind).then(a.order.cmp(&b.order))),
            SortBy::Params => rows.sort_by_key(|r| r.trainable + r.non_trainable),
            SortBy::Ops => rows.sort_by_key(|r| r.ops),
        }
        if self.descending {
            rows.reverse();
        }

        // Header: click to sort, click again to reverse.
        let headers = [
            ("Layer", Some(SortBy::Name)),
            ("Kind", Some(SortBy::Kind)),
            ("Output", None),
            ("Trainable", Some(SortBy::Params)),
            ("Non-trainable", None),
            (conventions.ops_unit(), Some(SortBy::Ops)),
            ("Share", None),
        ];
        ui.horizontal(|ui| {
            for ((title, key), w) in headers.into_iter().zip(WIDTHS) {
                let arrow = match key {
                    Some(k) if k == self.sort => {
                        if self.descending {
                            " v"
                        } else {
                            " ^"
                        }
                    }
                    _ => "",
                };
                let text = RichText::new(format!("{title}{arrow}")).strong();
                let resp = ui.add_sized([w, 18.0], egui::Button::new(text).frame(false));
                if let Some(k) = key
                    && resp.clicked()
                {
                    if self.sort == k {
                        self.descending = !self.descending;
                    } else {
                        self.sort = k;
                        self.descending = matches!(k, SortBy::Params | SortBy::Ops);
                    }
                }
            }
            if ui.small_button("order").clicked() {
                self.sort = SortBy::Order;
                self.descending = false;
            }
        });
        let row_h = 18.0;
        // Room for the separator and the Total row, as tall as they were
        // last frame, so the Total row is always in view.
        let footer_h = self
            .footer_height
            .max(row_h + 2.0 * ui.spacing().item_spacing.y + 6.0);
        egui::ScrollArea::vertical()
            .max_height((ui.available_height() - footer_h).max(40.0))
            .auto_shrink([false, true])
            .show_rows(ui, row_h, rows.len(), |ui, range| {
                for r in &rows[range] {
                    let selected = selection.contains(&r.id);
                    let (rect, resp) = ui.allocate_exact_size(
                        vec2(WIDTHS.iter().sum::<f32>() + 40.0, row_h),
                        Sense::click(),
                    );
                    if selected {
                        ui.painter()
                            .rect_filled(rect, 0.0, ui.visuals().selection.bg_fill);
                    } else if resp.hovered() {
                        ui.painter()
                            .rect_filled(rect, 0.0, ui.visuals().widgets.hovered.bg_fill);
                    }
                    let share = if totals.macs > 0 {
                        format!(
                            "{:.1}%",
                            100.0 * r.ops as f64 / conventions.ops(totals.macs) as f64
                        )
                    } else {
                        String::new()
                    };
                    let cells = [
                        r.name.clone(),
                        r.kind.to_string(),
                        r.output.clone(),
                        thousands(r.trainable),
                        thousands(r.non_trainable),
                        thousands(r.ops),
                        share,
                    ];
                    let mut child = ui.new_child(
                        egui::UiBuilder::new()
                            .max_rect(rect)
                            .layout(Layout::left_to_right(Align::Center)),
                    );
                    let color = if r.error {
                        child.visuals().error_fg_color
                    } else {
                        child.visuals().text_color()
                    };
                    for (text, w) in cells.into_iter().zip(WIDTHS) {
                        child.add_sized(
                            [w, row_h],
                            egui::Label::new(RichText::new(text).color(color)).truncate(),
                        );
                    }
                    let label = format!("row {}", r.name);
                    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Row, true, &label));
                    if resp.clicked() {
                        out = Some(Command::Select(BTreeSet::from([r.id])));
                    }
                }
            });
        let footer_top = ui.cursor().top();
        ui.separator();
        ui.horizontal(|ui| {
            ui.label(RichText::new("Total").strong());
            ui.label(format!(
                "params {} (trainable {}, non-trainable {})",
                thousands(totals.total_params),
                thousands(totals.trainable_params),
                thousands(totals.non_trainable_params)
            ));
            ui.label(format!(
                "· {} {}",
                thousands(conventions.ops(totals.macs)),
                conventions.ops_unit()
            ));
            ui.label(format!(
                "· activations {:.1} MB per sample",
                totals.activation_bytes as f64 / 1e6
            ));
        });
        self.footer_height = ui.min_rect().bottom() - footer_top + ui.spacing().item_spacing.y;
        out
    }
}
