//! The diagram rasterised: tiny-skia fills and strokes the same boxes and
//! wires the SVG has, ab_glyph draws the text in the Hack font egui ships.

use super::{Diagram, DiagramNode, RenderError, card, truncate};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use tiny_skia::{Paint, PathBuilder, Pixmap, Rect, Stroke, Transform};

/// Longest side and pixel count a PNG may have; larger drawings are scaled down to fit.
pub const MAX_SIDE: f32 = 16_384.0;
pub const MAX_PIXELS: f32 = 100_000_000.0;

const BACKGROUND: [u8; 3] = [0x1b, 0x1e, 0x23];
const CARD: [u8; 3] = [0x26, 0x2a, 0x30];
const CARD_STROKE: [u8; 3] = [0x56, 0x5c, 0x66];
const ERROR_CARD: [u8; 3] = [0x6e, 0x1e, 0x1e];
const ERROR_STROKE: [u8; 3] = [0xf0, 0x5a, 0x5a];
const WIRE: [u8; 3] = [0x9a, 0xa3, 0xad];
const TEXT: [u8; 3] = [0xd6, 0xda, 0xe0];
const WEAK: [u8; 3] = [0x90, 0x98, 0xa2];
const SHARE: [u8; 3] = [0xe6, 0xa0, 0x3c];

#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// A pixmap with the scene-to-pixel map and the font.
struct Canvas<'f> {
    pixmap: Pixmap,
    scale: f32,
    origin: [f32; 2],
    font: FontRef<'f>,
}

/// Draws the diagram at `scale` pixels per scene unit (less if the image
/// would exceed [`MAX_SIDE`] or [`MAX_PIXELS`]); returns the image and the scale used.
pub fn png(d: &Diagram, scale: f32) -> Result<(image::RgbaImage, f32), RenderError> {
    let [w, h] = d.size();
    let scale = scale
        .min(MAX_SIDE / w.max(h).max(1.0))
        .min((MAX_PIXELS / (w * h).max(1.0)).sqrt());
    let (pw, ph) = ((w * scale).ceil() as u32, (h * scale).ceil() as u32);
    let font = FontRef::try_from_slice(epaint_default_fonts::HACK_REGULAR)
        .map_err(|e| RenderError::Encode(format!("font: {e}")))?;
    let pixmap = Pixmap::new(pw.max(1), ph.max(1)).ok_or(RenderError::TooLarge {
        width: pw,
        height: ph,
    })?;
    let mut c = Canvas {
        pixmap,
        scale,
        origin: d.bounds.min,
        font,
    };
    c.pixmap.fill(tiny_skia::Color::from_rgba8(
        BACKGROUND[0],
        BACKGROUND[1],
        BACKGROUND[2],
        255,
    ));
    let o = d.bounds.min;
    c.text(
        [o[0] + 30.0, o[1] + 28.0],
        18.0,
        TEXT,
        Anchor::Start,
        &d.title,
    );
    c.text(
        [o[0] + 30.0, o[1] + 46.0],
        12.0,
        WEAK,
        Anchor::Start,
        &d.subtitle,
    );
    for wire in &d.routes.wires {
        let bad = d.nodes.iter().any(|n| n.id == wire.edge.to && n.error);
        c.polyline(&wire.points, if bad { ERROR_STROKE } else { WIRE }, 1.6);
    }
    for n in &d.nodes {
        c.node(n);
    }
    for (l, t) in d.routes.labels.iter().zip(&d.label_text) {
        let w = t.chars().count() as f32 * card::LABEL_SIZE * card::MONO_ADVANCE + 6.0;
        let h = card::LABEL_SIZE + 4.0;
        c.rect([l.at[0] - w / 2.0, l.at[1] - h / 2.0], [w, h], BACKGROUND);
        c.text(
            [l.at[0], l.at[1] + card::LABEL_SIZE * 0.36],
            card::LABEL_SIZE,
            WEAK,
            Anchor::Middle,
            t,
        );
    }
    let (pw, ph) = (c.pixmap.width(), c.pixmap.height());
    let image = image::RgbaImage::from_raw(pw, ph, c.pixmap.take())
        .ok_or_else(|| RenderError::Encode("pixel buffer size mismatch".into()))?;
    Ok((image, scale))
}

fn paint(rgb: [u8; 3]) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color_rgba8(rgb[0], rgb[1], rgb[2], 255);
    p.anti_alias = true;
    p
}

