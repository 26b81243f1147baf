//! Diagram export: the whole design (not a viewport) drawn with the
//! canvas's own layout and routing ([`crate::graph::layout`],
//! [`crate::graph::route`]), with names, kinds, output shapes and MACs.
//!
//! [`Diagram::build`] computes everything drawn; [`svg`] writes it as a
//! vector drawing and [`png`] rasterises the same drawing. The SVG has a
//! structure scripts can read: each node is `<g class="node"
//! data-name="NAME">` whose first `<rect>` is the node's box, each wire a
//! `<path class="wire" data-from="A" data-to="B">` of absolute `M`/`L`
//! commands, each shape label a `<text class="shape" data-from data-to>`
//! centred on its wire.

mod png;
mod svg;

pub use png::png;
pub use svg::svg;

use crate::graph::group::{self, Group};
use crate::graph::layout::{self, NODE_SIZE, Orientation};
use crate::graph::route::{self, Box2, Routes};
use crate::graph::{Graph, LayerKind, NodeId};
use crate::infer::{Analysis, Conventions, Shape, compact};
use thiserror::Error;

/// Why a diagram could not be written.
#[derive(Debug, Error)]
pub enum RenderError {
    #[error("the diagram would be {width}×{height} pixels, more than this renderer allocates")]
    TooLarge { width: u32, height: u32 },
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

/// How to draw a design.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    pub orientation: Orientation,
    pub conventions: Conventions,
    /// Lay the design out afresh (otherwise the stored positions are drawn).
    pub relayout: bool,
    /// Draw every group collapsed, as one node (laid out afresh).
    pub collapsed: bool,
}

/// One node as drawn.
#[derive(Clone, Debug)]
pub struct DiagramNode {
    pub id: NodeId,
    pub name: String,
    pub kind: &'static str,
    pub summary: String,
    /// Output shape (H×W×C) or the node's error.
    pub detail: String,
    pub error: bool,
    /// Multiply count in the chosen unit, e.g. `118.0M MACs`.
    pub ops: Option<String>,
    /// This node's share of the design's multiplies, 0..=1.
    pub share: f32,
    pub color: [u8; 3],
    pub rect: Box2,
}

/// Everything a rendering of a design draws, in scene units.
#[derive(Clone, Debug)]
pub struct Diagram {
    pub title: String,
    pub subtitle: String,
    pub nodes: Vec<DiagramNode>,
    /// Node names by id index, for the wires' `data-from`/`data-to`.
    pub names: Vec<String>,
    pub routes: Routes,
    /// Shape text of each label in `routes.labels`.
    pub label_text: Vec<String>,
    /// The drawing's extent, margins included.
    pub bounds: Box2,
    pub orientation: Orientation,
}

/// Header colour of a layer family (the canvas uses the same).
pub fn kind_rgb(kind: &LayerKind) -> [u8; 3] {
    use LayerKind::*;
    match kind {
        Input { .. } => [70, 140, 90],
        Conv2d { .. } => [60, 110, 180],
        ZeroPad2d { .. } => [100, 100, 120],
        MaxPool2d { .. } | AvgPool2d { .. } | GlobalAvgPool => [130, 90, 170],
        BatchNorm { .. } | ChannelAffine { .. } => [40, 140, 140],
        Relu
        | LeakyRelu { .. }
        | Sigmoid
        | Tanh
        | Relu6
        | HardSigmoid
        | HardSwish
        | Silu
        | Softmax => [190, 120, 50],
        Dropout { .. } | Flatten => [110, 110, 110],
        Dense { .. } => [160, 70, 110],
        Add | Concat | ChannelScale => [170, 150, 40],
    }
}

/// Margin around the drawing and room for the title, scene units.
const MARGIN: f32 = 30.0;
const TITLE_HEIGHT: f32 = 46.0;

