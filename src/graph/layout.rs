//! Layered (Sugiyama-style) automatic layout: the picture of a CNN.
//!
//! Four steps, each a function below:
//! 1. [`assign_layers`]: every node goes to the layer of its longest path
//!    from an input, so a chain reads straight down the page.
//! 2. [`Net::build`]: wires spanning several layers are broken into routing
//!    points (dummies), one chain per *source*, so wires fanning out of one
//!    output share a lane like a bus (DenseNet's concatenations).
//! 3. [`Net::reduce_crossings`]: barycenter sweeps down and up, keeping the
//!    order with the fewest crossings.
//! 4. [`Net::assign_across`]: the main path (the longest one) is a straight
//!    column; every other node and routing point is placed beside it, as
//!    close to its producers as the spacing allows, so each skip path gets
//!    its own lane next to the main column and Inception branches stand
//!    side by side under their source.
//!
//! The wires themselves are routed by [`super::route`] from the node boxes,
//! so user-placed nodes get honest wires too.

use super::{Graph, NodeId, group};
use serde::{Deserialize, Serialize};

/// Size of a node box in scene units (the canvas card and the diagram box).
pub const NODE_SIZE: [f32; 2] = [188.0, 80.0];
/// Gap between neighbouring nodes of one layer.
pub const NODE_GAP: f32 = 32.0;
/// Distance from a routing lane to the edge of the nearest box.
pub const LANE_MARGIN: f32 = 18.0;
/// Distance between two lanes of wires from different outputs.
pub const LANE_SPACING: f32 = 14.0;

/// Which way data flows in the picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Orientation {
    /// Inputs at the top, outputs at the bottom (the canvas default).
    #[default]
    TopToBottom,
    /// Inputs on the left (VGG as a row, like the course slides).
    LeftToRight,
}

