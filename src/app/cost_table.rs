//! Keras-style per-layer table: sortable, with totals; a click selects the
//! layer. With "Roll up by group" each group is one header row with its
//! members' summed figures, its layers and the groups inside it indented
//! below it (a click on the header folds them). Rows are rebuilt only when the design, the
//! conventions or the sort change.

use super::command::Command;
use super::document::Document;
use crate::graph::NodeId;
use crate::infer::{Conventions, thousands};
use crate::render::group_figures;
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
    /// Show each group as a header row over its layers.
    pub rollup: bool,
    /// Groups (by name) whose layers are hidden under their header.
    folded: BTreeSet<String>,
    /// Height of the Total row and its separator, measured when drawn.
    footer_height: f32,
    /// The rows as last built, and what they were built for.
    rows: Option<(RowsKey, Vec<Row>)>,
}

impl Default for CostTable {
    fn default() -> Self {
        CostTable {
            sort: SortBy::Order,
            descending: false,
            rollup: true,
            folded: BTreeSet::new(),
            footer_height: 0.0,
            rows: None,
        }
    }
}

/// Everything the rows depend on.
#[derive(Clone, PartialEq)]
struct RowsKey {
    generation: u64,
    /// The document (its title) the generation counts for.
    design: String,
    conventions: Conventions,
    sort: SortBy,
    descending: bool,
    rollup: bool,
    folded: BTreeSet<String>,
}

#[derive(Clone)]
enum Target {
    Layer(NodeId),
    /// A group header: its name and members.
    Group(String, Vec<NodeId>),
}

#[derive(Clone)]
struct Row {
    target: Target,
    order: usize,
    name: String,
    kind: &'static str,
    output: String,
    trainable: u64,
    non_trainable: u64,
    ops: u64,
    error: bool,
    /// How many group headers the row is listed under.
    depth: u8,
}

const WIDTHS: [f32; 7] = [170.0, 100.0, 110.0, 110.0, 110.0, 130.0, 60.0];
/// Indentation of a row per group header it is listed under.
const INDENT: f32 = 12.0;

/// The column widths that fit `available` points (with `spacing` between
/// cells), narrowed together down to 60% of [`WIDTHS`] so the last column
/// is not cut off in a narrow panel.
fn column_widths(available: f32, spacing: f32) -> [f32; 7] {
    let gaps = spacing * (WIDTHS.len() as f32 - 1.0) + 16.0;
    let full: f32 = WIDTHS.iter().sum();
    let scale = ((available - gaps) / full).clamp(0.6, 1.0);
    WIDTHS.map(|w| (w * scale).floor())
}