impl Diagram {
    /// Lays out (if asked) and routes `graph`, and collects every text drawn.
    pub fn build(graph: &Graph, analysis: &Analysis, options: &RenderOptions) -> Diagram {
        let mut graph = graph.clone();
        if options.collapsed {
            for g in 0..graph.groups().len() {
                graph.set_collapsed(g, true);
            }
        }
        if options.relayout || options.collapsed {
            layout::auto_layout_with(&mut graph, options.orientation);
        }
        // Stored positions are drawn in the orientation they were laid out in.
        let orientation = graph.orientation;
        let view = group::view(&graph);
        let drawn = &view.graph;
        let boxes = route::node_boxes(drawn);
        let routes = route::route(drawn, &boxes, orientation);
        let conv = options.conventions;
        let totals = analysis.totals(&conv);
        let nodes: Vec<DiagramNode> = drawn
            .nodes()
            .filter_map(|(id, n)| {
                let rect = boxes.get(id.index()).copied().flatten()?;
                Some(match view.group(id) {
                    Some(g) => describe_group(&graph, g, analysis, &conv, totals.macs, id, rect),
                    None => describe_node(id, n, analysis, &conv, totals.macs, rect),
                })
            })
            .collect();
        let names = (0..drawn.id_capacity())
            .map(|i| drawn.name_of(NodeId(i as u32)).to_string())
            .collect();
        let label_text = routes
            .labels
            .iter()
            .map(|l| {
                view.source(l.edge.from)
                    .and_then(|s| analysis.node(s))
                    .and_then(|i| i.output_shape)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into())
            })
            .collect();
        let bounds = drawing_bounds(&nodes, &routes);
        Diagram {
            title: graph.name.clone(),
            subtitle: format!(
                "{} layers · {} params · {} {}",
                graph.len(),
                crate::infer::thousands(totals.total_params),
                compact(conv.ops(totals.macs)),
                conv.ops_unit()
            ),
            nodes,
            names,
            routes,
            label_text,
            bounds,
            orientation,
        }
    }

    /// Width and height of the drawing in scene units.
    pub fn size(&self) -> [f32; 2] {
        self.bounds.size()
    }
}

fn describe_node(
    id: NodeId,
    n: &crate::graph::Node,
    analysis: &Analysis,
    conv: &Conventions,
    total_macs: u64,
    rect: Box2,
) -> DiagramNode {
    let info = analysis.node(id);
    let error = info.and_then(|i| i.error.as_ref());
    let detail = match (error, info.and_then(|i| i.output_shape)) {
        (Some(e), _) => e.message.clone(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "?".into(),
    };
    let macs = info.map_or(0, |i| i.cost.macs);
    DiagramNode {
        id,
        name: n.name.clone(),
        kind: n.kind.display_name(),
        summary: n.kind.summary(),
        detail,
        error: error.is_some(),
        ops: (macs > 0).then(|| format!("{} {}", compact(conv.ops(macs)), conv.ops_unit())),
        share: if total_macs > 0 {
            macs as f32 / total_macs as f32
        } else {
            0.0
        },
        color: kind_rgb(&n.kind),
        rect,
    }
}

/// A group's figures rolled up from its members' inference results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupFigures {
    pub layers: usize,
    /// Total and trainable parameters (in the conventions' style).
    pub params: u64,
    pub trainable_params: u64,
    pub macs: u64,
    /// Shapes entering the group from outside, and its output's.
    pub input_shapes: Vec<Shape>,
    pub output_shape: Option<Shape>,
    /// Members with an error.
    pub errors: usize,
}

/// Sums params and MACs over `group`'s members; shapes at its boundary.
pub fn group_figures(
    graph: &Graph,
    group: &Group,
    analysis: &Analysis,
    conventions: &Conventions,
) -> GroupFigures {
    let mut f = GroupFigures {
        layers: group.members.len(),
        ..Default::default()
    };
    for &m in &group.members {
        let Some(info) = analysis.node(m) else {
            continue;
        };
        let (trainable, non_trainable) = info.params(conventions);
        f.params += trainable + non_trainable;
        f.trainable_params += trainable;
        f.macs += info.cost.macs;
        f.errors += usize::from(info.error.is_some());
    }
    let inside = |id: NodeId| group.members.binary_search(&id).is_ok();
    let mut sources: Vec<NodeId> = graph
        .edges()
        .iter()
        .filter(|e| inside(e.to) && !inside(e.from))
        .map(|e| e.from)
        .collect();
    sources.sort();
    sources.dedup();
    f.input_shapes = sources
        .iter()
        .filter_map(|&s| analysis.node(s)?.output_shape)
        .collect();
    f.output_shape = graph
        .group_output(group)
        .and_then(|o| analysis.node(o)?.output_shape);
    f
}

/// A collapsed group as drawn: its name, layer count, output shape and rolled-up cost.
fn describe_group(
    graph: &Graph,
    g: usize,
    analysis: &Analysis,
    conv: &Conventions,
    total_macs: u64,
    id: NodeId,
    rect: Box2,
) -> DiagramNode {
    let group = &graph.groups()[g];
    let f = group_figures(graph, group, analysis, conv);
    let detail = match (f.errors, f.output_shape) {
        (0, Some(s)) => s.to_string(),
        (0, None) => "?".into(),
        (n, _) => format!("{n} layers with errors"),
    };
    DiagramNode {
        id,
        name: group.name.clone(),
        kind: "Group",
        summary: format!("{} layers · {} params", f.layers, compact(f.params)),
        detail,
        error: f.errors > 0,
        ops: (f.macs > 0).then(|| format!("{} {}", compact(conv.ops(f.macs)), conv.ops_unit())),
        share: if total_macs > 0 {
            f.macs as f32 / total_macs as f32
        } else {
            0.0
        },
        color: GROUP_RGB,
        rect,
    }
}

