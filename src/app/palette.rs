//! The palette: every layer kind, grouped and searchable, plus block
//! templates. Drag an item onto the canvas, or click it to add it at the
//! centre of the view.

use super::command::{BlockTemplate, Command, PaletteItem};
use crate::graph::{LayerKind, parameter_free_activation};
use egui::{Sense, Ui};

#[derive(Default)]
pub struct Palette {
    pub search: String,
}

/// Palette group of a layer kind.
fn group_of(kind: &LayerKind) -> &'static str {
    use LayerKind::*;
    match kind {
        Input { .. } => "Input",
        Conv2d { .. } | ZeroPad2d { .. } => "Convolution",
        MaxPool2d { .. } | AvgPool2d { .. } | GlobalAvgPool => "Pooling",
        BatchNorm { .. } | ChannelAffine { .. } | Dropout { .. } => {
            "Normalisation & regularisation"
        }
        parameter_free_activation!() | LeakyRelu { .. } | Softmax => "Activation",
        Flatten | Dense { .. } => "Dense",
        Add | Concat | ChannelScale => "Merge",
    }
}

const GROUPS: [&str; 7] = [
    "Input",
    "Convolution",
    "Pooling",
    "Normalisation & regularisation",
    "Activation",
    "Dense",
    "Merge",
];

impl Palette {
    /// Shows the palette; `center` is where a clicked item is placed (scene coordinates).
    pub fn ui(&mut self, ui: &mut Ui, center: [f32; 2]) -> Option<Command> {
        let mut out = None;
        ui.add(
            egui::TextEdit::singleline(&mut self.search)
                .hint_text("Search layers")
                .desired_width(f32::INFINITY),
        );
        let query = self.search.trim().to_lowercase();
        let matches = |text: &str| query.is_empty() || text.to_lowercase().contains(&query);
        egui::ScrollArea::vertical().show(ui, |ui| {
            let catalogue = LayerKind::catalogue();
            for group in GROUPS {
                let items: Vec<&LayerKind> = catalogue
                    .iter()
                    .filter(|k| group_of(k) == group)
                    .filter(|k| matches(k.display_name()) || matches(k.tag()) || matches(group))
                    .collect();
                if items.is_empty() {
                    continue;
                }
                ui.add_space(4.0);
                ui.label(egui::RichText::new(group).small().weak());
                for kind in items {
                    let hover = hover_text(kind);
                    if let Some(c) = item_ui(
                        ui,
                        kind.display_name(),
                        &hover,
                        PaletteItem::Layer(kind.clone()),
                        center,
                    ) {
                        out = Some(c);
                    }
                }
            }
            let blocks: Vec<BlockTemplate> = BlockTemplate::ALL
                .into_iter()
                .filter(|b| matches(b.label()) || matches("block"))
                .collect();
            if !blocks.is_empty() {
                ui.add_space(4.0);
                ui.label(egui::RichText::new("Blocks").small().weak());
                for b in blocks {
                    if let Some(c) = item_ui(
                        ui,
                        b.label(),
                        b.description(),
                        PaletteItem::Block(b),
                        center,
                    ) {
                        out = Some(c);
                    }
                }
            }
        });
        out
    }
}

/// A layer entry's tooltip: what it computes, its shape rule, its defaults.
fn hover_text(kind: &LayerKind) -> String {
    let info = kind.info();
    let summary = kind.summary();
    let defaults = if summary.is_empty() {
        String::new()
    } else {
        format!("\nDefaults: {summary}.")
    };
    format!(
        "{}\nShape: {}.{defaults}\nDrag onto the canvas, or click to add.",
        info.description, info.shape_rule
    )
}

/// One palette entry: a button that can be dragged onto the canvas.
fn item_ui(
    ui: &mut Ui,
    label: &str,
    hover: &str,
    item: PaletteItem,
    center: [f32; 2],
) -> Option<Command> {
    let resp = ui
        .add_sized(
            [ui.available_width(), 20.0],
            egui::Button::new(label).sense(Sense::click_and_drag()),
        )
        .on_hover_text(hover);
    if resp.dragged() {
        ui.ctx().set_cursor_icon(egui::CursorIcon::Grabbing);
        if let Some(p) = ui.ctx().pointer_latest_pos() {
            let painter = ui.ctx().layer_painter(egui::LayerId::new(
                egui::Order::Tooltip,
                egui::Id::unique("palette_drag"),
            ));
            let galley = painter.layout_no_wrap(
                label.to_string(),
                egui::FontId::proportional(13.0),
                ui.visuals().strong_text_color(),
            );
            let r =
                egui::Rect::from_min_size(p + egui::vec2(10.0, 10.0), galley.size()).expand(4.0);
            painter.rect_filled(r, 4.0, ui.visuals().widgets.active.bg_fill);
            painter.galley(r.min + egui::vec2(4.0, 4.0), galley, egui::Color32::WHITE);
        }
    }
    resp.dnd_set_drag_payload(item.clone());
    if resp.clicked() {
        return Some(Command::AddItem {
            item,
            position: [
                center[0] - super::canvas::NODE_SIZE.x / 2.0,
                center[1] - super::canvas::NODE_SIZE.y / 2.0,
            ],
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_group_and_a_tooltip_with_its_shape_rule() {
        for kind in LayerKind::catalogue() {
            assert!(GROUPS.contains(&group_of(&kind)), "{kind:?}");
            let info = kind.info();
            assert!(!info.description.is_empty() && !info.shape_rule.is_empty());
            let hover = hover_text(&kind);
            assert!(hover.starts_with(info.description), "{hover}");
            assert!(hover.contains(info.shape_rule), "{hover}");
        }
        assert!(hover_text(&LayerKind::Relu6).contains("min(max(x, 0), 6)"));
    }
}
