//! The diagram's geometry, read back from the SVG as a script would (the
//! contract: `<g class="node" data-name>` whose first `<rect>` is the box,
//! `<path class="wire" data-from data-to>` with absolute M/L commands,
//! `<text class="shape" data-from data-to>` on its wire), for every preset
//! in both orientations, a DenseNet-121-shaped graph and the torchvision
//! models imported from tests/fixtures/onnx, expanded and collapsed.

#[path = "common/densenet.rs"]
mod densenet;

use netloom::graph::layout::Orientation;
use netloom::graph::route::Box2;
use netloom::graph::{Graph, file, group};
use netloom::infer::analyze;
use netloom::render::{Diagram, RenderOptions, svg};
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug)]
struct NodeBox {
    name: String,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

#[derive(Debug)]
struct WirePath {
    from: String,
    to: String,
    points: Vec<[f32; 2]>,
}

#[derive(Debug)]
struct ShapeLabel {
    from: String,
    to: String,
    at: [f32; 2],
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn num(tag: &str, name: &str) -> f32 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {name} in {tag}"))
}

/// The tags (text up to `>`) starting with `prefix`.
fn tags<'a>(svg: &'a str, prefix: &'a str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    svg.match_indices(prefix).map(move |(i, _)| {
        let end = svg[i..].find('>').map_or(svg.len(), |e| i + e);
        (i, &svg[i..end])
    })
}

fn parse_path(d: &str) -> Vec<[f32; 2]> {
    let mut points = Vec::new();
    let mut it = d.split_whitespace().peekable();
    while let Some(tok) = it.next() {
        let (cmd, rest) = tok.split_at(1);
        assert!(
            cmd == "M" || cmd == "L",
            "relative or curved command {tok} in {d}"
        );
        let x: f32 = rest.parse().unwrap();
        let y: f32 = it.next().unwrap().parse().unwrap();
        points.push([x, y]);
    }
    points
}

fn parse(svg: &str) -> (Vec<NodeBox>, Vec<WirePath>, Vec<ShapeLabel>) {
    let nodes = tags(svg, "<g class=\"node\"")
        .map(|(i, tag)| {
            let (_, rect) = tags(&svg[i..], "<rect").next().expect("node rect");
            NodeBox {
                name: attr(tag, "data-name").unwrap(),
                x: num(rect, "x"),
                y: num(rect, "y"),
                w: num(rect, "width"),
                h: num(rect, "height"),
            }
        })
        .collect();
    let wires = tags(svg, "<path class=\"wire\"")
        .map(|(_, tag)| WirePath {
            from: attr(tag, "data-from").unwrap(),
            to: attr(tag, "data-to").unwrap(),
            points: parse_path(&attr(tag, "d").unwrap()),
        })
        .collect();
    let labels = tags(svg, "<text class=\"shape\"")
        .map(|(_, tag)| ShapeLabel {
            from: attr(tag, "data-from").unwrap(),
            to: attr(tag, "data-to").unwrap(),
            at: [num(tag, "x"), num(tag, "y")],
        })
        .collect();
    (nodes, wires, labels)
}

/// Whether segment a–b passes through the box shrunk by `inset`.
fn segment_hits_box(a: [f32; 2], b: [f32; 2], n: &NodeBox, inset: f32) -> bool {
    Box2::from_min_size([n.x, n.y], [n.w, n.h]).hit_by_segment(a, b, inset)
}

fn distance_to_segment(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let d = [b[0] - a[0], b[1] - a[1]];
    let len2 = d[0] * d[0] + d[1] * d[1];
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p[0] - a[0]) * d[0] + (p[1] - a[1]) * d[1]) / len2).clamp(0.0, 1.0)
    };
    let q = [a[0] + t * d[0], a[1] + t * d[1]];
    ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
}

/// Length over which two segments run on top of each other (within 1.5 units).
fn overlap_length(a: [[f32; 2]; 2], b: [[f32; 2]; 2]) -> f32 {
    let da = [a[1][0] - a[0][0], a[1][1] - a[0][1]];
    let len = (da[0] * da[0] + da[1] * da[1]).sqrt();
    if len < 1e-3 {
        return 0.0;
    }
    let dir = [da[0] / len, da[1] / len];
    // Both ends of b must lie close to a's line, and b must be parallel.
    let off = |p: [f32; 2]| ((p[0] - a[0][0]) * dir[1] - (p[1] - a[0][1]) * dir[0]).abs();
    if off(b[0]) > 1.5 || off(b[1]) > 1.5 {
        return 0.0;
    }
    let along = |p: [f32; 2]| (p[0] - a[0][0]) * dir[0] + (p[1] - a[0][1]) * dir[1];
    let (b0, b1) = (along(b[0]), along(b[1]));
    let (lo, hi) = (b0.min(b1).max(0.0), b0.max(b1).min(len));
    (hi - lo).max(0.0)
}

