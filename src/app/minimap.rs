//! The minimap: the whole design in a corner of the canvas with the visible
//! part outlined; click or drag in it to move the view there. Hidden while
//! the whole design is in view.

use egui::{Color32, Pos2, Rect, Sense, Stroke, StrokeKind, Ui, vec2};

/// Largest size of the minimap, screen points.
const MAX_SIZE: egui::Vec2 = vec2(180.0, 180.0);

#[derive(Default)]
pub struct Minimap;

impl Minimap {
    /// Draws the minimap in `area` at the bottom-right corner of `canvas` (screen
    /// rect) over `boxes` (scene rects and colours) with `view` (the visible
    /// scene rect) outlined; returns the scene point to centre the view on.
    pub fn ui(
        &mut self,
        ui: &Ui,
        area: egui::Area,
        canvas: Rect,
        boxes: &[(Rect, Color32)],
        view: Rect,
    ) -> Option<Pos2> {
        let scene = boxes
            .iter()
            .fold(Rect::NOTHING, |r, (b, _)| r.union(*b))
            .expand(40.0);
        // Nothing to navigate to when the whole design is in view (and the
        // map would only cover part of it).
        if boxes.len() < 2
            || !scene.is_positive()
            || canvas.width() < 3.0 * MAX_SIZE.x
            || view.contains_rect(scene.shrink(40.0))
        {
            return None;
        }
        let scale = (MAX_SIZE.x / scene.width()).min(MAX_SIZE.y / scene.height());
        let size = scene.size() * scale;
        let mut out = None;
        area.fixed_pos(canvas.max - size - vec2(10.0, 10.0))
            .show(ui.ctx(), |ui| {
                let (rect, resp) = ui.allocate_exact_size(size, Sense::click_and_drag());
                resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Minimap"));
                let to_map = |p: Pos2| rect.min + (p - scene.min) * scale;
                let painter = ui.painter();
                painter.rect_filled(rect, 4.0, Color32::from_black_alpha(170));
                for (b, c) in boxes {
                    let r = Rect::from_min_max(to_map(b.min), to_map(b.max));
                    painter.rect_filled(r.expand(0.3), 0.0, *c);
                }
                let v = Rect::from_min_max(to_map(view.min), to_map(view.max)).intersect(rect);
                painter.rect_stroke(v, 2.0, Stroke::new(1.5, Color32::WHITE), StrokeKind::Inside);
                if (resp.clicked() || resp.dragged())
                    && let Some(p) = resp.interact_pointer_pos()
                {
                    out = Some(scene.min + (p - rect.min) / scale);
                }
            });
        out
    }
}
