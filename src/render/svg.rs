//! The diagram as SVG: scene units are SVG user units (the `viewBox`).

use super::{Diagram, DiagramNode, card, truncate};
use std::fmt::Write;

const BACKGROUND: &str = "#1b1e23";
const CARD: &str = "#262a30";
const CARD_STROKE: &str = "#565c66";
const ERROR_CARD: &str = "#6e1e1e";
const ERROR_STROKE: &str = "#f05a5a";
const WIRE: &str = "#9aa3ad";
const TEXT: &str = "#d6dae0";
const WEAK: &str = "#9098a2";
const SHARE: &str = "#e6a03c";

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The whole diagram as an SVG document.
pub fn svg(d: &Diagram) -> String {
    let b = d.bounds;
    let [w, h] = b.size();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="{:.1} {:.1} {w:.1} {h:.1}" font-family="DejaVu Sans, Ubuntu, Arial, sans-serif">"#,
        b.min[0], b.min[1]
    );
    let _ = writeln!(
        s,
        r#"<rect class="background" x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="{BACKGROUND}"/>"#,
        b.min[0], b.min[1]
    );
    let _ = writeln!(
        s,
        r#"<text class="title" x="{:.1}" y="{:.1}" font-size="18" fill="{TEXT}">{}</text>"#,
        b.min[0] + 30.0,
        b.min[1] + 28.0,
        esc(&d.title)
    );
    let _ = writeln!(
        s,
        r#"<text class="subtitle" x="{:.1}" y="{:.1}" font-size="12" fill="{WEAK}">{}</text>"#,
        b.min[0] + 30.0,
        b.min[1] + 46.0,
        esc(&d.subtitle)
    );
    wires_svg(&mut s, d);
    for n in &d.nodes {
        node_svg(&mut s, n);
    }
    labels_svg(&mut s, d);
    s.push_str("</svg>\n");
    s
}

fn wires_svg(s: &mut String, d: &Diagram) {
    s.push_str(
        "<g class=\"wires\" fill=\"none\" stroke-width=\"1.6\" stroke-linejoin=\"round\">\n",
    );
    let error_of = |i: usize| d.nodes.iter().any(|n| n.id.index() == i && n.error);
    for w in &d.routes.wires {
        let mut path = String::new();
        for (k, p) in w.points.iter().enumerate() {
            let _ = write!(
                path,
                "{}{:.1} {:.1}",
                if k == 0 { "M" } else { " L" },
                p[0],
                p[1]
            );
        }
        let color = if error_of(w.edge.to.index()) {
            ERROR_STROKE
        } else {
            WIRE
        };
        let _ = writeln!(
            s,
            r#"<path class="wire" data-from="{}" data-to="{}" data-input="{}" stroke="{color}" d="{path}"/>"#,
            esc(&d.names[w.edge.from.index()]),
            esc(&d.names[w.edge.to.index()]),
            w.edge.input
        );
    }
    s.push_str("</g>\n");
}

fn node_svg(s: &mut String, n: &DiagramNode) {
    let r = n.rect;
    let [w, h] = r.size();
    let (x, y) = (r.min[0], r.min[1]);
    let (fill, stroke) = if n.error {
        (ERROR_CARD, ERROR_STROKE)
    } else {
        (CARD, CARD_STROKE)
    };
    let _ = writeln!(
        s,
        r#"<g class="node" data-name="{}" data-kind="{}">"#,
        esc(&n.name),
        esc(n.kind)
    );
    let _ = writeln!(
        s,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="{fill}" stroke="{stroke}"/>"#
    );
    let _ = writeln!(
        s,
        r#"<title>{} · {} {} · {}</title>"#,
        esc(&n.name),
        esc(n.kind),
        esc(&n.summary),
        esc(&n.detail)
    );
    let _ = writeln!(
        s,
        r#"<path class="header" d="M{x:.1} {:.1} L{x:.1} {:.1} Q{x:.1} {y:.1} {:.1} {y:.1} L{:.1} {y:.1} Q{:.1} {y:.1} {:.1} {:.1} L{:.1} {:.1} Z" fill="{}"/>"#,
        y + card::HEADER,
        y + 6.0,
        x + 6.0,
        x + w - 6.0,
        x + w,
        x + w,
        y + 6.0,
        x + w,
        y + card::HEADER,
        hex(n.color)
    );
    let text = |s: &mut String, tx: f32, ty: f32, size: f32, anchor: &str, color: &str, t: &str| {
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{ty:.1}" font-size="{size}" text-anchor="{anchor}" fill="{color}">{}</text>"#,
            esc(t)
        );
    };
    text(
        s,
        x + 6.0,
        y + 14.5,
        card::NAME_SIZE,
        "start",
        "#ffffff",
        &truncate(&n.name, card::NAME_CHARS),
    );
    text(
        s,
        x + w - 6.0,
        y + 14.0,
        card::KIND_SIZE,
        "end",
        "#e8e8e8",
        n.kind,
    );
    if !n.summary.is_empty() {
        text(
            s,
            x + 6.0,
            y + 36.0,
            card::TEXT_SIZE,
            "start",
            TEXT,
            &n.summary,
        );
    }
    let detail = if n.error {
        truncate(&n.detail, 32)
    } else {
        n.detail.clone()
    };
    let _ = writeln!(
        s,
        r#"<text class="out-shape" x="{:.1}" y="{:.1}" font-size="12" font-family="DejaVu Sans Mono, Hack, monospace" fill="{}">{}</text>"#,
        x + 6.0,
        y + 54.0,
        if n.error { "#ffc8c8" } else { "#ffffff" },
        esc(&detail)
    );
    if let Some(ops) = &n.ops {
        text(s, x + w - 6.0, y + 54.0, card::TEXT_SIZE, "end", WEAK, ops);
    }
    if n.share > 0.0 {
        let track = w - 12.0;
        let _ = writeln!(
            s,
            r#"<rect class="share-track" x="{:.1}" y="{:.1}" width="{track:.1}" height="5" rx="2" fill="{BACKGROUND}"/>"#,
            x + 6.0,
            y + h - 13.0
        );
        let _ = writeln!(
            s,
            r#"<rect class="share" x="{:.1}" y="{:.1}" width="{:.1}" height="5" rx="2" fill="{SHARE}"><title>{:.1}% of the multiplies</title></rect>"#,
            x + 6.0,
            y + h - 13.0,
            (track * n.share).max(1.5),
            n.share * 100.0
        );
    }
    s.push_str("</g>\n");
}

fn labels_svg(s: &mut String, d: &Diagram) {
    s.push_str("<g class=\"labels\" font-family=\"DejaVu Sans Mono, Hack, monospace\">\n");
    for (l, t) in d.routes.labels.iter().zip(&d.label_text) {
        let w = t.chars().count() as f32 * card::LABEL_SIZE * card::MONO_ADVANCE + 6.0;
        let h = card::LABEL_SIZE + 4.0;
        let _ = writeln!(
            s,
            r#"<rect class="shape-box" x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" rx="3" fill="{BACKGROUND}"/>"#,
            l.at[0] - w / 2.0,
            l.at[1] - h / 2.0
        );
        let _ = writeln!(
            s,
            r#"<text class="shape" data-from="{}" data-to="{}" x="{:.1}" y="{:.1}" font-size="{}" text-anchor="middle" dominant-baseline="central" fill="{WEAK}">{}</text>"#,
            esc(&d.names[l.edge.from.index()]),
            esc(&d.names[l.edge.to.index()]),
            l.at[0],
            l.at[1],
            card::LABEL_SIZE,
            esc(t)
        );
    }
    s.push_str("</g>\n");
}