/// Every check of the contract on one rendered design.
fn check(label: &str, graph: &Graph, svg: &str) {
    let (nodes, wires, labels) = parse(svg);
    // Every node drawn, once.
    let names: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes.len(), graph.len(), "{label}: node count");
    for (_, n) in graph.nodes() {
        assert!(
            names.contains(n.name.as_str()),
            "{label}: {} not drawn",
            n.name
        );
    }
    assert_eq!(wires.len(), graph.edges().len(), "{label}: wire count");
    // No two boxes overlap.
    let mut sorted: Vec<&NodeBox> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.y.total_cmp(&b.y));
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if b.y >= a.y + a.h {
                break;
            }
            let overlap = a.x < b.x + b.w && b.x < a.x + a.w;
            assert!(!overlap, "{label}: {} and {} overlap", a.name, b.name);
        }
    }
    // No wire through a box it does not connect.
    for w in &wires {
        for n in &nodes {
            if n.name == w.from || n.name == w.to {
                continue;
            }
            for s in w.points.windows(2) {
                assert!(
                    !segment_hits_box(s[0], s[1], n, 0.5),
                    "{label}: wire {} → {} passes through {}",
                    w.from,
                    w.to,
                    n.name
                );
            }
        }
    }
    // No two wires of different outputs on top of each other for more than 3 units.
    let segments: Vec<(&str, [[f32; 2]; 2])> = wires
        .iter()
        .flat_map(|w| w.points.windows(2).map(|s| (w.from.as_str(), [s[0], s[1]])))
        .collect();
    for (i, (fa, a)) in segments.iter().enumerate() {
        for (fb, b) in &segments[i + 1..] {
            if fa == fb {
                continue;
            }
            let o = overlap_length(*a, *b);
            assert!(
                o <= 3.0,
                "{label}: wires from {fa} and {fb} overlap for {o:.1} units at {a:?} / {b:?}"
            );
        }
    }
    // Shape labels sit on their own wire, outside every box.
    for l in &labels {
        let own = wires
            .iter()
            .find(|w| w.from == l.from && w.to == l.to)
            .unwrap_or_else(|| panic!("{label}: label of a missing wire {} → {}", l.from, l.to));
        let d = own
            .points
            .windows(2)
            .map(|s| distance_to_segment(l.at, s[0], s[1]))
            .fold(f32::INFINITY, f32::min);
        assert!(
            d < 0.5,
            "{label}: label {} → {} is {d} off its wire",
            l.from,
            l.to
        );
        for n in &nodes {
            let inside =
                l.at[0] > n.x && l.at[0] < n.x + n.w && l.at[1] > n.y && l.at[1] < n.y + n.h;
            assert!(!inside, "{label}: label of {} sits on {}", l.from, n.name);
        }
    }
    let sources = graph
        .edges()
        .iter()
        .map(|e| e.from)
        .collect::<HashSet<_>>()
        .len();
    assert_eq!(labels.len(), sources, "{label}: one shape label per output");
}

fn render(graph: &Graph, orientation: Orientation) -> String {
    let analysis = analyze(graph);
    let options = RenderOptions {
        orientation,
        relayout: true,
        ..Default::default()
    };
    svg(&Diagram::build(graph, &analysis, &options))
}

/// Every preset file: its stem and design.
fn presets() -> Vec<(String, Graph)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("presets");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let graph = file::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        found.push((stem, graph));
    }
    found
}

#[test]
fn every_preset_renders_with_honest_geometry() {
    let mut count = 0;
    for (stem, graph) in presets() {
        for o in [Orientation::TopToBottom, Orientation::LeftToRight] {
            check(&format!("{stem} {o:?}"), &graph, &render(&graph, o));
        }
        count += 1;
    }
    assert!(count >= 15, "only {count} presets found");
}

