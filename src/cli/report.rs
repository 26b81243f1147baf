//! Text reports of a design's cost for the terminal: `summary` and `compare`.

use crate::graph::Graph;
use crate::infer::{Analysis, Conventions, Report, Totals, compact, thousands};
use std::fmt::Write;

/// A Keras-style per-layer table with totals.
pub fn summary_table(graph: &Graph, analysis: &Analysis, conventions: &Conventions) -> String {
    let report = Report::new(graph, analysis, conventions);
    let totals = analysis.totals(conventions);
    let unit = conventions.ops_unit();
    let rows: Vec<[String; 6]> = report
        .layers
        .iter()
        .map(|l| {
            let ops = conventions.ops(l.macs);
            let share = if totals.macs > 0 {
                format!("{:.1}%", 100.0 * l.macs as f64 / totals.macs as f64)
            } else {
                "-".into()
            };
            let shape = if l.output_shape.is_empty() {
                "?".to_string()
            } else {
                l.output_shape
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("×")
            };
            [
                format!("{} ({})", l.name, l.kind),
                shape,
                thousands(l.params),
                thousands(ops),
                share,
                l.connected_to.join(", "),
            ]
        })
        .collect();
    let headers = [
        "Layer (kind)".to_string(),
        "Output shape".into(),
        "Params".into(),
        unit.to_string(),
        "% ops".into(),
        "Connected to".into(),
    ];
    let mut widths = headers.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            // Numbers right-aligned, text left-aligned.
            if (2..=4).contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i < 5 {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i < 5 {
                s.push_str("  ");
            }
        }
        s.trim_end().to_string()
    };
    let total_width: usize = widths.iter().sum::<usize>() + 10;
    let mut out = String::new();
    let _ = writeln!(out, "Design: {}", graph.name);
    let _ = writeln!(out, "{}", "─".repeat(total_width));
    let _ = writeln!(out, "{}", line(&headers));
    let _ = writeln!(out, "{}", "═".repeat(total_width));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let _ = writeln!(out, "{}", "═".repeat(total_width));
    write_totals(&mut out, &totals, conventions);
    if !report.errors.is_empty() {
        let _ = writeln!(out, "\nErrors ({}):", report.errors.len());
        for e in &report.errors {
            if e.node.is_empty() {
                let _ = writeln!(out, "  {}", e.message);
            } else {
                let _ = writeln!(out, "  {}: {}", e.node, e.message);
            }
        }
    }
    out
}

fn write_totals(out: &mut String, t: &Totals, conventions: &Conventions) {
    let _ = writeln!(
        out,
        "Total params: {} ({})",
        thousands(t.total_params),
        compact(t.total_params)
    );
    let _ = writeln!(out, "Trainable params: {}", thousands(t.trainable_params));
    let _ = writeln!(
        out,
        "Non-trainable params: {}",
        thousands(t.non_trainable_params)
    );
    let ops = conventions.ops(t.macs);
    let _ = writeln!(
        out,
        "Total {}: {} ({})",
        conventions.ops_unit(),
        thousands(ops),
        compact(ops)
    );
    let _ = writeln!(
        out,
        "Activation memory per sample: {:.2} MB (f32 outputs of every layer)",
        t.activation_bytes as f64 / 1e6
    );
}

/// `9.68× fewer`, `1.25× more` or `same`: how `b` relates to `a`.
pub fn ratio_text(a: u64, b: u64) -> String {
    if a == b {
        "same".into()
    } else if b == 0 {
        "all removed".into()
    } else if a == 0 {
        "new".into()
    } else if b < a {
        format!("{:.2}× fewer", a as f64 / b as f64)
    } else {
        format!("{:.2}× more", b as f64 / a as f64)
    }
}

/// Totals of two designs side by side with deltas and ratios.
pub fn compare_table(
    (a_graph, a): (&Graph, &Analysis),
    (b_graph, b): (&Graph, &Analysis),
    conventions: &Conventions,
) -> String {
    let ta = a.totals(conventions);
    let tb = b.totals(conventions);
    let unit = conventions.ops_unit();
    let rows: [(&str, u64, u64); 5] = [
        ("Total params", ta.total_params, tb.total_params),
        ("Trainable params", ta.trainable_params, tb.trainable_params),
        (
            "Non-trainable params",
            ta.non_trainable_params,
            tb.non_trainable_params,
        ),
        (unit, conventions.ops(ta.macs), conventions.ops(tb.macs)),
        (
            "Activations/sample (bytes)",
            ta.activation_bytes,
            tb.activation_bytes,
        ),
    ];
    let mut out = String::new();
    let wa = a_graph.name.chars().count().max(15);
    let wb = b_graph.name.chars().count().max(15);
    let _ = writeln!(
        out,
        "{:<28}{:>wa$}  {:>wb$}  {:>16}  ratio",
        "", a_graph.name, b_graph.name, "delta"
    );
    for (label, x, y) in rows {
        let delta = y as i128 - x as i128;
        let delta = if delta < 0 {
            format!("−{}", thousands(delta.unsigned_abs() as u64))
        } else {
            format!("+{}", thousands(delta as u64))
        };
        let _ = writeln!(
            out,
            "{label:<28}{:>wa$}  {:>wb$}  {delta:>16}  {}",
            thousands(x),
            thousands(y),
            ratio_text(x, y)
        );
    }
    let (ma, mb) = (conventions.ops(ta.macs), conventions.ops(tb.macs));
    let _ = writeln!(
        out,
        "\n{} → {} {unit}, {}",
        thousands(ma),
        thousands(mb),
        ratio_text(ma, mb)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;
    use crate::infer::analyze;

    #[test]
    fn ratio_reads_naturally() {
        assert_eq!(ratio_text(120_422_400, 12_443_648), "9.68× fewer");
        assert_eq!(ratio_text(100, 125), "1.25× more");
        assert_eq!(ratio_text(7, 7), "same");
    }

    #[test]
    fn summary_lists_every_layer_and_totals() {
        let g = blocks::inception_5x5_bottleneck();
        let a = analyze(&g);
        let text = summary_table(&g, &a, &Conventions::default());
        assert!(text.contains("conv5x5 (conv2d)"), "{text}");
        assert!(text.contains("28×28×32"), "{text}");
        assert!(text.contains("Total params: 15,920"), "{text}");
        assert!(text.contains("Total MACs: 12,443,648"), "{text}");
        assert!(text.contains("80.6%"), "{text}");
    }
}