/// Header colour of a collapsed group.
pub const GROUP_RGB: [u8; 3] = [85, 95, 150];

fn drawing_bounds(nodes: &[DiagramNode], routes: &Routes) -> Box2 {
    let mut lo = [f32::INFINITY; 2];
    let mut hi = [f32::NEG_INFINITY; 2];
    let mut grow = |p: [f32; 2]| {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    };
    for n in nodes {
        grow(n.rect.min);
        grow(n.rect.max);
    }
    for w in &routes.wires {
        w.points.iter().copied().for_each(&mut grow);
    }
    if !lo[0].is_finite() {
        lo = [0.0, 0.0];
        hi = NODE_SIZE;
    }
    Box2 {
        min: [lo[0] - MARGIN, lo[1] - MARGIN - TITLE_HEIGHT],
        max: [hi[0] + MARGIN, hi[1] + MARGIN],
    }
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Font sizes and offsets inside a node box, shared by SVG and PNG.
pub(crate) mod card {
    pub const HEADER: f32 = 20.0;
    pub const NAME_SIZE: f32 = 12.5;
    pub const KIND_SIZE: f32 = 10.5;
    pub const TEXT_SIZE: f32 = 11.0;
    pub const LABEL_SIZE: f32 = 10.0;
    /// Characters of a name that fit the header beside the kind.
    pub const NAME_CHARS: usize = 20;
    /// Monospace advance as a fraction of the font size.
    pub const MONO_ADVANCE: f32 = 0.6;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;
    use crate::infer::analyze;

    #[test]
    fn group_figures_are_the_sums_of_their_members_inference() {
        let graph = blocks::resnet50("resnet50", 224, 1000, false);
        let analysis = analyze(&graph);
        let conv = Conventions::default();
        assert_eq!(
            graph.groups().len(),
            4 + 16,
            "four stages holding 16 blocks"
        );
        let nesting = graph.nesting();
        let (mut params, mut macs) = (0, 0);
        for (gi, g) in graph.groups().iter().enumerate() {
            let f = group_figures(&graph, g, &analysis, &conv);
            let member_macs: u64 = g
                .members
                .iter()
                .map(|&m| analysis.node(m).unwrap().cost.macs)
                .sum();
            let member_params: u64 = g
                .members
                .iter()
                .map(|&m| {
                    let (t, n) = analysis.node(m).unwrap().params(&conv);
                    t + n
                })
                .sum();
            assert_eq!(f.macs, member_macs, "{}", g.name);
            assert_eq!(f.params, member_params, "{}", g.name);
            assert_eq!(f.layers, g.members.len());
            assert_eq!(f.errors, 0);
            // A stage's figures are its blocks' sums.
            let blocks: Vec<&Group> = (0..graph.groups().len())
                .filter(|&b| nesting.parent[b] == Some(gi))
                .map(|b| &graph.groups()[b])
                .collect();
            if nesting.parent[gi].is_none() {
                assert!(blocks.len() >= 3, "{} holds its blocks", g.name);
                let sum = |pick: fn(&GroupFigures) -> u64| -> u64 {
                    blocks
                        .iter()
                        .map(|b| pick(&group_figures(&graph, b, &analysis, &conv)))
                        .sum()
                };
                assert_eq!(sum(|f| f.macs), f.macs, "{}", g.name);
                assert_eq!(sum(|f| f.params), f.params, "{}", g.name);
                params += f.params;
                macs += f.macs;
            }
        }
        // The four stages hold most of the network: the rest is the stem and the head.
        let totals = analysis.totals(&conv);
        let outside = |pick: fn(&crate::infer::NodeInfo, &Conventions) -> u64| -> u64 {
            let table = graph.group_table();
            graph
                .node_ids()
                .filter(|id| table[id.index()].is_none())
                .map(|id| pick(analysis.node(id).unwrap(), &conv))
                .sum()
        };
        assert_eq!(
            params
                + outside(|i, c| {
                    let (t, n) = i.params(c);
                    t + n
                }),
            totals.total_params
        );
        assert_eq!(macs + outside(|i, _| i.cost.macs), totals.macs);
        // Boundary shapes: stage 2 takes the pooled 56×56×64 and gives 56×56×256.
        let res2 = &graph.groups()[graph.find_group("res2").unwrap()];
        let f = group_figures(&graph, res2, &analysis, &conv);
        assert_eq!(res2.name, "res2");
        assert_eq!(f.input_shapes.len(), 1);
        assert_eq!(f.input_shapes[0].to_string(), "56×56×64");
        assert_eq!(f.output_shape.unwrap().to_string(), "56×56×256");
    }
}
