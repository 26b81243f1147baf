//! Wire routing: the one home of the diagram's geometry. The canvas, the
//! SVG/PNG renderer and the geometry tests all draw these polylines.
//!
//! A wire leaves its producer's output port, crosses the gap below it, runs
//! down a *lane* (a straight segment clear of every node box and at least
//! [`LANE_SPACING`] from lanes of other outputs), and crosses the gap above
//! its consumer into the input port. Wires between adjacent layers go
//! straight across the gap. Lanes are found by a best-first search over
//! candidate positions (the ports, the edges of blocking boxes, the sides
//! of conflicting lanes), cheapest detour first; wires of one output reuse
//! its lane, like a bus.

use super::layout::{LANE_MARGIN, LANE_SPACING, Orientation};
use super::{Arity, Edge, Graph, NodeId};
use std::collections::BinaryHeap;

/// An axis-aligned box in scene coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Box2 {
    pub min: [f32; 2],
    pub max: [f32; 2],
}

impl Box2 {
    pub fn from_min_size(min: [f32; 2], size: [f32; 2]) -> Box2 {
        Box2 {
            min,
            max: [min[0] + size[0], min[1] + size[1]],
        }
    }

    pub fn center(&self) -> [f32; 2] {
        [
            (self.min[0] + self.max[0]) / 2.0,
            (self.min[1] + self.max[1]) / 2.0,
        ]
    }

    pub fn size(&self) -> [f32; 2] {
        [self.max[0] - self.min[0], self.max[1] - self.min[1]]
    }

    /// Whether the open segment `a`–`b` passes through the box's interior
    /// shrunk by `inset` on every side (Liang–Barsky clipping).
    pub fn hit_by_segment(&self, a: [f32; 2], b: [f32; 2], inset: f32) -> bool {
        let (lo, hi) = (
            [self.min[0] + inset, self.min[1] + inset],
            [self.max[0] - inset, self.max[1] - inset],
        );
        if lo[0] >= hi[0] || lo[1] >= hi[1] {
            return false;
        }
        let d = [b[0] - a[0], b[1] - a[1]];
        let (mut t0, mut t1) = (0.0f32, 1.0f32);
        for k in 0..2 {
            if d[k].abs() < 1e-9 {
                if a[k] <= lo[k] || a[k] >= hi[k] {
                    return false;
                }
                continue;
            }
            let (mut ta, mut tb) = ((lo[k] - a[k]) / d[k], (hi[k] - a[k]) / d[k]);
            if ta > tb {
                std::mem::swap(&mut ta, &mut tb);
            }
            t0 = t0.max(ta);
            t1 = t1.min(tb);
            if t0 >= t1 {
                return false;
            }
        }
        true
    }
}

/// One routed wire: the edge and its polyline, output port first.
#[derive(Clone, Debug, PartialEq)]
pub struct Wire {
    pub edge: Edge,
    pub points: Vec<[f32; 2]>,
}

/// Where an output's shape label goes: on the first segment of one of its wires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub edge: Edge,
    pub at: [f32; 2],
}

/// Every wire of a design, routed, and one shape label per output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Routes {
    pub wires: Vec<Wire>,
    pub labels: Vec<Label>,
}

/// Number of input ports drawn on a node: Add/Concat show one spare.
pub fn port_count(graph: &Graph, id: NodeId) -> usize {
    match graph.node(id).map(|n| n.kind.arity()) {
        Some(Arity::None) | None => 0,
        Some(Arity::One) => 1,
        Some(Arity::Many) => graph.inputs_of(id).len() + 1,
    }
}

/// Scene position of input port `i` of `n` on a node box.
pub fn input_port(b: &Box2, i: usize, n: usize, orientation: Orientation) -> [f32; 2] {
    let t = (i as f32 + 1.0) / (n.max(1) as f32 + 1.0);
    match orientation {
        Orientation::TopToBottom => [b.min[0] + (b.max[0] - b.min[0]) * t, b.min[1]],
        Orientation::LeftToRight => [b.min[0], b.min[1] + (b.max[1] - b.min[1]) * t],
    }
}

