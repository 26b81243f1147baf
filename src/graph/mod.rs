//! The design as data: nodes, edges, edits. No UI, no math.
//!
//! Node ids are stable slots: removing a node leaves a hole, so ids held by
//! the UI (selection, undo history) never point at a different node.

pub mod blocks;
pub mod file;
pub mod group;
pub mod layer;
pub mod layout;
pub mod route;

pub use layer::{Arity, KindInfo, LayerKind, Padding};
pub(crate) use layer::{parameter_free_activation, weightless_kind};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The most inputs one Add or Concat may have: an input number is checked
/// against it before any per-input table is sized by it.
pub const MAX_INPUTS: usize = 4096;

/// A stable handle to a node of one [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One layer of the design.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique within the graph; weights files are keyed by it.
    pub name: String,
    pub kind: LayerKind,
    /// Canvas position (scene coordinates) of the node's top-left corner.
    pub position: [f32; 2],
    /// Frozen layers get no gradient and no update in training.
    pub frozen: bool,
}

/// A wire from `from`'s output to input number `input` of `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    pub input: usize,
}

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GraphError {
    #[error("a layer named `{0}` already exists")]
    DuplicateName(String),
    #[error("layer names cannot be empty")]
    EmptyName,
    #[error("no such node")]
    NoSuchNode,
    #[error("`{node}` takes no inputs")]
    TakesNoInputs { node: String },
    #[error("`{node}` has a single input (input 0); input {input} does not exist")]
    NoSuchInput { node: String, input: usize },
    #[error("input {input} of `{node}` is beyond the {MAX_INPUTS} inputs a layer may have")]
    TooManyInputs { node: String, input: usize },
    #[error("input {input} of `{node}` is already fed by `{existing}`")]
    InputFedTwice {
        node: String,
        input: usize,
        existing: String,
    },
    #[error("connecting `{from}` to `{to}` would make a cycle: {}", cycle.join(" → "))]
    WouldCycle {
        from: String,
        to: String,
        cycle: Vec<String>,
    },
    #[error("a layer cannot feed itself (`{0}`)")]
    SelfLoop(String),
    #[error("the design has a cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
}

