//! Find a layer or a group by name (Ctrl+F): a small bar over the canvas;
//! Enter or a click on a match selects it and brings it into view (a
//! group inside a collapsed group is expanded to show it).

use super::command::Command;
use crate::graph::{Graph, NodeId};
use egui::{Key, Rect, Ui};

/// Matches listed at most.
const MAX_MATCHES: usize = 12;

/// What a search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    Layer(NodeId),
    /// An index into `Graph::groups`.
    Group(usize),
}

impl Match {
    /// The command that jumps to it.
    pub fn command(self) -> Command {
        match self {
            Match::Layer(id) => Command::FocusNode(id),
            Match::Group(g) => Command::FocusGroup(g),
        }
    }

    /// The text of its button: `Go to NAME (KIND)`.
    fn button_text(self, graph: &Graph) -> String {
        match self {
            Match::Layer(id) => {
                let kind = graph.node(id).map_or("", |n| n.kind.display_name());
                format!("Go to {} ({kind})", graph.name_of(id))
            }
            Match::Group(g) => {
                let group = &graph.groups()[g];
                format!(
                    "Go to {} (group of {} layers)",
                    group.name,
                    group.members.len()
                )
            }
        }
    }
}

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

    /// Layers and groups whose name contains the query (case-insensitive),
    /// exact and prefix matches first.
    pub fn matches(&self, graph: &Graph) -> Vec<Match> {
        let q = self.query.trim().to_lowercase();
        if q.is_empty() {
            return Vec::new();
        }
        let rank = |name: &str| {
            let name = name.to_lowercase();
            let r = if name == q {
                0
            } else if name.starts_with(&q) {
                1
            } else if name.contains(&q) {
                2
            } else {
                return None;
            };
            Some((r, name.len()))
        };
        let layers = graph
            .nodes()
            .filter_map(|(id, n)| Some((rank(&n.name)?, Match::Layer(id))));
        let groups = graph
            .groups()
            .iter()
            .enumerate()
            .filter_map(|(g, group)| Some((rank(&group.name)?, Match::Group(g))));
        let mut found: Vec<((u8, usize), Match)> = layers.chain(groups).collect();
        found.sort();
        found.into_iter().map(|(_, m)| m).collect()
    }

    /// Draws the bar in the top-left corner of `canvas` (screen rect) when open.
    /// `area` is the canvas's overlay area the bar is drawn in.
    pub fn ui(
        &mut self,
        ui: &Ui,
        area: egui::Area,
        canvas: Rect,
        graph: &Graph,
    ) -> Option<Command> {
        if !self.open {
            return None;
        }
        let mut out = None;
        area.fixed_pos(canvas.min + egui::vec2(8.0, 8.0))
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
                out = Some(first.command());
            }
            if ui.input(|i| i.key_pressed(Key::Escape)) || ui.button("Close find").clicked() {
                self.open = false;
            }
        });
        let matches = self.matches(graph);
        if !self.query.trim().is_empty() {
            if matches.is_empty() {
                ui.weak(format!(
                    "No layer or group named like `{}`",
                    self.query.trim()
                ));
            }
            for &m in matches.iter().take(MAX_MATCHES) {
                if ui.button(m.button_text(graph)).clicked() {
                    out = Some(m.command());
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
        let names: Vec<&str> = bar
            .matches(&g)
            .iter()
            .map(|m| match *m {
                Match::Layer(id) => g.name_of(id),
                Match::Group(i) => &g.groups()[i].name,
            })
            .collect();
        assert_eq!(names[0], "block2_a");
        assert!(names.contains(&"block2_a_bn"));
        assert!(names.iter().all(|n| n.contains("block2_a")));
    }

    #[test]
    fn groups_are_found_by_name_beside_layers() {
        let g = blocks::resnet_mini();
        let bar = FindBar {
            query: "block2".into(),
            ..Default::default()
        };
        let found = bar.matches(&g);
        let block2 = g.find_group("block2").unwrap();
        assert_eq!(found[0], Match::Group(block2), "the exact name comes first");
        assert!(found.len() > 1);
        assert!(found[1..].iter().all(|m| matches!(m, Match::Layer(_))));
    }
}