/// Scene position of a node box's output port.
pub fn output_port(b: &Box2, orientation: Orientation) -> [f32; 2] {
    match orientation {
        Orientation::TopToBottom => [b.center()[0], b.max[1]],
        Orientation::LeftToRight => [b.max[0], b.center()[1]],
    }
}

/// A box in flow coordinates: `u` along the flow, `v` across it.
#[derive(Clone, Copy, Debug)]
struct FlowBox {
    u: [f32; 2],
    v: [f32; 2],
    id: NodeId,
}

/// A vertical (in flow coordinates) run of one output's wires.
#[derive(Clone, Copy, Debug)]
struct Lane {
    v: f32,
    u: [f32; 2],
    source: NodeId,
}

/// The boxes and lanes a new lane must keep clear of.
struct Obstacles {
    /// Sorted by `u[0]`.
    boxes: Vec<FlowBox>,
    /// The longest box along the flow, to bound range queries.
    max_len: f32,
    /// Sorted by `v`.
    lanes: Vec<Lane>,
}

impl Obstacles {
    fn new(mut boxes: Vec<FlowBox>) -> Obstacles {
        boxes.sort_by(|a, b| a.u[0].total_cmp(&b.u[0]));
        let max_len = boxes.iter().map(|b| b.u[1] - b.u[0]).fold(0.0, f32::max);
        Obstacles {
            boxes,
            max_len,
            lanes: Vec::new(),
        }
    }

    /// Boxes overlapping the flow range `u` (other than `skip`).
    fn boxes_in(&self, u: [f32; 2], skip: [NodeId; 2]) -> impl Iterator<Item = &FlowBox> {
        let start = self
            .boxes
            .partition_point(|b| b.u[0] < u[0] - self.max_len - 1.0);
        self.boxes[start..]
            .iter()
            .take_while(move |b| b.u[0] < u[1])
            .filter(move |b| b.u[1] > u[0] && !skip.contains(&b.id))
    }

    /// A box a lane at `v` over `u` would pass through or brush.
    fn blocking_box(&self, v: f32, u: [f32; 2], skip: [NodeId; 2]) -> Option<FlowBox> {
        self.boxes_in(u, skip)
            .find(|b| v > b.v[0] - LANE_MARGIN + 0.5 && v < b.v[1] + LANE_MARGIN - 0.5)
            .copied()
    }

    /// A lane of another output too close to `v` over an overlapping range.
    fn conflicting_lane(&self, v: f32, u: [f32; 2], source: NodeId) -> Option<Lane> {
        let start = self
            .lanes
            .partition_point(|l| l.v <= v - LANE_SPACING + 0.5);
        self.lanes[start..]
            .iter()
            .take_while(|l| l.v < v + LANE_SPACING - 0.5)
            .find(|l| l.source != source && l.u[0] < u[1] + 2.0 && u[0] < l.u[1] + 2.0)
            .copied()
    }

    /// Whether a straight segment (flow coordinates) passes through a box other than `skip`.
    fn segment_hits(&self, a: [f32; 2], b: [f32; 2], skip: [NodeId; 2]) -> bool {
        let u = [a[0].min(b[0]), a[0].max(b[0])];
        self.boxes_in(u, skip).any(|bx| {
            Box2 {
                min: [bx.u[0], bx.v[0]],
                max: [bx.u[1], bx.v[1]],
            }
            .hit_by_segment(a, b, 0.5)
        })
    }

    fn add_lane(&mut self, lane: Lane) {
        let at = self.lanes.partition_point(|l| l.v < lane.v);
        self.lanes.insert(at, lane);
    }
}

/// Candidate lane position in the best-first search, cheapest first.
#[derive(PartialEq)]
struct Candidate {
    cost: f32,
    v: f32,
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .cost
            .total_cmp(&self.cost)
            // Ties go to the right of the flow (where the layout puts lanes).
            .then(self.v.total_cmp(&other.v))
    }
}