impl Canvas<'_> {
    fn transform(&self) -> Transform {
        Transform::from_row(
            self.scale,
            0.0,
            0.0,
            self.scale,
            -self.origin[0] * self.scale,
            -self.origin[1] * self.scale,
        )
    }

    fn rect(&mut self, min: [f32; 2], size: [f32; 2], rgb: [u8; 3]) {
        if let Some(r) = Rect::from_xywh(min[0], min[1], size[0], size[1]) {
            let t = self.transform();
            self.pixmap.fill_rect(r, &paint(rgb), t, None);
        }
    }

    fn rect_outline(&mut self, min: [f32; 2], size: [f32; 2], rgb: [u8; 3], width: f32) {
        if let Some(r) = Rect::from_xywh(min[0], min[1], size[0], size[1]) {
            let path = PathBuilder::from_rect(r);
            let t = self.transform();
            let stroke = Stroke {
                width,
                ..Stroke::default()
            };
            self.pixmap
                .stroke_path(&path, &paint(rgb), &stroke, t, None);
        }
    }

    fn polyline(&mut self, points: &[[f32; 2]], rgb: [u8; 3], width: f32) {
        let mut pb = PathBuilder::new();
        for (k, p) in points.iter().enumerate() {
            if k == 0 {
                pb.move_to(p[0], p[1]);
            } else {
                pb.line_to(p[0], p[1]);
            }
        }
        if let Some(path) = pb.finish() {
            let t = self.transform();
            let stroke = Stroke {
                width,
                line_join: tiny_skia::LineJoin::Round,
                ..Stroke::default()
            };
            self.pixmap
                .stroke_path(&path, &paint(rgb), &stroke, t, None);
        }
    }

    /// Draws `text` with its baseline at scene point `at`.
    fn text(&mut self, at: [f32; 2], size: f32, rgb: [u8; 3], anchor: Anchor, text: &str) {
        let px = size * self.scale;
        if px < 3.0 {
            return;
        }
        let scaled = self.font.as_scaled(PxScale::from(px));
        let width: f32 = text
            .chars()
            .map(|ch| scaled.h_advance(scaled.glyph_id(ch)))
            .sum();
        let mut x = (at[0] - self.origin[0]) * self.scale;
        match anchor {
            Anchor::Start => {}
            Anchor::Middle => x -= width / 2.0,
            Anchor::End => x -= width,
        }
        let y = (at[1] - self.origin[1]) * self.scale;
        let (pw, ph) = (self.pixmap.width() as i64, self.pixmap.height() as i64);
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            let glyph = id.with_scale_and_position(px, ab_glyph::point(x, y));
            x += scaled.h_advance(id);
            let Some(outline) = self.font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let data = self.pixmap.data_mut();
            outline.draw(|gx, gy, coverage| {
                let (cx, cy) = (
                    bounds.min.x as i64 + gx as i64,
                    bounds.min.y as i64 + gy as i64,
                );
                if cx < 0 || cy < 0 || cx >= pw || cy >= ph {
                    return;
                }
                let k = ((cy * pw + cx) * 4) as usize;
                let a = coverage.clamp(0.0, 1.0);
                for (c, &src) in rgb.iter().enumerate() {
                    let dst = data[k + c] as f32;
                    data[k + c] = (src as f32 * a + dst * (1.0 - a)).round() as u8;
                }
                data[k + 3] = 255;
            });
        }
    }

    fn node(&mut self, n: &DiagramNode) {
        let r = n.rect;
        let [w, h] = r.size();
        let (x, y) = (r.min[0], r.min[1]);
        let (fill, stroke) = if n.error {
            (ERROR_CARD, ERROR_STROKE)
        } else {
            (CARD, CARD_STROKE)
        };
        self.rect(r.min, [w, h], fill);
        self.rect([x, y], [w, card::HEADER], n.color);
        self.rect_outline(r.min, [w, h], stroke, 1.0);
        self.text(
            [x + 6.0, y + 14.5],
            card::NAME_SIZE,
            [255, 255, 255],
            Anchor::Start,
            &truncate(&n.name, card::NAME_CHARS),
        );
        self.text(
            [x + w - 6.0, y + 14.0],
            card::KIND_SIZE,
            [232, 232, 232],
            Anchor::End,
            n.kind,
        );
        if !n.summary.is_empty() {
            self.text(
                [x + 6.0, y + 36.0],
                card::TEXT_SIZE,
                TEXT,
                Anchor::Start,
                &n.summary,
            );
        }
        let detail = if n.error {
            truncate(&n.detail, 26)
        } else {
            n.detail.clone()
        };
        let color = if n.error {
            [255, 200, 200]
        } else {
            [255, 255, 255]
        };
        self.text([x + 6.0, y + 54.0], 12.0, color, Anchor::Start, &detail);
        if let Some(ops) = &n.ops {
            self.text(
                [x + w - 6.0, y + 54.0],
                card::TEXT_SIZE,
                WEAK,
                Anchor::End,
                ops,
            );
        }
        if n.share > 0.0 {
            let track = w - 12.0;
            self.rect([x + 6.0, y + h - 13.0], [track, 5.0], BACKGROUND);
            self.rect(
                [x + 6.0, y + h - 13.0],
                [(track * n.share).max(1.5), 5.0],
                SHARE,
            );
        }
    }
}
