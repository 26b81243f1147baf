//! Automatic layout for designs that arrive without positions (imports, generated presets).

use super::{Graph, NodeId};

/// Horizontal distance between node columns, in scene units.
pub const COLUMN_SPACING: f32 = 220.0;
/// Vertical distance between layers of depth, in scene units.
pub const ROW_SPACING: f32 = 110.0;

/// Places nodes top to bottom by topological depth (longest path from an
/// input), with branches at the same depth side by side, each row ordered by
/// the mean column of its producers so wires cross little. Leaves the graph
/// untouched if it has a cycle.
pub fn auto_layout(graph: &mut Graph) {
    let Ok(order) = graph.topological_order() else {
        return;
    };
    let cap = graph.id_capacity();
    let mut depth = vec![0usize; cap];
    for &id in &order {
        for e in graph.edges().iter().filter(|e| e.to == id) {
            depth[id.index()] = depth[id.index()].max(depth[e.from.index()] + 1);
        }
    }
    let max_depth = order.iter().map(|id| depth[id.index()]).max().unwrap_or(0);
    let mut rows: Vec<Vec<NodeId>> = vec![Vec::new(); max_depth + 1];
    for &id in &order {
        rows[depth[id.index()]].push(id);
    }
    let mut column = vec![0.0f32; cap];
    for row in &mut rows {
        // Order the row by the mean column of each node's producers.
        let key = |id: &NodeId| -> f32 {
            let cols: Vec<f32> = graph
                .edges()
                .iter()
                .filter(|e| e.to == *id)
                .map(|e| column[e.from.index()])
                .collect();
            if cols.is_empty() {
                0.0
            } else {
                cols.iter().sum::<f32>() / cols.len() as f32
            }
        };
        let mut keyed: Vec<(f32, NodeId)> = row.iter().map(|id| (key(id), *id)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *row = keyed.into_iter().map(|(_, id)| id).collect();
        let width = row.len() as f32;
        for (i, id) in row.iter().enumerate() {
            column[id.index()] = i as f32 - (width - 1.0) / 2.0;
        }
    }
    for (d, row) in rows.iter().enumerate() {
        for id in row {
            if let Some(node) = graph.node_mut(*id) {
                node.position = [column[id.index()] * COLUMN_SPACING, d as f32 * ROW_SPACING];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::LayerKind;

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
        let pos = |id| g.node(id).unwrap().position;
        assert_eq!(pos(a), [0.0, 0.0]);
        assert_eq!(pos(b)[1], ROW_SPACING);
        assert_eq!(pos(c)[1], ROW_SPACING);
        assert!(pos(b)[0] < pos(c)[0]);
        assert_eq!(pos(d), [0.0, 2.0 * ROW_SPACING]);
    }
}