/// Routes every edge of `graph` between the node boxes `boxes` (indexed by
/// node id; `None` for nodes not drawn).
pub fn route(graph: &Graph, boxes: &[Option<Box2>], orientation: Orientation) -> Routes {
    let flow_box = |id: NodeId| -> Option<FlowBox> {
        let b = boxes.get(id.index()).copied().flatten()?;
        let (lo, hi) = (orientation.flow(b.min), orientation.flow(b.max));
        Some(FlowBox {
            u: [lo[0], hi[0]],
            v: [lo[1], hi[1]],
            id,
        })
    };
    let mut obstacles = Obstacles::new(graph.node_ids().filter_map(flow_box).collect());
    let ports: Vec<usize> = (0..graph.id_capacity())
        .map(|i| port_count(graph, NodeId(i as u32)))
        .collect();
    let ends = |e: &Edge| -> Option<([f32; 2], [f32; 2])> {
        let (f, t) = (
            boxes.get(e.from.index()).copied().flatten()?,
            boxes.get(e.to.index()).copied().flatten()?,
        );
        let a = orientation.flow(output_port(&f, orientation));
        let b = orientation.flow(input_port(
            &t,
            e.input,
            ports[e.to.index()].max(e.input + 1),
            orientation,
        ));
        Some((a, b))
    };
    let mut routes = Routes::default();
    let gap = orientation.layer_gap();
    for e in routing_order(graph, &ends) {
        let Some((a, b)) = ends(&e) else { continue };
        let points = route_one(&mut obstacles, &e, a, b, gap);
        routes.wires.push(Wire {
            edge: e,
            points: points.into_iter().map(|p| orientation.flow(p)).collect(),
        });
    }
    routes.labels = place_labels(&routes.wires);
    routes
}

/// Edges grouped by source, sources with short spans first (inner lanes
/// for short skips), each source's longest wire first (the bus it lays
/// down is reused by the shorter ones).
fn routing_order(
    graph: &Graph,
    ends: &impl Fn(&Edge) -> Option<([f32; 2], [f32; 2])>,
) -> Vec<Edge> {
    let span = |e: &Edge| ends(e).map_or(0.0, |(a, b)| b[0] - a[0]);
    let mut reach = vec![0.0f32; graph.id_capacity()];
    for e in graph.edges() {
        reach[e.from.index()] = reach[e.from.index()].max(span(e));
    }
    let mut edges: Vec<(f32, f32, Edge)> = graph
        .edges()
        .iter()
        .map(|e| (reach[e.from.index()], span(e), *e))
        .collect();
    edges.sort_by(|x, y| {
        x.0.total_cmp(&y.0)
            .then(x.2.from.cmp(&y.2.from))
            .then(y.1.total_cmp(&x.1))
            .then(x.2.to.cmp(&y.2.to))
            .then(x.2.input.cmp(&y.2.input))
    });
    edges.into_iter().map(|(_, _, e)| e).collect()
}

/// The polyline (flow coordinates) of one wire from port `a` to port `b`.
fn route_one(
    obstacles: &mut Obstacles,
    e: &Edge,
    a: [f32; 2],
    b: [f32; 2],
    gap: f32,
) -> Vec<[f32; 2]> {
    let ends = [e.from, e.to];
    let du = b[0] - a[0];
    // Adjacent layers: straight across the gap, if nothing is in the way.
    if du <= gap * 1.5 && du > 0.0 && !obstacles.segment_hits(a, b, ends) {
        return vec![a, b];
    }
    if du >= 2.0 * gap + 1.0 {
        let u = [a[0] + gap, b[0] - gap];
        let v = find_lane(obstacles, e.from, u, a, b, ends, true);
        obstacles.add_lane(Lane {
            v,
            u,
            source: e.from,
        });
        return dedup(vec![a, [u[0], v], [u[1], v], b]);
    }
    // The consumer is not below its producer: go around both, beside them.
    let (top, bottom) = (a[0] + gap / 2.0, b[0] - gap / 2.0);
    let u = [top.min(bottom), top.max(bottom)];
    let v = find_lane(obstacles, e.from, u, a, b, [NodeId(u32::MAX); 2], false);
    obstacles.add_lane(Lane {
        v,
        u,
        source: e.from,
    });
    dedup(vec![
        a,
        [top, a[1]],
        [top, v],
        [bottom, v],
        [bottom, b[1]],
        b,
    ])
}