/// A network design: layers and the wires between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    /// Which way the stored positions lay the design out (auto-layout keeps it).
    pub orientation: layout::Orientation,
    slots: Vec<Option<Node>>,
    edges: Vec<Edge>,
    /// Named sets of nodes drawn as one when collapsed ([`group`]).
    groups: Vec<group::Group>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Ids of live nodes, in insertion order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| NodeId(i as u32))
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId(i as u32), n)))
    }

    pub fn len(&self) -> usize {
        self.slots.iter().filter(|n| n.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the largest id ever handed out: size per-node tables with it.
    pub fn id_capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.slots.get(id.index()).and_then(|n| n.as_ref())
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.slots.get_mut(id.index()).and_then(|n| n.as_mut())
    }

    /// The node's name, or `?` for a stale id (for messages only).
    pub fn name_of(&self, id: NodeId) -> &str {
        self.node(id).map_or("?", |n| n.name.as_str())
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes().find(|(_, n)| n.name == name).map(|(id, _)| id)
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// A name of the form `{stem}{k}` not yet used, e.g. `conv2d_3`.
    pub fn unique_name(&self, stem: &str) -> String {
        if self.find(stem).is_none() && !stem.ends_with('_') {
            return stem.to_string();
        }
        let stem = stem.trim_end_matches('_');
        (1..)
            .map(|k| format!("{stem}_{k}"))
            .find(|n| self.find(n).is_none())
            .unwrap_or_else(|| stem.to_string())
    }

    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        kind: LayerKind,
        position: [f32; 2],
    ) -> Result<NodeId, GraphError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(GraphError::EmptyName);
        }
        if self.find(&name).is_some() {
            return Err(GraphError::DuplicateName(name));
        }
        self.slots.push(Some(Node {
            name,
            kind,
            position,
            frozen: false,
        }));
        Ok(NodeId(self.slots.len() as u32 - 1))
    }

    /// Appends a node whose name the caller has checked to be unique (the
    /// loader keeps a name index, so loading stays linear in the design size).
    pub(crate) fn push_node_unchecked(&mut self, node: Node) -> NodeId {
        self.slots.push(Some(node));
        NodeId(self.slots.len() as u32 - 1)
    }

    /// Puts a node back into the slot it was removed from (undo of a delete).
    pub fn restore_node(&mut self, id: NodeId, node: Node) -> Result<(), GraphError> {
        if self.find(&node.name).is_some() {
            return Err(GraphError::DuplicateName(node.name));
        }
        if self.slots.len() <= id.index() {
            self.slots.resize(id.index() + 1, None);
        }
        self.slots[id.index()] = Some(node);
        Ok(())
    }

    /// Removes a node and every wire touching it; returns them for undo.
    pub fn remove_node(&mut self, id: NodeId) -> Option<(Node, Vec<Edge>)> {
        let node = self.slots.get_mut(id.index())?.take()?;
        let (gone, kept): (Vec<Edge>, Vec<Edge>) =
            self.edges.iter().partition(|e| e.from == id || e.to == id);
        self.edges = kept;
        self.forget_member(id);
        Some((node, gone))
    }

    pub fn rename(&mut self, id: NodeId, name: &str) -> Result<(), GraphError> {
        if name.trim().is_empty() {
            return Err(GraphError::EmptyName);
        }
        if let Some(other) = self.find(name)
            && other != id
        {
            return Err(GraphError::DuplicateName(name.to_string()));
        }
        let node = self.node_mut(id).ok_or(GraphError::NoSuchNode)?;
        node.name = name.to_string();
        Ok(())
    }

    /// The producer feeding each input of `id`, in input order; `None` for
    /// unconnected inputs. Add/Concat report as many inputs as are wired.
    pub fn inputs_of(&self, id: NodeId) -> Vec<Option<NodeId>> {
        let mut inputs: Vec<Option<NodeId>> = Vec::new();
        for e in self.edges.iter().filter(|e| e.to == id) {
            place_input(&mut inputs, e);
        }
        self.pad_single_input(id, &mut inputs);
        inputs
    }

    /// [`Graph::inputs_of`] for every id at once (indexed by [`NodeId::index`]),
    /// in one pass over the edges.
    pub fn all_inputs(&self) -> Vec<Vec<Option<NodeId>>> {
        let mut all: Vec<Vec<Option<NodeId>>> = vec![Vec::new(); self.id_capacity()];
        for e in &self.edges {
            if let Some(inputs) = all.get_mut(e.to.index()) {
                place_input(inputs, e);
            }
        }
        for (i, inputs) in all.iter_mut().enumerate() {
            self.pad_single_input(NodeId(i as u32), inputs);
        }
        all
    }

    /// A single-input layer with nothing wired still reports its one (empty) input.
    fn pad_single_input(&self, id: NodeId, inputs: &mut Vec<Option<NodeId>>) {
        if let Some(node) = self.node(id)
            && node.kind.arity() == Arity::One
            && inputs.is_empty()
        {
            inputs.push(None);
        }
    }

    /// Nodes fed by `id`'s output.
    pub fn consumers_of(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.edges
            .iter()
            .filter(move |e| e.from == id)
            .map(|e| e.to)
    }

    /// The lowest free input number of `id` (Add/Concat grow by one).
    pub fn next_free_input(&self, id: NodeId) -> Option<usize> {
        let node = self.node(id)?;
        let used: Vec<usize> = self
            .edges
            .iter()
            .filter(|e| e.to == id)
            .map(|e| e.input)
            .collect();
        match node.kind.arity() {
            Arity::None => None,
            Arity::One => (!used.contains(&0)).then_some(0),
            Arity::Many => (0..).find(|i| !used.contains(i)),
        }
    }

    /// Wires `from` into input `input` of `to`, refusing cycles, double feeds
    /// and inputs the layer does not have.
    pub fn connect(&mut self, from: NodeId, to: NodeId, input: usize) -> Result<(), GraphError> {
        let to_node = self.node(to).ok_or(GraphError::NoSuchNode)?;
        let from_node = self.node(from).ok_or(GraphError::NoSuchNode)?;
        if from == to {
            return Err(GraphError::SelfLoop(to_node.name.clone()));
        }
        match to_node.kind.arity() {
            Arity::None => {
                return Err(GraphError::TakesNoInputs {
                    node: to_node.name.clone(),
                });
            }
            Arity::One if input > 0 => {
                return Err(GraphError::NoSuchInput {
                    node: to_node.name.clone(),
                    input,
                });
            }
            Arity::Many if input >= MAX_INPUTS => {
                return Err(GraphError::TooManyInputs {
                    node: to_node.name.clone(),
                    input,
                });
            }
            _ => {}
        }
        if let Some(existing) = self.edges.iter().find(|e| e.to == to && e.input == input) {
            return Err(GraphError::InputFedTwice {
                node: to_node.name.clone(),
                input,
                existing: self.name_of(existing.from).to_string(),
            });
        }
        if let Some(path) = self.path(to, from) {
            let mut cycle: Vec<String> = path.iter().map(|&id| self.name_of(id).into()).collect();
            cycle.push(self.name_of(to).into());
            return Err(GraphError::WouldCycle {
                from: from_node.name.clone(),
                to: to_node.name.clone(),
                cycle,
            });
        }
        self.edges.push(Edge { from, to, input });
        Ok(())
    }

    /// Adds an edge without checks; the loader uses it and then validates the whole graph.
    pub(crate) fn push_edge_unchecked(&mut self, edge: Edge) {
        self.edges.push(edge);
    }

    pub fn disconnect(&mut self, edge: Edge) -> bool {
        let before = self.edges.len();
        self.edges.retain(|e| *e != edge);
        self.edges.len() != before
    }

    /// A path of nodes from `start` to `goal` following wires, if one exists.
    fn path(&self, start: NodeId, goal: NodeId) -> Option<Vec<NodeId>> {
        let mut parent: Vec<Option<NodeId>> = vec![None; self.id_capacity()];
        let mut seen = vec![false; self.id_capacity()];
        let mut stack = vec![start];
        seen[start.index()] = true;
        while let Some(id) = stack.pop() {
            if id == goal {
                let mut path = vec![id];
                let mut at = id;
                while let Some(p) = parent[at.index()] {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                return Some(path);
            }
            for next in self.consumers_of(id) {
                if !seen[next.index()] {
                    seen[next.index()] = true;
                    parent[next.index()] = Some(id);
                    stack.push(next);
                }
            }
        }
        None
    }

    /// Nodes ordered so every producer comes before its consumers (Kahn's
    /// algorithm, ties broken by id so the order is stable). A cycle is
    /// reported with the names of the nodes on it.
    pub fn topological_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let cap = self.id_capacity();
        let mut indegree = vec![0usize; cap];
        let mut out: Vec<Vec<NodeId>> = vec![Vec::new(); cap];
        for e in &self.edges {
            indegree[e.to.index()] += 1;
            out[e.from.index()].push(e.to);
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<NodeId>> = self
            .node_ids()
            .filter(|id| indegree[id.index()] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(std::cmp::Reverse(id)) = ready.pop() {
            order.push(id);
            for &next in &out[id.index()] {
                indegree[next.index()] -= 1;
                if indegree[next.index()] == 0 {
                    ready.push(std::cmp::Reverse(next));
                }
            }
        }
        if order.len() == self.len() {
            return Ok(order);
        }
        // Some node is left with a positive in-degree: walk backwards along
        // unresolved producers until a node repeats; that loop is a cycle.
        let start = self
            .node_ids()
            .find(|id| indegree[id.index()] > 0)
            .ok_or(GraphError::NoSuchNode)?;
        let mut walk = vec![start];
        let mut at = start;
        loop {
            let prev = self
                .edges
                .iter()
                .find(|e| e.to == at && indegree[e.from.index()] > 0)
                .map(|e| e.from)
                .ok_or(GraphError::NoSuchNode)?;
            if let Some(pos) = walk.iter().position(|&n| n == prev) {
                let mut cycle: Vec<String> = walk[pos..]
                    .iter()
                    .rev()
                    .map(|&id| self.name_of(id).to_string())
                    .collect();
                cycle.push(cycle[0].clone());
                return Err(GraphError::Cycle(cycle));
            }
            walk.push(prev);
            at = prev;
        }
    }

    /// Nodes whose output nobody consumes: the design's outputs.
    pub fn outputs(&self) -> Vec<NodeId> {
        let mut consumed = vec![false; self.id_capacity()];
        for e in &self.edges {
            if let Some(c) = consumed.get_mut(e.from.index()) {
                *c = true;
            }
        }
        self.node_ids().filter(|id| !consumed[id.index()]).collect()
    }

    /// Nodes with no inputs (Input layers).
    pub fn input_nodes(&self) -> Vec<NodeId> {
        self.nodes()
            .filter(|(_, n)| n.kind.arity() == Arity::None)
            .map(|(id, _)| id)
            .collect()
    }

    /// A copy with holes squeezed out, in topological order where possible,
    /// as written to files.
    pub fn compacted(&self) -> Graph {
        let order = self
            .topological_order()
            .unwrap_or_else(|_| self.node_ids().collect());
        let mut remap = vec![None; self.id_capacity()];
        let mut g = Graph::new(self.name.clone());
        g.orientation = self.orientation;
        for (new, &old) in order.iter().enumerate() {
            remap[old.index()] = Some(NodeId(new as u32));
            g.slots.push(self.node(old).cloned());
        }
        let mut edges: Vec<Edge> = self
            .edges
            .iter()
            .filter_map(|e| {
                Some(Edge {
                    from: remap[e.from.index()]?,
                    to: remap[e.to.index()]?,
                    input: e.input,
                })
            })
            .collect();
        edges.sort_by_key(|e| (e.to, e.input));
        g.edges = edges;
        g.remap_groups(&self.groups, &remap);
        g
    }
}

/// Puts `e.from` at input `e.input`, growing the list (input numbers are
/// bounded by [`MAX_INPUTS`] when edges are made or loaded).
fn place_input(inputs: &mut Vec<Option<NodeId>>, e: &Edge) {
    let slot = e.input.min(MAX_INPUTS);
    if inputs.len() <= slot {
        inputs.resize(slot + 1, None);
    }
    inputs[slot] = Some(e.from);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relu(g: &mut Graph, name: &str) -> NodeId {
        g.add_node(name, LayerKind::Relu, [0.0, 0.0]).unwrap()
    }

    #[test]
    fn connect_refuses_cycles_naming_the_path() {
        let mut g = Graph::new("t");
        let a = relu(&mut g, "a");
        let b = relu(&mut g, "b");
        let c = relu(&mut g, "c");
        g.connect(a, b, 0).unwrap();
        g.connect(b, c, 0).unwrap();
        let err = g.connect(c, a, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "connecting `c` to `a` would make a cycle: a → b → c → a"
        );
        assert_eq!(g.edges().len(), 2);
    }

    #[test]
    fn connect_refuses_double_feed_and_missing_inputs() {
        let mut g = Graph::new("t");
        let a = relu(&mut g, "a");
        let b = relu(&mut g, "b");
        let c = relu(&mut g, "c");
        g.connect(a, c, 0).unwrap();
        assert!(matches!(
            g.connect(b, c, 0),
            Err(GraphError::InputFedTwice { .. })
        ));
        assert!(matches!(
            g.connect(b, c, 1),
            Err(GraphError::NoSuchInput { .. })
        ));
        let add = g.add_node("add", LayerKind::Add, [0.0, 0.0]).unwrap();
        g.connect(a, add, 0).unwrap();
        assert_eq!(g.next_free_input(add), Some(1));
        g.connect(b, add, 1).unwrap();
        g.connect(c, add, 2).unwrap();
        assert_eq!(g.inputs_of(add), vec![Some(a), Some(b), Some(c)]);
    }

    #[test]
    fn topological_order_reports_cycle_members() {
        let mut g = Graph::new("t");
        let a = relu(&mut g, "a");
        let b = relu(&mut g, "b");
        let c = relu(&mut g, "c");
        let d = relu(&mut g, "d");
        g.push_edge_unchecked(Edge {
            from: a,
            to: b,
            input: 0,
        });
        g.push_edge_unchecked(Edge {
            from: b,
            to: c,
            input: 0,
        });
        g.push_edge_unchecked(Edge {
            from: c,
            to: b,
            input: 0,
        });
        g.push_edge_unchecked(Edge {
            from: c,
            to: d,
            input: 0,
        });
        match g.topological_order() {
            Err(GraphError::Cycle(names)) => {
                assert_eq!(names.len(), 3);
                assert!(names.contains(&"b".to_string()) && names.contains(&"c".to_string()));
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn removed_ids_stay_stable_and_restore() {
        let mut g = Graph::new("t");
        let a = relu(&mut g, "a");
        let b = relu(&mut g, "b");
        let c = relu(&mut g, "c");
        g.connect(a, b, 0).unwrap();
        g.connect(b, c, 0).unwrap();
        let (node, edges) = g.remove_node(b).unwrap();
        assert_eq!(edges.len(), 2);
        assert_eq!(g.node(c).unwrap().name, "c");
        assert!(g.node(b).is_none());
        g.restore_node(b, node).unwrap();
        for e in edges {
            g.connect(e.from, e.to, e.input).unwrap();
        }
        assert_eq!(g.topological_order().unwrap(), vec![a, b, c]);
    }

    #[test]
    fn input_numbers_are_bounded_before_anything_is_sized_by_them() {
        let mut g = Graph::new("t");
        let a = relu(&mut g, "a");
        let add = g.add_node("add", LayerKind::Add, [0.0, 0.0]).unwrap();
        assert!(matches!(
            g.connect(a, add, 500_000_000),
            Err(GraphError::TooManyInputs { .. })
        ));
        g.connect(a, add, 1).unwrap();
        assert_eq!(g.inputs_of(add), vec![None, Some(a)]);
        assert_eq!(g.all_inputs()[add.index()], g.inputs_of(add));
        assert_eq!(g.all_inputs()[a.index()], vec![None]);
    }

    #[test]
    fn unique_names_count_up() {
        let mut g = Graph::new("t");
        relu(&mut g, "relu");
        assert_eq!(g.unique_name("relu"), "relu_1");
        relu(&mut g, "relu_1");
        assert_eq!(g.unique_name("relu"), "relu_2");
        assert_eq!(g.unique_name("conv"), "conv");
    }
}