impl CostTable {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        doc: &Document,
        selection: &BTreeSet<NodeId>,
        conventions: &Conventions,
    ) -> Option<Command> {
        let mut out = None;
        let totals = doc.analysis.totals(conventions);
        let key = RowsKey {
            generation: doc.generation,
            design: doc.title(),
            conventions: *conventions,
            sort: self.sort,
            descending: self.descending,
            rollup: self.rollup,
            folded: self.folded.clone(),
        };
        if self.rows.as_ref().is_none_or(|(k, _)| *k != key) {
            let rows = self.build_rows(doc, conventions);
            self.rows = Some((key, rows));
        }
        let rows = self
            .rows
            .as_ref()
            .map(|(_, r)| r.clone())
            .unwrap_or_default();

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
        let widths = column_widths(ui.available_width(), ui.spacing().item_spacing.x);
        let row_w = widths.iter().sum::<f32>() + ui.spacing().item_spacing.x * 6.0;
        // Above the columns, so they keep the panel's width.
        ui.horizontal(|ui| {
            if ui.small_button("order").clicked() {
                self.sort = SortBy::Order;
                self.descending = false;
            }
            if !doc.graph.groups().is_empty() {
                ui.checkbox(&mut self.rollup, "Roll up by group");
            }
        });
        ui.horizontal(|ui| {
            for ((title, key), w) in headers.into_iter().zip(widths) {
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
        });
        let row_h = 18.0;
        // Room for the separator and the Total row, as tall as they were
        // last frame, so the Total row is always in view.
        let footer_h = self
            .footer_height
            .max(row_h + 2.0 * ui.spacing().item_spacing.y + 6.0);
        let mut fold: Vec<String> = Vec::new();
        egui::ScrollArea::vertical()
            .max_height((ui.available_height() - footer_h).max(40.0))
            .auto_shrink([false, true])
            .show_rows(ui, row_h, rows.len(), |ui, range| {
                for r in &rows[range] {
                    let selected = match &r.target {
                        Target::Layer(id) => selection.contains(id),
                        Target::Group(_, m) => m.iter().all(|id| selection.contains(id)),
                    };
                    let (rect, resp) = ui.allocate_exact_size(vec2(row_w, row_h), Sense::click());
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
                    let name = match &r.target {
                        Target::Group(g, _) if self.folded.contains(g) => {
                            format!("[+] {}", r.name)
                        }
                        Target::Group(..) => format!("[-] {}", r.name),
                        Target::Layer(_) => r.name.clone(),
                    };
                    let cells = [
                        name,
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
                    for (i, (text, w)) in cells.into_iter().zip(widths).enumerate() {
                        let label = egui::Label::new(RichText::new(text).color(color)).truncate();
                        if i > 0 {
                            child.add_sized([w, row_h], label);
                            continue;
                        }
                        // The name reads from the left, indented under its groups.
                        child.allocate_ui_with_layout(
                            vec2(w, row_h),
                            Layout::left_to_right(Align::Center),
                            |ui| {
                                ui.set_min_width(w);
                                ui.add_space(INDENT * f32::from(r.depth));
                                ui.add(label);
                            },
                        );
                    }
                    let label = match &r.target {
                        Target::Layer(_) => format!("row {}", r.name),
                        Target::Group(..) => format!("group row {}", r.name),
                    };
                    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Row, true, &label));
                    if resp.clicked() {
                        out = Some(match &r.target {
                            Target::Layer(id) => Command::Select(BTreeSet::from([*id])),
                            Target::Group(g, members) => {
                                fold.push(g.clone());
                                Command::Select(members.iter().copied().collect())
                            }
                        });
                    }
                }
            });
        for g in fold {
            if !self.folded.remove(&g) {
                self.folded.insert(g);
            }
        }
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

    /// One row per layer in the chosen order; rolled up, group headers
    /// with their (unfolded) layers indented below.
    fn build_rows(&self, doc: &Document, conventions: &Conventions) -> Vec<Row> {
        let analysis = &doc.analysis;
        let order: Vec<NodeId> = if analysis.order.is_empty() {
            doc.graph.node_ids().collect()
        } else {
            analysis.order.clone()
        };
        let layers: Vec<Row> = order
            .iter()
            .enumerate()
            .filter_map(|(i, &id)| {
                let node = doc.graph.node(id)?;
                let info = analysis.node(id);
                let (tr, non) = info.map(|n| n.params(conventions)).unwrap_or((0, 0));
                Some(Row {
                    target: Target::Layer(id),
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
                    depth: 0,
                })
            })
            .collect();
        let groups = doc.graph.groups();
        if !self.rollup || groups.is_empty() {
            let mut rows = layers;
            self.sort_rows(&mut rows);
            return rows;
        }
        // Each group's header lists the layers and groups directly in it;
        // the top level lists the rest, each group at its first member.
        let nesting = doc.graph.nesting();
        let mut inside: Vec<Vec<Row>> = vec![Vec::new(); groups.len()];
        let mut top: Vec<Row> = Vec::new();
        let mut first_order: Vec<usize> = vec![usize::MAX; groups.len()];
        for row in layers {
            let Target::Layer(id) = row.target else {
                continue;
            };
            for g in nesting.groups_of(id) {
                first_order[g] = first_order[g].min(row.order);
            }
            match nesting.innermost.get(id.index()).copied().flatten() {
                Some(g) => inside[g].push(row),
                None => top.push(row),
            }
        }
        for (g, group) in groups.iter().enumerate() {
            let f = group_figures(&doc.graph, group, analysis, conventions);
            let header = Row {
                target: Target::Group(group.name.clone(), group.members.clone()),
                order: first_order[g],
                name: group.name.clone(),
                kind: "Group",
                output: f
                    .output_shape
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into()),
                trainable: f.trainable_params,
                non_trainable: f.params - f.trainable_params,
                ops: conventions.ops(f.macs),
                error: f.errors > 0,
                depth: 0,
            };
            match nesting.parent[g] {
                Some(p) => inside[p].push(header),
                None => top.push(header),
            }
        }
        let mut rows = Vec::with_capacity(order.len() + groups.len());
        self.list_rows(top, 0, &mut inside, doc, &mut rows);
        rows
    }

    /// Appends `list` sorted, at `depth`, each unfolded group header
    /// followed by what it holds.
    fn list_rows(
        &self,
        mut list: Vec<Row>,
        depth: u8,
        inside: &mut [Vec<Row>],
        doc: &Document,
        rows: &mut Vec<Row>,
    ) {
        self.sort_rows(&mut list);
        for row in list {
            let held = match &row.target {
                Target::Group(name, _) if !self.folded.contains(name) => doc
                    .graph
                    .find_group(name)
                    .map(|g| std::mem::take(&mut inside[g])),
                _ => None,
            };
            rows.push(Row { depth, ..row });
            if let Some(held) = held {
                self.list_rows(held, depth.saturating_add(1), inside, doc, rows);
            }
        }
    }

    fn sort_rows(&self, rows: &mut [Row]) {
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
    }
}