/// The cheapest lane position over `u` that is clear of boxes (other than
/// `skip`) and of other outputs' lanes; with `diagonals`, the slanted runs
/// from `a` and into `b` must be clear too.
fn find_lane(
    obstacles: &Obstacles,
    source: NodeId,
    u: [f32; 2],
    a: [f32; 2],
    b: [f32; 2],
    skip: [NodeId; 2],
    diagonals: bool,
) -> f32 {
    const MAX_TRIES: usize = 600;
    let cost = |v: f32| (v - a[1]).abs() + (v - b[1]).abs();
    let mut heap = BinaryHeap::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |heap: &mut BinaryHeap<Candidate>, v: f32, bonus: f32| {
        if v.is_finite() && seen.insert((v * 4.0).round() as i64) {
            heap.push(Candidate {
                cost: cost(v) - bonus,
                v,
            });
        }
    };
    push(&mut heap, a[1], 0.0);
    push(&mut heap, b[1], 0.0);
    // This output's own lanes: a bus is cheaper than a new lane.
    for l in obstacles.lanes.iter().filter(|l| l.source == source) {
        push(&mut heap, l.v, 1e5);
    }
    let mut tries = 0;
    while let Some(Candidate { v, .. }) = heap.pop() {
        tries += 1;
        if tries > MAX_TRIES {
            break;
        }
        if let Some(bx) = obstacles.blocking_box(v, u, skip) {
            push(&mut heap, bx.v[1] + LANE_MARGIN, 0.0);
            push(&mut heap, bx.v[0] - LANE_MARGIN, 0.0);
            continue;
        }
        if let Some(l) = obstacles.conflicting_lane(v, u, source) {
            push(&mut heap, l.v + LANE_SPACING, 0.0);
            push(&mut heap, l.v - LANE_SPACING, 0.0);
            continue;
        }
        if diagonals
            && (obstacles.segment_hits(a, [u[0], v], skip)
                || obstacles.segment_hits([u[1], v], b, skip))
        {
            push(&mut heap, v + LANE_SPACING, 0.0);
            push(&mut heap, v - LANE_SPACING, 0.0);
            continue;
        }
        return v;
    }
    // Past everything drawn: always clear.
    let far_box = obstacles.boxes.iter().map(|b| b.v[1]).fold(a[1], f32::max);
    let far_lane = obstacles.lanes.iter().map(|l| l.v).fold(far_box, f32::max);
    far_lane.max(far_box + LANE_MARGIN) + LANE_SPACING
}

fn dedup(mut points: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
    points.dedup_by(|x, y| (x[0] - y[0]).abs() < 0.01 && (x[1] - y[1]).abs() < 0.01);
    points
}

/// One label per output: on the first segment of its most direct wire, at
/// the segment's middle.
fn place_labels(wires: &[Wire]) -> Vec<Label> {
    let mut best: Vec<(NodeId, f32, usize)> = Vec::new();
    for (k, w) in wires.iter().enumerate() {
        if w.points.len() < 2 {
            continue;
        }
        let (p, q) = (w.points[0], w.points[w.points.len() - 1]);
        let detour = w.points.len() as f32 * 1e4 + (q[0] - p[0]).abs() + (q[1] - p[1]).abs();
        match best.iter_mut().find(|(s, _, _)| *s == w.edge.from) {
            Some(entry) if detour < entry.1 => *entry = (w.edge.from, detour, k),
            Some(_) => {}
            None => best.push((w.edge.from, detour, k)),
        }
    }
    best.into_iter()
        .map(|(_, _, k)| {
            let w = &wires[k];
            let (p, q) = (w.points[0], w.points[1]);
            Label {
                edge: w.edge,
                at: [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0],
            }
        })
        .collect()
}

