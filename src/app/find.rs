//! Find a layer by name (Ctrl+F): a small bar over the canvas; Enter or a
//! click on a match selects the layer and brings it into view.

use super::command::Command;
use crate::graph::{Graph, NodeId};
use egui::{Key, Rect, Ui};

/// Matches listed at most.
const MAX_MATCHES: usize = 12;

#[derive(Default)]
pub struct FindBar {
    pub open: bool,
    pub query: String,
    /// Give the text field focus on the next frame.
    focus: bool,
}

impl FindBar {
    pub fn open(&mut self) {
        self.open = true;
        self.focus = true;
    }

    /// Nodes whose name contains the query (case-insensitive), exact and prefix matches first.
    pub fn matches(&self, graph: &Graph) -> Vec<NodeId> {
        let q = self.query.trim().to_lowercase();
        if q.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<(u8, usize, NodeId)> = graph
            .nodes()
            .filter_map(|(id, n)| {
                let name = n.name.to_lowercase();
                let rank = if name == q {
                    0
                } else if name.starts_with(&q) {
                    1
                } else if name.contains(&q) {
                    2
                } else {
                    return None;
                };
                Some((rank, name.len(), id))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Draws the bar in the top-left corner of `canvas` (screen rect) when open.
    pub fn ui(&mut self, ui: &Ui, canvas: Rect, graph: &Graph) -> Option<Command> {
        if !self.open {
            return None;
        }
        let mut out = None;
        egui::Area::new(egui::Id::unique("netloom_find"))
            .order(egui::Order::Foreground)
            .fixed_pos(canvas.min + egui::vec2(8.0, 8.0))
            .show(ui.ctx(), |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    out = self.bar_ui(ui, graph);
                });
            });
        out
    }

    fn bar_ui(&mut self, ui: &mut Ui, graph: &Graph) -> Option<Command> {
        let mut out = None;
        ui.horizontal(|ui| {
            let label = ui.label("Find layer");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.query)
                        .hint_text("name")
                        .desired_width(180.0),
                )
                .labelled_by(label.id);
            if self.focus {
                field.request_focus();
                self.focus = false;
            }
            let matches = self.matches(graph);
            if field.lost_focus()
                && ui.input(|i| i.key_pressed(Key::Enter))
                && let Some(&first) = matches.first()
            {
                out = Some(Command::FocusNode(first));
            }
            if ui.input(|i| i.key_pressed(Key::Escape)) || ui.button("Close find").clicked() {
                self.open = false;
            }
        });
        let matches = self.matches(graph);
        if !self.query.trim().is_empty() {
            if matches.is_empty() {
                ui.weak(format!("No layer named like `{}`", self.query.trim()));
            }
            for &id in matches.iter().take(MAX_MATCHES) {
                let name = graph.name_of(id);
                let kind = graph.node(id).map_or("", |n| n.kind.display_name());
                if ui.button(format!("Go to {name} ({kind})")).clicked() {
                    out = Some(Command::FocusNode(id));
                }
            }
            if matches.len() > MAX_MATCHES {
                ui.weak(format!("and {} more", matches.len() - MAX_MATCHES));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;

    #[test]
    fn exact_and_prefix_matches_come_first() {
        let g = blocks::resnet_mini();
        let bar = FindBar {
            query: "Block2_a".into(),
            ..Default::default()
        };
        let names: Vec<&str> = bar.matches(&g).iter().map(|&id| g.name_of(id)).collect();
        assert_eq!(names[0], "block2_a");
        assert!(names.contains(&"block2_a_bn"));
        assert!(names.iter().all(|n| n.contains("block2_a")));
    }
}