/// `netloom render --collapsed`: every group drawn as one node, wired at its boundary.
#[test]
fn every_preset_renders_collapsed_with_honest_geometry() {
    let mut grouped = 0;
    for (stem, graph) in presets() {
        check_collapsed(&stem, &graph);
        grouped += usize::from(!graph.groups().is_empty());
    }
    assert!(grouped >= 9, "only {grouped} presets have groups");
}

/// Renders `graph` with every group collapsed in both orientations: the
/// geometry checks hold, every outermost group is one node, no group
/// inside another and no member is drawn.
fn check_collapsed(stem: &str, graph: &Graph) {
    let mut collapsed = graph.clone();
    for g in 0..collapsed.groups().len() {
        collapsed.set_collapsed(g, true);
    }
    let drawn = group::view(&collapsed).graph;
    let analysis = analyze(graph);
    let nesting = graph.nesting();
    for o in [Orientation::TopToBottom, Orientation::LeftToRight] {
        let options = RenderOptions {
            orientation: o,
            collapsed: true,
            ..Default::default()
        };
        let svg = svg(&Diagram::build(graph, &analysis, &options));
        check(&format!("{stem} collapsed {o:?}"), &drawn, &svg);
        let (nodes, _, _) = parse(&svg);
        for (g, group) in graph.groups().iter().enumerate() {
            // The outermost groups are drawn; a group inside one is not.
            let outermost = nesting.parent[g].is_none();
            assert_eq!(
                nodes.iter().any(|n| n.name == group.name),
                outermost,
                "{stem}: group {} (outermost: {outermost})",
                group.name
            );
            for &m in &group.members {
                assert!(
                    !nodes.iter().any(|n| n.name == graph.name_of(m)),
                    "{stem}: member {} of collapsed {} drawn",
                    graph.name_of(m),
                    group.name
                );
            }
        }
    }
}

/// The torchvision models of the Done-when, width-reduced, as committed
/// in tests/fixtures/onnx (both exporters).
const TORCHVISION: [&str; 6] = [
    "resnet18_mini",
    "resnet50_mini",
    "googlenet_mini",
    "densenet121_mini",
    "inception_v3_mini",
    "squeezenet1_0_mini",
];

#[test]
fn torchvision_imports_render_with_honest_geometry_expanded_and_collapsed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let mut checked = Vec::new();
    for stem in TORCHVISION {
        for exporter in ["legacy", "dynamo"] {
            let file = format!("{stem}.{exporter}.onnx");
            let graph = netloom::interop::onnx::import(&dir.join(&file))
                .unwrap_or_else(|e| panic!("{file} does not import: {e}"))
                .graph;
            // The legacy exporter keeps module paths in the names, which
            // become groups (layer1.0, features.denseblock1, Mixed_5b…).
            if exporter == "legacy" {
                assert!(graph.groups().len() >= 3, "{file}: {:?}", graph.groups());
            }
            // Drawn as imported, errors and all (an error is a taller box).
            let errors = analyze(&graph).errors().len();
            for o in [Orientation::TopToBottom, Orientation::LeftToRight] {
                check(&format!("{file} {o:?}"), &graph, &render(&graph, o));
            }
            check_collapsed(&file, &graph);
            checked.push(format!(
                "{file}: {} layers, {} groups, {errors} with errors",
                graph.len(),
                graph.groups().len()
            ));
        }
    }
    eprintln!("checked: {checked:#?}");
}

#[test]
fn densenet_concatenations_share_lanes_and_stay_honest() {
    let graph = densenet121_like_checked();
    check(
        "densenet121-like",
        &graph,
        &render(&graph, Orientation::TopToBottom),
    );
}

fn densenet121_like_checked() -> Graph {
    let g = densenet::densenet121_like();
    assert!(analyze(&g).is_valid(), "{:?}", analyze(&g).errors());
    assert!((400..460).contains(&g.len()), "{} layers", g.len());
    g
}

#[test]
fn the_stored_layout_is_drawn_when_asked() {
    let graph =
        file::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("presets/resnet-mini.json"))
            .unwrap();
    let analysis = analyze(&graph);
    let d = Diagram::build(&graph, &analysis, &RenderOptions::default());
    let (nodes, _, _) = parse(&svg(&d));
    let input = nodes.iter().find(|n| n.name == "input").unwrap();
    let stored = graph.node(graph.find("input").unwrap()).unwrap().position;
    assert_eq!([input.x, input.y], stored);
}