/// Boxes of every node at its stored position, with the standard node size.
pub fn node_boxes(graph: &Graph) -> Vec<Option<Box2>> {
    (0..graph.id_capacity())
        .map(|i| {
            graph
                .node(NodeId(i as u32))
                .map(|n| Box2::from_min_size(n.position, super::layout::NODE_SIZE))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{blocks, layout};

    fn wire<'a>(r: &'a Routes, g: &Graph, from: &str, to: &str) -> &'a Wire {
        let (f, t) = (g.find(from).unwrap(), g.find(to).unwrap());
        r.wires
            .iter()
            .find(|w| w.edge.from == f && w.edge.to == t)
            .unwrap()
    }

    #[test]
    fn skip_wire_runs_in_its_own_lane_beside_the_main_column() {
        let mut g = blocks::resnet_identity_block_preset();
        layout::auto_layout(&mut g);
        let boxes = node_boxes(&g);
        let r = route(&g, &boxes, Orientation::TopToBottom);
        assert_eq!(r.wires.len(), g.edges().len());
        let skip = wire(&r, &g, "input", "res2b_add");
        assert_eq!(skip.points.len(), 4, "{:?}", skip.points);
        let main_x = boxes[g.find("input").unwrap().index()].unwrap().center()[0];
        let lane_x = skip.points[1][0];
        let expected = main_x + layout::NODE_SIZE[0] / 2.0 + LANE_MARGIN;
        assert!((lane_x - expected).abs() < 0.01, "{lane_x} vs {expected}");
        // No wire passes through a node it does not connect.
        for w in &r.wires {
            for (id, b) in g.node_ids().zip(boxes.iter().flatten()) {
                if id == w.edge.from || id == w.edge.to {
                    continue;
                }
                for s in w.points.windows(2) {
                    assert!(!b.hit_by_segment(s[0], s[1], 0.5), "{w:?} hits {id:?}");
                }
            }
        }
    }

    #[test]
    fn wires_of_one_output_share_a_lane_others_keep_apart() {
        // a feeds c and d far below; b feeds d: a's two wires share a lane, b's is apart.
        let mut g = Graph::new("t");
        let relu = crate::graph::LayerKind::Relu;
        let ids: Vec<NodeId> = ["a", "m1", "m2", "m3", "c", "d"]
            .iter()
            .map(|n| g.add_node(*n, relu.clone(), [0.0, 0.0]).unwrap())
            .collect();
        for w in ids.windows(2) {
            g.connect(w[0], w[1], 0).unwrap();
        }
        let cat = g
            .add_node("cat", crate::graph::LayerKind::Concat, [0.0, 0.0])
            .unwrap();
        g.connect(ids[5], cat, 0).unwrap();
        g.connect(ids[0], cat, 1).unwrap();
        g.connect(ids[1], cat, 2).unwrap();
        layout::auto_layout(&mut g);
        let r = route(&g, &node_boxes(&g), Orientation::TopToBottom);
        let lane = |from: &str| wire(&r, &g, from, "cat").points[1][0];
        assert!((lane("a") - lane("m1")).abs() >= LANE_SPACING - 0.01);
    }

    #[test]
    fn wires_go_around_a_node_the_user_moved_into_their_way() {
        let mut g = blocks::resnet_identity_block_preset();
        layout::auto_layout(&mut g);
        // Drag the second conv onto the skip lane, and the output far to the left.
        let moved = g.find("res2b_2b").unwrap();
        g.node_mut(moved).unwrap().position[0] += 120.0;
        let out = g.find("res2b_out").unwrap();
        g.node_mut(out).unwrap().position = [-700.0, -300.0];
        let boxes = node_boxes(&g);
        let r = route(&g, &boxes, Orientation::TopToBottom);
        for w in &r.wires {
            for id in g.node_ids() {
                if id == w.edge.from || id == w.edge.to {
                    continue;
                }
                let b = boxes[id.index()].unwrap();
                for s in w.points.windows(2) {
                    assert!(!b.hit_by_segment(s[0], s[1], 0.5), "{w:?} hits {id:?}");
                }
            }
        }
    }

    #[test]
    fn segments_clip_against_boxes() {
        let b = Box2::from_min_size([0.0, 0.0], [10.0, 10.0]);
        assert!(b.hit_by_segment([-5.0, 5.0], [15.0, 5.0], 0.5));
        assert!(!b.hit_by_segment([-5.0, 12.0], [15.0, 12.0], 0.5));
        assert!(!b.hit_by_segment([5.0, 10.0], [5.0, 20.0], 0.5));
        assert!(b.hit_by_segment([-5.0, -5.0], [15.0, 15.0], 0.5));
    }
}