impl Orientation {
    /// The design file's word for it.
    pub fn tag(self) -> &'static str {
        match self {
            Orientation::TopToBottom => "tb",
            Orientation::LeftToRight => "lr",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Orientation> {
        match tag {
            "tb" => Some(Orientation::TopToBottom),
            "lr" => Some(Orientation::LeftToRight),
            _ => None,
        }
    }

    /// Gap between layers along the flow: room for a shape label.
    pub fn layer_gap(self) -> f32 {
        match self {
            Orientation::TopToBottom => 44.0,
            Orientation::LeftToRight => 96.0,
        }
    }

    /// A scene point in flow coordinates `[along, across]`, and back (the
    /// map is its own inverse).
    pub fn flow(self, p: [f32; 2]) -> [f32; 2] {
        match self {
            Orientation::TopToBottom => [p[1], p[0]],
            Orientation::LeftToRight => p,
        }
    }

    /// Node size in flow coordinates `[along, across]`.
    pub fn node_extent(self) -> [f32; 2] {
        self.flow(NODE_SIZE)
    }
}

/// Lays out in the design's orientation (see [`auto_layout_with`]).
pub fn auto_layout(graph: &mut Graph) {
    auto_layout_with(graph, graph.orientation);
}

/// Places every node of `graph` by the layered layout, a collapsed group
/// as one box (its position is the group's). Leaves the graph untouched if
/// it has a cycle.
pub fn auto_layout_with(graph: &mut Graph, orientation: Orientation) {
    graph.orientation = orientation;
    if graph.groups().iter().all(|g| !g.collapsed) {
        layout_nodes(graph, orientation);
        return;
    }
    let mut view = group::view(graph);
    layout_nodes(&mut view.graph, orientation);
    for (id, node) in view.graph.nodes() {
        match view.group(id) {
            Some(g) => {
                graph.set_group_position(g, node.position);
            }
            None => {
                if let Some(n) = graph.node_mut(id) {
                    n.position = node.position;
                }
            }
        }
    }
}

/// Collapses or expands group `g` where it stands, leaving every other
/// node where the user put it except to close or open room along the flow:
/// collapsed, its card takes the top-left of what it drew and what comes
/// after moves up by the space it no longer needs; expanded, its layers
/// are drawn from where the card is (they moved with it) and what comes
/// after moves down, what stands beside it aside. Collapsing and expanding
/// again gives back the same picture. False if there is no such group.
pub fn set_collapsed_in_place(graph: &mut Graph, g: usize, collapsed: bool) -> bool {
    let Some(group) = graph.groups().get(g) else {
        return false;
    };
    if group.collapsed == collapsed || graph.nesting().hidden[g] {
        graph.set_collapsed(g, collapsed);
        return true;
    }
    let o = graph.orientation;
    let card = o.flow(group.position);
    if collapsed {
        let Some(content) = drawn_content(graph, g) else {
            graph.set_collapsed(g, true);
            return true;
        };
        graph.set_group_position(g, o.flow(content.min));
        graph.set_collapsed(g, true);
        let shrink = content.max[0] - content.min[0] - o.node_extent()[0];
        shift_followers(graph, g, content.max[0], -shrink);
    } else {
        graph.set_collapsed(g, false);
        let Some(content) = drawn_content(graph, g) else {
            return true;
        };
        let d = o.flow([card[0] - content.min[0], card[1] - content.min[1]]);
        let members: std::collections::BTreeSet<NodeId> =
            graph.groups()[g].members.iter().copied().collect();
        graph.move_nodes(&members, d);
        let placed = FlowBox {
            min: card,
            max: [
                card[0] + content.max[0] - content.min[0],
                card[1] + content.max[1] - content.min[1],
            ],
        };
        let growth = placed.max[0] - placed.min[0] - o.node_extent()[0];
        shift_followers(graph, g, card[0] + o.node_extent()[0], growth);
        move_aside(graph, g, &placed);
    }
    true
}

/// The scene rect `[min, max]` of what group `g` draws: its card when
/// it is drawn collapsed, else its layers and the cards inside it; `None`
/// if it is inside a collapsed group or draws nothing.
pub fn drawn_rect(graph: &Graph, g: usize) -> Option<[[f32; 2]; 2]> {
    let nesting = graph.nesting();
    if *nesting.hidden.get(g)? {
        return None;
    }
    let o = graph.orientation;
    let b = drawn_content(graph, g)?;
    let (a, c) = (o.flow(b.min), o.flow(b.max));
    Some([a, c])
}

/// A box in flow coordinates `[along, across]`.
struct FlowBox {
    min: [f32; 2],
    max: [f32; 2],
}

/// The boxes of the design as drawn, each with the design nodes it stands
/// for (a node, or a collapsed group's members) and whether it is part of
/// group `g`.
fn drawn_boxes(graph: &Graph, g: usize) -> Vec<(FlowBox, Vec<NodeId>, bool)> {
    let o = graph.orientation;
    let view = group::view(graph);
    let nesting = graph.nesting();
    let ext = o.node_extent();
    view.graph
        .nodes()
        .map(|(id, n)| {
            let min = o.flow(n.position);
            let b = FlowBox {
                min,
                max: [min[0] + ext[0], min[1] + ext[1]],
            };
            match view.group(id) {
                Some(h) => (b, graph.groups()[h].members.clone(), nesting.within(h, g)),
                None => (b, vec![id], nesting.groups_of(id).any(|x| x == g)),
            }
        })
        .collect()
}

/// The flow-space box around what group `g` draws (its layers, or the
/// cards of collapsed groups inside it).
fn drawn_content(graph: &Graph, g: usize) -> Option<FlowBox> {
    drawn_boxes(graph, g)
        .into_iter()
        .filter(|(_, _, inside)| *inside)
        .map(|(b, _, _)| b)
        .reduce(|a, b| FlowBox {
            min: [a.min[0].min(b.min[0]), a.min[1].min(b.min[1])],
            max: [a.max[0].max(b.max[0]), a.max[1].max(b.max[1])],
        })
}

/// Moves every drawn box outside group `g` that starts at or after `from`
/// (along the flow) by `by` along it.
fn shift_followers(graph: &mut Graph, g: usize, from: f32, by: f32) {
    if by == 0.0 {
        return;
    }
    let o = graph.orientation;
    let ids: std::collections::BTreeSet<NodeId> = drawn_boxes(graph, g)
        .into_iter()
        .filter(|(b, _, inside)| !inside && b.min[0] >= from - 1.0)
        .flat_map(|(_, members, _)| members)
        .collect();
    graph.move_nodes(&ids, o.flow([by, 0.0]));
}

/// Moves every drawn box outside group `g` that overlaps `placed` to the
/// far side of it, across the flow.
fn move_aside(graph: &mut Graph, g: usize, placed: &FlowBox) {
    let o = graph.orientation;
    for (b, members, inside) in drawn_boxes(graph, g) {
        let overlaps = b.min[0] < placed.max[0]
            && placed.min[0] < b.max[0]
            && b.min[1] < placed.max[1]
            && placed.min[1] < b.max[1];
        if inside || !overlaps {
            continue;
        }
        let by = placed.max[1] + NODE_GAP - b.min[1];
        graph.move_nodes(&members.into_iter().collect(), o.flow([0.0, by]));
    }
}

fn layout_nodes(graph: &mut Graph, orientation: Orientation) {
    let Ok(order) = graph.topological_order() else {
        return;
    };
    let layer = assign_layers(graph, &order);
    let mut net = Net::build(graph, &order, &layer);
    net.reduce_crossings();
    let across = net.assign_across(orientation);
    net.write_positions(graph, &across, orientation);
}

/// The top-left position nearest `desired` at which a node box overlaps no
/// other node, searched on a half-grid of the layout's spacing, ring by ring.
pub fn free_position(graph: &Graph, desired: [f32; 2]) -> [f32; 2] {
    const RINGS: i32 = 40;
    let taken: Vec<[f32; 2]> = group::view(graph)
        .graph
        .nodes()
        .map(|(_, n)| n.position)
        .collect();
    let free = |p: [f32; 2]| {
        taken.iter().all(|q| {
            (p[0] - q[0]).abs() >= NODE_SIZE[0] + 8.0 || (p[1] - q[1]).abs() >= NODE_SIZE[1] + 8.0
        })
    };
    if free(desired) {
        return desired;
    }
    let step = [
        (NODE_SIZE[0] + NODE_GAP) / 2.0,
        (NODE_SIZE[1] + graph.orientation.layer_gap()) / 2.0,
    ];
    for ring in 1..=RINGS {
        let mut spots: Vec<[f32; 2]> = Vec::new();
        for dx in -ring..=ring {
            for dy in -ring..=ring {
                if dx.abs().max(dy.abs()) == ring {
                    spots.push([
                        desired[0] + dx as f32 * step[0],
                        desired[1] + dy as f32 * step[1],
                    ]);
                }
            }
        }
        let dist = |p: &[f32; 2]| (p[0] - desired[0]).hypot(p[1] - desired[1]);
        spots.sort_by(|a, b| dist(a).total_cmp(&dist(b)));
        if let Some(p) = spots.into_iter().find(|p| free(*p)) {
            return p;
        }
    }
    desired
}

/// Layer of each node (indexed by id): the length of its longest path from an input.
fn assign_layers(graph: &Graph, order: &[NodeId]) -> Vec<usize> {
    let mut layer = vec![0usize; graph.id_capacity()];
    let mut ups: Vec<Vec<NodeId>> = vec![Vec::new(); graph.id_capacity()];
    for e in graph.edges() {
        ups[e.to.index()].push(e.from);
    }
    for &id in order {
        layer[id.index()] = ups[id.index()]
            .iter()
            .map(|p| layer[p.index()] + 1)
            .max()
            .unwrap_or(0);
    }
    layer
}

/// A node or a routing point in one layer.
struct Item {
    node: Option<NodeId>,
    layer: usize,
    /// Items in the layer above wired into this one.
    ups: Vec<usize>,
    /// Items in the layer below fed by this one.
    downs: Vec<usize>,
    /// On the longest path: drawn as the straight main column.
    main: bool,
}

/// The layered graph: nodes plus routing points, every wire between adjacent layers.
struct Net {
    items: Vec<Item>,
    rows: Vec<Vec<usize>>,
}

impl Net {
    fn build(graph: &Graph, order: &[NodeId], layer: &[usize]) -> Net {
        let cap = graph.id_capacity();
        let mut items: Vec<Item> = Vec::with_capacity(order.len() * 2);
        let mut item_of = vec![usize::MAX; cap];
        for &id in order {
            item_of[id.index()] = items.len();
            items.push(Item {
                node: Some(id),
                layer: layer[id.index()],
                ups: Vec::new(),
                downs: Vec::new(),
                main: false,
            });
        }
        let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); cap];
        for e in graph.edges() {
            if !consumers[e.from.index()].contains(&e.to) {
                consumers[e.from.index()].push(e.to);
            }
        }
        let link = |items: &mut Vec<Item>, up: usize, down: usize| {
            if !items[up].downs.contains(&down) {
                items[up].downs.push(down);
                items[down].ups.push(up);
            }
        };
        for &src in order {
            let targets = &consumers[src.index()];
            let from_layer = layer[src.index()];
            let far = targets.iter().map(|t| layer[t.index()]).max().unwrap_or(0);
            // One chain of routing points per source: its fan-out shares the lane.
            let mut chain = Vec::new();
            let mut prev = item_of[src.index()];
            for l in from_layer + 1..far {
                let d = items.len();
                items.push(Item {
                    node: None,
                    layer: l,
                    ups: Vec::new(),
                    downs: Vec::new(),
                    main: false,
                });
                link(&mut items, prev, d);
                chain.push(d);
                prev = d;
            }
            for t in targets {
                let above = match layer[t.index()] - from_layer {
                    1 => item_of[src.index()],
                    span => chain[span - 2],
                };
                link(&mut items, above, item_of[t.index()]);
            }
        }
        mark_main_path(graph, order, layer, &item_of, &mut items);
        let depth = items.iter().map(|i| i.layer).max().map_or(0, |d| d + 1);
        let mut rows = vec![Vec::new(); depth];
        for (i, item) in items.iter().enumerate() {
            rows[item.layer].push(i);
        }
        Net { items, rows }
    }

    /// Barycenter sweeps down and up; keeps the order with the fewest crossings.
    fn reduce_crossings(&mut self) {
        const SWEEPS: usize = 6;
        let mut pos = vec![0.0f32; self.items.len()];
        self.update_positions(&mut pos);
        let mut best = self.rows.clone();
        let mut best_crossings = self.crossings(&pos);
        for _ in 0..SWEEPS {
            if best_crossings == 0 {
                break;
            }
            for l in 1..self.rows.len() {
                self.sort_row_by(l, &mut pos, true);
            }
            for l in (0..self.rows.len().saturating_sub(1)).rev() {
                self.sort_row_by(l, &mut pos, false);
            }
            let c = self.crossings(&pos);
            if c < best_crossings {
                best_crossings = c;
                best = self.rows.clone();
            }
        }
        self.rows = best;
    }

    fn update_positions(&self, pos: &mut [f32]) {
        for row in &self.rows {
            for (i, &item) in row.iter().enumerate() {
                pos[item] = i as f32;
            }
        }
    }

    /// Orders row `l` by the mean position of each item's neighbours above
    /// (`from_above`) or below; items without such neighbours keep their place.
    fn sort_row_by(&mut self, l: usize, pos: &mut [f32], from_above: bool) {
        let items = &self.items;
        let mut keyed: Vec<(f32, usize)> = self.rows[l]
            .iter()
            .map(|&i| {
                let n = if from_above {
                    &items[i].ups
                } else {
                    &items[i].downs
                };
                let key = if n.is_empty() {
                    pos[i]
                } else {
                    n.iter().map(|&j| pos[j]).sum::<f32>() / n.len() as f32
                };
                (key, i)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (k, (_, i)) in keyed.iter().enumerate() {
            self.rows[l][k] = *i;
            pos[*i] = k as f32;
        }
    }

    /// Wire crossings between all adjacent layers (inversions, counted with a Fenwick tree).
    fn crossings(&self, pos: &[f32]) -> usize {
        let mut total = 0;
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut tree: Vec<usize> = Vec::new();
        for l in 1..self.rows.len() {
            pairs.clear();
            for &i in &self.rows[l] {
                for &u in &self.items[i].ups {
                    pairs.push((pos[u] as usize, pos[i] as usize));
                }
            }
            pairs.sort_unstable();
            let width = self.rows[l].len() + 1;
            tree.clear();
            tree.resize(width + 1, 0);
            for (seen, &(_, down)) in pairs.iter().enumerate() {
                // Earlier pairs ending strictly right of `down` cross this one.
                let mut at_most = 0;
                let mut k = down + 1;
                while k > 0 {
                    at_most += tree[k];
                    k &= k - 1;
                }
                total += seen - at_most;
                let mut k = down + 1;
                while k <= width {
                    tree[k] += 1;
                    k += k & k.wrapping_neg();
                }
            }
        }
        total
    }

    /// Across-flow centre of every item: the main column at 0, the rest
    /// packed beside it towards their producers.
    fn assign_across(&self, orientation: Orientation) -> Vec<f32> {
        let node_across = orientation.node_extent()[1];
        let width = |i: usize| {
            if self.items[i].node.is_some() {
                node_across
            } else {
                0.0
            }
        };
        let separation = |a: usize, b: usize| match (self.items[a].node, self.items[b].node) {
            (Some(_), Some(_)) => node_across + NODE_GAP,
            (None, None) => LANE_SPACING,
            _ => (width(a) + width(b)) / 2.0 + LANE_MARGIN,
        };
        let mut v = vec![0.0f32; self.items.len()];
        for row in &self.rows {
            let preferred = |v: &[f32], i: usize| {
                let ups = &self.items[i].ups;
                if ups.is_empty() {
                    0.0
                } else {
                    ups.iter().map(|&u| v[u]).sum::<f32>() / ups.len() as f32
                }
            };
            let anchor = row.iter().position(|&i| self.items[i].main).unwrap_or(0);
            v[row[anchor]] = if self.items[row[anchor]].main {
                0.0
            } else {
                preferred(&v, row[anchor])
            };
            for k in anchor + 1..row.len() {
                let (a, b) = (row[k - 1], row[k]);
                v[b] = (v[a] + separation(a, b)).max(preferred(&v, b));
            }
            for k in (0..anchor).rev() {
                let (a, b) = (row[k], row[k + 1]);
                v[a] = (v[b] - separation(a, b)).min(preferred(&v, a));
            }
        }
        v
    }

    fn write_positions(&self, graph: &mut Graph, across: &[f32], orientation: Orientation) {
        let [along_size, across_size] = orientation.node_extent();
        let step = along_size + orientation.layer_gap();
        for (i, item) in self.items.iter().enumerate() {
            let Some(id) = item.node else { continue };
            let flow = [item.layer as f32 * step, across[i] - across_size / 2.0];
            if let Some(node) = graph.node_mut(id) {
                node.position = orientation.flow(flow);
            }
        }
    }
}

/// Marks the longest path (ending at the deepest node, following input 0
/// first where inputs tie) as the main column.
fn mark_main_path(
    graph: &Graph,
    order: &[NodeId],
    layer: &[usize],
    item_of: &[usize],
    items: &mut [Item],
) {
    let Some(&deepest) = order
        .iter()
        .rev()
        .max_by_key(|id| (layer[id.index()], std::cmp::Reverse(id.index())))
    else {
        return;
    };
    let mut at = deepest;
    loop {
        items[item_of[at.index()]].main = true;
        let want = match layer[at.index()].checked_sub(1) {
            Some(w) => w,
            None => break,
        };
        let inputs = graph.inputs_of(at);
        match inputs.iter().flatten().find(|p| layer[p.index()] == want) {
            Some(&p) => at = p,
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{LayerKind, blocks};

    fn center(g: &Graph, name: &str) -> [f32; 2] {
        let p = g.node(g.find(name).unwrap()).unwrap().position;
        [p[0] + NODE_SIZE[0] / 2.0, p[1] + NODE_SIZE[1] / 2.0]
    }

    #[test]
    fn branches_sit_side_by_side_below_their_source() {
        let mut g = Graph::new("t");
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let c = g.add_node("c", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let d = g.add_node("d", LayerKind::Add, [0.0, 0.0]).unwrap();
        g.connect(a, b, 0).unwrap();
        g.connect(a, c, 0).unwrap();
        g.connect(b, d, 0).unwrap();
        g.connect(c, d, 1).unwrap();
        auto_layout(&mut g);
        let (pa, pb, pc, pd) = (
            center(&g, "a"),
            center(&g, "b"),
            center(&g, "c"),
            center(&g, "d"),
        );
        assert_eq!(pb[1], pc[1]);
        assert!(pb[1] > pa[1] && pd[1] > pb[1]);
        assert!((pb[0] - pc[0]).abs() >= NODE_SIZE[0] + NODE_GAP);
        // The main path (a, b, d) is one straight column.
        assert_eq!(pa[0], pb[0]);
        assert_eq!(pb[0], pd[0]);
    }

    #[test]
    fn residual_main_path_is_straight_and_the_skip_lane_is_beside_it() {
        let mut g = blocks::resnet_identity_block_preset();
        auto_layout(&mut g);
        let main = [
            "input",
            "res2b_2a",
            "res2b_2b",
            "res2b_2c",
            "res2b_add",
            "res2b_out",
        ];
        let x = center(&g, main[0])[0];
        for name in main {
            assert_eq!(center(&g, name)[0], x, "{name} left the main column");
        }
    }

    #[test]
    fn left_to_right_swaps_the_axes() {
        let mut g = blocks::vgg_block();
        auto_layout_with(&mut g, Orientation::LeftToRight);
        let a = center(&g, "input");
        let b = center(&g, "block1_conv1");
        assert_eq!(a[1], b[1]);
        assert!(b[0] > a[0] + NODE_SIZE[0]);
    }

    #[test]
    fn crossings_are_counted() {
        // a b over c d, wired a→d and b→c: one crossing.
        let mut net = Net {
            items: Vec::new(),
            rows: vec![vec![0, 1], vec![2, 3]],
        };
        for (layer, ups) in [(0, vec![]), (0, vec![]), (1, vec![1]), (1, vec![0])] {
            net.items.push(Item {
                node: None,
                layer,
                ups,
                downs: Vec::new(),
                main: false,
            });
        }
        let mut pos = vec![0.0; 4];
        net.update_positions(&mut pos);
        assert_eq!(net.crossings(&pos), 1);
        net.reduce_crossings();
        net.update_positions(&mut pos);
        assert_eq!(net.crossings(&pos), 0);
    }
}
