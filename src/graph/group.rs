//! Groups: named sets of nodes (a residual block, an Inception module, a
//! VGG stage) that the canvas and the diagram can draw collapsed as one node.
//!
//! A group's members are nodes of the design. Groups nest: two groups are
//! disjoint, or one holds every member of the other and more (a ResNet
//! stage holds its blocks), never a partial overlap. A group is
//! *contiguous*: no path leaves it and comes back, so collapsing it never
//! makes a cycle. [`Nesting`] says which group holds which. [`View`] is the
//! design as drawn, with every outermost collapsed group replaced by one
//! node whose wires go to its boundary; layout and routing work on it.

use super::{Edge, Graph, LayerKind, Node, NodeId};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// A named set of nodes drawn as one when collapsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    /// Sorted, no repeats.
    pub members: Vec<NodeId>,
    pub collapsed: bool,
    /// Top-left of the collapsed node (scene coordinates).
    pub position: [f32; 2],
}

/// Why a group was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupError {
    #[error("group names cannot be empty")]
    EmptyName,
    #[error("two groups are named `{0}`")]
    DuplicateName(String),
    #[error("group `{0}` has the name of a layer; group names must differ from layer names")]
    NameOfALayer(String),
    #[error("group `{0}` has no members")]
    Empty(String),
    #[error("group `{group}` names `{member}`, which is not a node of this design")]
    NoSuchNode { group: String, member: String },
    #[error(
        "groups `{first}` and `{second}` overlap at `{node}` but neither holds the other; a group must lie wholly inside another or apart from it"
    )]
    Overlap {
        node: String,
        first: String,
        second: String,
    },
    #[error("groups `{first}` and `{second}` have the same members")]
    SameMembers { first: String, second: String },
    #[error(
        "group `{group}` is not contiguous: a path leaves it and comes back through `{outside}`, so it cannot be drawn as one node"
    )]
    NotContiguous { group: String, outside: String },
}

/// A group taken apart because a path now leaves it and comes back (a
/// wire drawn after grouping): its layers stay, only the grouping goes, so
/// the design still opens and nothing the user drew is lost.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "group `{group}` was ungrouped (its layers are kept): a path leaves it and comes back through `{outside}`, so it could not be drawn as one node"
)]
pub struct Ungrouped {
    pub group: String,
    pub outside: String,
}

impl Graph {
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The innermost group of each node (indexed by id), as an index into [`Graph::groups`].
    pub fn group_table(&self) -> Vec<Option<usize>> {
        self.nesting().innermost
    }

    /// The index of the innermost group containing `id`.
    pub fn group_of(&self, id: NodeId) -> Option<usize> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.members.binary_search(&id).is_ok())
            .min_by_key(|(_, g)| g.members.len())
            .map(|(i, _)| i)
    }

    /// Which group holds which, and each node's innermost group.
    pub fn nesting(&self) -> Nesting {
        Nesting::of(self)
    }

    /// Moves the nodes `ids` by `delta`, and with them the collapsed box of
    /// every group whose members all move (a dragged collapsed group carries
    /// its layers, so expanding shows them where the card went).
    pub fn move_nodes(&mut self, ids: &std::collections::BTreeSet<NodeId>, delta: [f32; 2]) {
        for &id in ids {
            if let Some(n) = self.node_mut(id) {
                n.position[0] += delta[0];
                n.position[1] += delta[1];
            }
        }
        for g in &mut self.groups {
            if g.members.iter().all(|m| ids.contains(m)) {
                g.position[0] += delta[0];
                g.position[1] += delta[1];
            }
        }
    }

    pub fn find_group(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    /// `stem`, or `stem_2`, `stem_3`, … : a name no group or layer has.
    pub fn unique_group_name(&self, stem: &str) -> String {
        let free = |n: &str| self.find_group(n).is_none() && self.find(n).is_none();
        if free(stem) {
            return stem.to_string();
        }
        (2..)
            .map(|k| format!("{stem}_{k}"))
            .find(|n| free(n))
            .unwrap_or_else(|| stem.to_string())
    }

    /// Adds a group of `members` (expanded), refusing anything
    /// [`Graph::check_groups`] would; on error the graph is unchanged.
    pub fn add_group(
        &mut self,
        name: impl Into<String>,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Result<usize, GroupError> {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort();
        members.dedup();
        let name = name.into();
        if let Some(&missing) = members.iter().find(|&&m| self.node(m).is_none()) {
            return Err(GroupError::NoSuchNode {
                group: name,
                member: format!("#{}", missing.0),
            });
        }
        self.groups.push(Group {
            name,
            members,
            collapsed: false,
            position: [0.0, 0.0],
        });
        match self.check_groups() {
            Ok(()) => Ok(self.groups.len() - 1),
            Err(e) => {
                self.groups.pop();
                Err(e)
            }
        }
    }

    /// Appends a group the caller checks afterwards with [`Graph::check_groups`].
    pub(crate) fn push_group_unchecked(&mut self, group: Group) {
        self.groups.push(group);
    }

    /// Removes the group (its nodes stay); returns it for undo.
    pub fn remove_group(&mut self, index: usize) -> Option<Group> {
        (index < self.groups.len()).then(|| self.groups.remove(index))
    }

    /// Collapses or expands group `index`; false if there is no such group.
    pub fn set_collapsed(&mut self, index: usize, collapsed: bool) -> bool {
        match self.groups.get_mut(index) {
            Some(g) => {
                g.collapsed = collapsed;
                true
            }
            None => false,
        }
    }

    /// Moves the collapsed box of group `index`.
    pub fn set_group_position(&mut self, index: usize, position: [f32; 2]) {
        if let Some(g) = self.groups.get_mut(index) {
            g.position = position;
        }
    }

    /// Drops `id` from its groups, and a group once it is empty or has
    /// the same members as one before it (a block whose stage lost
    /// everything else).
    pub(crate) fn forget_member(&mut self, id: NodeId) {
        for g in &mut self.groups {
            g.members.retain(|&m| m != id);
        }
        self.drop_empty_and_repeated_groups();
    }

    fn drop_empty_and_repeated_groups(&mut self) {
        let mut seen: HashSet<Vec<NodeId>> = HashSet::with_capacity(self.groups.len());
        self.groups
            .retain(|g| !g.members.is_empty() && seen.insert(g.members.clone()));
    }

    /// Maps member ids through `remap` (old id → new id), dropping members that are gone.
    pub(crate) fn remap_groups(&mut self, from: &[Group], remap: &[Option<NodeId>]) {
        self.groups = from
            .iter()
            .filter_map(|g| {
                let mut members: Vec<NodeId> = g
                    .members
                    .iter()
                    .filter_map(|m| remap.get(m.index()).copied().flatten())
                    .collect();
                members.sort();
                (!members.is_empty()).then(|| Group {
                    members,
                    ..g.clone()
                })
            })
            .collect();
        self.drop_empty_and_repeated_groups();
    }

    /// Checks every group: a non-empty unique name that no layer has,
    /// live members, nested or apart (never a partial overlap, never the
    /// same members twice), each group contiguous.
    pub fn check_groups(&self) -> Result<(), GroupError> {
        let mut names: HashSet<&str> = HashSet::with_capacity(self.groups.len());
        for g in &self.groups {
            if g.name.trim().is_empty() {
                return Err(GroupError::EmptyName);
            }
            if !names.insert(&g.name) {
                return Err(GroupError::DuplicateName(g.name.clone()));
            }
            if self.find(&g.name).is_some() {
                return Err(GroupError::NameOfALayer(g.name.clone()));
            }
            if g.members.is_empty() {
                return Err(GroupError::Empty(g.name.clone()));
            }
            if let Some(&m) = g.members.iter().find(|&&m| self.node(m).is_none()) {
                return Err(GroupError::NoSuchNode {
                    group: g.name.clone(),
                    member: format!("#{}", m.0),
                });
            }
        }
        Nesting::check(self)?;
        for g in &self.groups {
            if let Some(outside) = self.reentry(g) {
                return Err(GroupError::NotContiguous {
                    group: g.name.clone(),
                    outside: self.name_of(outside).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Removes every group that is no longer contiguous and says which,
    /// in group order. Removing a group never breaks another one's
    /// contiguity, so one pass suffices.
    pub fn ungroup_discontiguous(&mut self) -> Vec<Ungrouped> {
        let mut ungrouped = Vec::new();
        let mut index = 0;
        while index < self.groups.len() {
            match self.reentry(&self.groups[index]) {
                Some(outside) => {
                    ungrouped.push(Ungrouped {
                        group: self.groups[index].name.clone(),
                        outside: self.name_of(outside).to_string(),
                    });
                    self.groups.remove(index);
                }
                None => index += 1,
            }
        }
        ungrouped
    }

    /// A node outside `group` on a path that leaves the group and comes back.
    fn reentry(&self, group: &Group) -> Option<NodeId> {
        let inside = |id: NodeId| group.members.binary_search(&id).is_ok();
        let mut out: Vec<Vec<NodeId>> = vec![Vec::new(); self.id_capacity()];
        for e in &self.edges {
            out[e.from.index()].push(e.to);
        }
        let mut seen = vec![false; self.id_capacity()];
        let mut stack: Vec<NodeId> = Vec::new();
        for &m in &group.members {
            for &next in &out[m.index()] {
                if !inside(next) && !seen[next.index()] {
                    seen[next.index()] = true;
                    stack.push(next);
                }
            }
        }
        while let Some(at) = stack.pop() {
            for &next in &out[at.index()] {
                if inside(next) {
                    return Some(at);
                }
                if !seen[next.index()] {
                    seen[next.index()] = true;
                    stack.push(next);
                }
            }
        }
        None
    }

    /// The member whose output leaves the group (the last in topological
    /// order if several do, or if none does).
    pub fn group_output(&self, group: &Group) -> Option<NodeId> {
        let order = self
            .topological_order()
            .unwrap_or_else(|_| self.node_ids().collect());
        group_output_in(self, group, &order)
    }
}

/// How the groups of a design nest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Nesting {
    /// The smallest group holding each group (by group index).
    pub parent: Vec<Option<usize>>,
    /// The smallest group holding each node (by node id).
    pub innermost: Vec<Option<usize>>,
    /// Whether each group is drawn as one node: collapsed, inside no
    /// collapsed group (by group index).
    pub shown_collapsed: Vec<bool>,
    /// Whether each group is inside a collapsed group, so neither its
    /// frame nor its card is drawn (by group index).
    pub hidden: Vec<bool>,
}

impl Nesting {
    fn of(graph: &Graph) -> Nesting {
        Nesting::build(graph, false).unwrap_or_default()
    }

    fn check(graph: &Graph) -> Result<(), GroupError> {
        Nesting::build(graph, true).map(|_| ())
    }

    /// Groups from the biggest down: each group's members must all sit in
    /// the same smallest group seen so far (its parent), or in none.
    /// `strict`: refuse a partial overlap; otherwise such a group is
    /// treated as top-level and claims no members.
    fn build(graph: &Graph, strict: bool) -> Result<Nesting, GroupError> {
        let groups = &graph.groups;
        let mut by_size: Vec<usize> = (0..groups.len()).collect();
        by_size.sort_by_key(|&g| std::cmp::Reverse(groups[g].members.len()));
        let mut parent = vec![None; groups.len()];
        let mut innermost: Vec<Option<usize>> = vec![None; graph.id_capacity()];
        for &g in &by_size {
            let group = &groups[g];
            let owner = |m: &NodeId| innermost.get(m.index()).copied().flatten();
            let first = group.members.first().and_then(owner);
            let straddles = group.members.iter().find(|m| owner(m) != first);
            if let Some(&m) = straddles {
                if strict {
                    let other = owner(&m).or(first).unwrap_or(g);
                    return Err(GroupError::Overlap {
                        node: graph.name_of(m).to_string(),
                        first: groups[other].name.clone(),
                        second: group.name.clone(),
                    });
                }
                continue;
            }
            if let Some(p) = first
                && groups[p].members.len() == group.members.len()
            {
                if strict {
                    return Err(GroupError::SameMembers {
                        first: groups[p].name.clone(),
                        second: group.name.clone(),
                    });
                }
                continue;
            }
            parent[g] = first;
            for m in &group.members {
                if let Some(slot) = innermost.get_mut(m.index()) {
                    *slot = Some(g);
                }
            }
        }
        let mut nesting = Nesting {
            parent,
            innermost,
            shown_collapsed: vec![false; groups.len()],
            hidden: vec![false; groups.len()],
        };
        for g in 0..groups.len() {
            let hidden = nesting.ancestors(g).any(|a| groups[a].collapsed);
            nesting.hidden[g] = hidden;
            nesting.shown_collapsed[g] = groups[g].collapsed && !nesting.hidden[g];
        }
        Ok(nesting)
    }

    /// The groups holding group `g`, innermost first.
    pub fn ancestors(&self, g: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.parent.get(g).copied().flatten(), |&a| {
            self.parent.get(a).copied().flatten()
        })
    }

    /// How many groups hold group `g`.
    pub fn depth(&self, g: usize) -> usize {
        self.ancestors(g).count()
    }

    /// The groups holding node `id`, innermost first.
    pub fn groups_of(&self, id: NodeId) -> impl Iterator<Item = usize> + '_ {
        let first = self.innermost.get(id.index()).copied().flatten();
        std::iter::successors(first, |&a| self.parent.get(a).copied().flatten())
    }

    /// The collapsed group node `id` is drawn as, if any: the outermost
    /// collapsed group holding it.
    pub fn drawn_in(&self, id: NodeId) -> Option<usize> {
        self.groups_of(id)
            .filter(|&g| self.shown_collapsed[g])
            .last()
    }

    /// Whether group `inner` is `outer` or lies inside it.
    pub fn within(&self, inner: usize, outer: usize) -> bool {
        inner == outer || self.ancestors(inner).any(|a| a == outer)
    }
}

fn group_output_in(graph: &Graph, group: &Group, order: &[NodeId]) -> Option<NodeId> {
    let inside = |id: NodeId| group.members.binary_search(&id).is_ok();
    let leaves = |id: NodeId| graph.edges.iter().any(|e| e.from == id && !inside(e.to));
    let members = || order.iter().rev().copied().filter(|&id| inside(id));
    members()
        .find(|&id| leaves(id))
        .or_else(|| members().next())
}

/// The design as drawn: collapsed groups replaced by one node each.
///
/// Node ids below [`View::real_capacity`] are the design's own (members of
/// collapsed groups are absent); the id `real_capacity + g` is group `g`
/// drawn collapsed, named after the group, at the group's position.
#[derive(Clone, Debug)]
pub struct View {
    pub graph: Graph,
    pub real_capacity: usize,
    /// The node whose output each view node carries (indexed by view id):
    /// itself, or a collapsed group's output member.
    source: Vec<Option<NodeId>>,
}

impl View {
    /// The group a view node stands for, if it is a collapsed group.
    pub fn group(&self, id: NodeId) -> Option<usize> {
        id.index().checked_sub(self.real_capacity)
    }

    /// The view id of group `g` when collapsed.
    pub fn group_node(&self, g: usize) -> NodeId {
        NodeId((self.real_capacity + g) as u32)
    }

    /// The design node whose output the view node `id` carries.
    pub fn source(&self, id: NodeId) -> Option<NodeId> {
        self.source.get(id.index()).copied().flatten()
    }
}

/// Builds the [`View`] of `graph` for its groups' collapsed flags: the
/// members of an outermost collapsed group (and every group inside it)
/// are drawn as that group's one node.
pub fn view(graph: &Graph) -> View {
    let cap = graph.id_capacity();
    let order = graph
        .topological_order()
        .unwrap_or_else(|_| graph.node_ids().collect());
    let nesting = graph.nesting();
    let to_view = |id: NodeId| match nesting.drawn_in(id) {
        Some(g) => NodeId((cap + g) as u32),
        None => id,
    };
    let mut v = Graph::new(graph.name.clone());
    let mut source: Vec<Option<NodeId>> = vec![None; cap + graph.groups.len()];
    v.slots = graph
        .slots
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let keep = n.is_some() && nesting.drawn_in(NodeId(i as u32)).is_none();
            if keep {
                source[i] = Some(NodeId(i as u32));
            }
            n.clone().filter(|_| keep)
        })
        .collect();
    for (g, group) in graph.groups.iter().enumerate() {
        let out = group_output_in(graph, group, &order);
        let node = out.filter(|_| nesting.shown_collapsed[g]).and_then(|o| {
            let kind = graph.node(o)?.kind.clone();
            Some(Node {
                name: group.name.clone(),
                kind: group_kind(kind),
                position: group.position,
                frozen: false,
            })
        });
        if node.is_some() {
            source[cap + g] = out;
        }
        v.slots.push(node);
    }
    let mut next_input: HashMap<NodeId, usize> = HashMap::new();
    let mut seen: HashSet<(NodeId, NodeId)> = HashSet::new();
    for e in &graph.edges {
        let (from, to) = (to_view(e.from), to_view(e.to));
        if from == to {
            continue;
        }
        let input = if to.index() >= cap {
            // Into a collapsed group: one port per distinct producer.
            if !seen.insert((from, to)) {
                continue;
            }
            let k = next_input.entry(to).or_insert(0);
            *k += 1;
            *k - 1
        } else {
            e.input
        };
        v.edges.push(Edge { from, to, input });
    }
    View {
        graph: v,
        real_capacity: cap,
        source,
    }
}

/// The kind a collapsed group is drawn with: its output member's, made to
/// take inputs (ports are counted from the kind).
fn group_kind(kind: LayerKind) -> LayerKind {
    match kind.arity() {
        super::Arity::None => LayerKind::Concat,
        _ => kind,
    }
}

/// Groups of nodes whose names share a block prefix, as frameworks name
/// them when exporting (`layer1.0.conv1`, `/layer1/layer1.0/conv1/Conv`,
/// `Mixed_5b.branch1x1.conv`). The prefix is the name's first part, plus
/// its second when that is a block number (`layer1.0`); a prefix holding
/// more than half of the design is split one part deeper
/// (`features.denseblock1`). Only groups of at least two nodes that are
/// contiguous and whose name is free are returned, in topological order.
pub fn groups_from_name_prefixes(graph: &Graph) -> Vec<(String, Vec<NodeId>)> {
    let order = graph
        .topological_order()
        .unwrap_or_else(|_| graph.node_ids().collect());
    let parts: Vec<Named> = order
        .iter()
        .filter_map(|&id| Some((id, name_parts(&graph.node(id)?.name))))
        .collect();
    let mut found: Vec<(String, Vec<NodeId>)> = Vec::new();
    split_by_prefix(&parts, 0, graph.len(), &mut found);
    let mut trial = graph.clone();
    trial.groups.clear();
    found
        .into_iter()
        .filter(|(name, members)| {
            members.len() >= 2
                && members.len() < graph.len()
                && trial
                    .add_group(name.clone(), members.iter().copied())
                    .is_ok()
        })
        .collect()
}

/// `/layer1/layer1.0/conv1/Conv` → `[layer1, 0, conv1, Conv]`: split at
/// `.` and `/`, repeated parts (a path echoing its parent) dropped.
fn name_parts(name: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for p in name.split(['.', '/']).filter(|p| !p.is_empty()) {
        if parts.contains(&p.to_string()) && !p.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        parts.push(p.to_string());
    }
    parts
}

/// A node and the parts of its name.
type Named = (NodeId, Vec<String>);

/// Groups `parts` (all sharing their first `depth` parts) by the next
/// prefix, recursing into any prefix that holds more than half of `total`.
fn split_by_prefix(
    parts: &[Named],
    depth: usize,
    total: usize,
    found: &mut Vec<(String, Vec<NodeId>)>,
) {
    let mut by_key: Vec<(Vec<String>, Vec<Named>)> = Vec::new();
    for (id, p) in parts {
        let mut take = depth + 1;
        if p.get(depth + 1)
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()))
        {
            take += 1;
        }
        // The prefix must leave something of the name: the layer's own part.
        if p.len() <= take {
            continue;
        }
        let key = p[..take].to_vec();
        match by_key.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push((*id, p.clone())),
            None => by_key.push((key, vec![(*id, p.clone())])),
        }
    }
    for (key, members) in by_key {
        if members.len() * 2 > total && depth + 1 < 4 {
            split_by_prefix(&members, key.len(), total, found);
        } else {
            found.push((
                key.join("."),
                members.into_iter().map(|(id, _)| id).collect(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(names: &[&str]) -> (Graph, Vec<NodeId>) {
        let mut g = Graph::new("t");
        let mut ids = Vec::new();
        for n in names {
            let id = g.add_node(*n, LayerKind::Relu, [0.0, 0.0]).unwrap();
            if let Some(&prev) = ids.last() {
                g.connect(prev, id, 0).unwrap();
            }
            ids.push(id);
        }
        (g, ids)
    }

    #[test]
    fn groups_refuse_overlap_missing_nodes_and_layer_names() {
        let (mut g, ids) = chain(&["a", "b", "c", "d"]);
        g.add_group("first", [ids[0], ids[1]]).unwrap();
        assert_eq!(
            g.add_group("second", [ids[1], ids[2]]).unwrap_err(),
            GroupError::Overlap {
                node: "c".into(),
                first: "first".into(),
                second: "second".into()
            }
        );
        assert_eq!(
            g.add_group("first", [ids[3]]).unwrap_err(),
            GroupError::DuplicateName("first".into())
        );
        assert_eq!(
            g.add_group("c", [ids[3]]).unwrap_err(),
            GroupError::NameOfALayer("c".into())
        );
        assert!(matches!(
            g.add_group("x", [NodeId(99)]),
            Err(GroupError::NoSuchNode { .. })
        ));
        assert_eq!(
            g.add_group("", [ids[3]]).unwrap_err(),
            GroupError::EmptyName
        );
        assert_eq!(g.groups().len(), 1, "refused groups leave nothing behind");
    }

    #[test]
    fn groups_nest_inside_groups_but_never_overlap_partly() {
        let (mut g, ids) = chain(&["a", "b", "c", "d", "e"]);
        let stage = g.add_group("stage", ids[..4].iter().copied()).unwrap();
        let first = g.add_group("first", [ids[0], ids[1]]).unwrap();
        let second = g.add_group("second", [ids[2], ids[3]]).unwrap();
        let inner = g.add_group("inner", [ids[0]]).unwrap();
        let n = g.nesting();
        assert_eq!(n.parent[first], Some(stage));
        assert_eq!(n.parent[second], Some(stage));
        assert_eq!(n.parent[inner], Some(first));
        assert_eq!(n.parent[stage], None);
        assert_eq!(n.depth(inner), 2);
        assert_eq!(g.group_of(ids[0]), Some(inner));
        assert_eq!(g.group_of(ids[3]), Some(second));
        assert_eq!(g.group_of(ids[4]), None);
        // A group reaching out of its parent, or the same set twice.
        assert!(matches!(
            g.add_group("across", [ids[3], ids[4]]),
            Err(GroupError::Overlap { .. })
        ));
        assert!(matches!(
            g.add_group("across2", [ids[1], ids[2]]),
            Err(GroupError::Overlap { .. })
        ));
        assert_eq!(
            g.add_group("again", [ids[2], ids[3]]).unwrap_err(),
            GroupError::SameMembers {
                first: "second".into(),
                second: "again".into()
            }
        );
        assert_eq!(g.groups().len(), 4);
        // A parent shrinking to its child's members drops the repeat.
        g.remove_node(ids[3]);
        g.remove_node(ids[2]);
        g.remove_node(ids[1]);
        let names: Vec<&str> = g.groups().iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["stage"],
            "first and inner repeated stage's members"
        );
        g.check_groups().unwrap();
    }

    #[test]
    fn a_collapsed_parent_hides_its_children_and_a_collapsed_child_shows_in_its_parent() {
        let (mut g, ids) = chain(&["a", "b", "c", "d", "e"]);
        let stage = g.add_group("stage", ids[1..4].iter().copied()).unwrap();
        let block = g.add_group("block", [ids[1], ids[2]]).unwrap();
        g.set_collapsed(block, true);
        let v = view(&g);
        let names = |v: &View| {
            let mut n: Vec<String> = v.graph.nodes().map(|(_, n)| n.name.clone()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&v), vec!["a", "block", "d", "e"]);
        assert!(v.graph.find("block").is_some());
        g.set_collapsed(stage, true);
        let v = view(&g);
        assert_eq!(names(&v), vec!["a", "e", "stage"]);
        let n = g.nesting();
        assert!(n.hidden[block] && !n.shown_collapsed[block]);
        assert!(n.shown_collapsed[stage]);
        assert_eq!(v.source(v.group_node(stage)), Some(ids[3]));
        assert_eq!(v.graph.edges().len(), 2);
        assert!(v.graph.topological_order().is_ok());
    }

    #[test]
    fn moving_every_member_moves_the_collapsed_box_of_each_group_inside() {
        let (mut g, ids) = chain(&["a", "b", "c"]);
        let outer = g.add_group("outer", [ids[0], ids[1]]).unwrap();
        let inner = g.add_group("inner", [ids[0]]).unwrap();
        let other = g.add_group("other", [ids[2]]).unwrap();
        g.set_group_position(outer, [5.0, 5.0]);
        g.move_nodes(&[ids[0], ids[1]].into_iter().collect(), [10.0, -2.0]);
        assert_eq!(g.groups()[outer].position, [15.0, 3.0]);
        assert_eq!(g.groups()[inner].position, [10.0, -2.0]);
        assert_eq!(g.groups()[other].position, [0.0, 0.0]);
        assert_eq!(g.node(ids[1]).unwrap().position, [10.0, -2.0]);
        assert_eq!(g.node(ids[2]).unwrap().position, [0.0, 0.0]);
    }

    #[test]
    fn a_group_a_path_leaves_and_reenters_is_refused() {
        // a → b → c and a → c: {a, c} without b is not contiguous.
        let mut g = Graph::new("t");
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let c = g.add_node("c", LayerKind::Add, [0.0, 0.0]).unwrap();
        g.connect(a, b, 0).unwrap();
        g.connect(b, c, 0).unwrap();
        g.connect(a, c, 1).unwrap();
        assert_eq!(
            g.add_group("skip", [a, c]).unwrap_err(),
            GroupError::NotContiguous {
                group: "skip".into(),
                outside: "b".into()
            }
        );
        g.add_group("all", [a, b, c]).unwrap();
    }

    #[test]
    fn a_wire_drawn_after_grouping_ungroups_only_the_group_it_breaks() {
        // a → add and {a, add} grouped; then a → b → add: the path through
        // b leaves the group and comes back.
        let mut g = Graph::new("t");
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let add = g.add_node("add", LayerKind::Add, [0.0, 0.0]).unwrap();
        let after = g.add_node("after", LayerKind::Relu, [0.0, 0.0]).unwrap();
        g.connect(a, add, 0).unwrap();
        g.connect(add, after, 0).unwrap();
        g.add_group("pair", [a, add]).unwrap();
        g.add_group("tail", [after]).unwrap();
        assert!(g.ungroup_discontiguous().is_empty());
        g.connect(a, b, 0).unwrap();
        g.connect(b, add, 1).unwrap();
        assert_eq!(
            g.ungroup_discontiguous(),
            vec![Ungrouped {
                group: "pair".into(),
                outside: "b".into()
            }]
        );
        assert_eq!(g.groups().len(), 1);
        assert_eq!(g.groups()[0].name, "tail");
        assert_eq!(g.len(), 4, "no layer is lost");
        g.check_groups().unwrap();
    }

    #[test]
    fn the_view_replaces_a_collapsed_group_by_one_node_wired_at_its_boundary() {
        // in → (a → b, a → c, b + c → add) → out: the block is a diamond.
        let mut g = Graph::new("t");
        let input = g.add_node("in", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let add = g.add_node("add", LayerKind::Add, [0.0, 0.0]).unwrap();
        let out = g.add_node("out", LayerKind::Relu, [0.0, 0.0]).unwrap();
        g.connect(input, a, 0).unwrap();
        g.connect(a, b, 0).unwrap();
        g.connect(b, add, 0).unwrap();
        g.connect(input, add, 1).unwrap();
        g.connect(add, out, 0).unwrap();
        let gi = g.add_group("block", [a, b, add]).unwrap();
        let expanded = view(&g);
        assert_eq!(expanded.graph.len(), 5);
        assert_eq!(expanded.graph.edges().len(), 5);
        g.set_collapsed(gi, true);
        let v = view(&g);
        let block = v.group_node(gi);
        assert_eq!(v.graph.len(), 3);
        assert_eq!(v.graph.name_of(block), "block");
        assert_eq!(v.group(block), Some(gi));
        assert_eq!(
            v.source(block),
            Some(add),
            "the group carries its Add's output"
        );
        let mut edges: Vec<(&str, &str, usize)> = v
            .graph
            .edges()
            .iter()
            .map(|e| (v.graph.name_of(e.from), v.graph.name_of(e.to), e.input))
            .collect();
        edges.sort();
        // The block's two inputs from `in` become one wire into its boundary.
        assert_eq!(edges, vec![("block", "out", 0), ("in", "block", 0)]);
        assert!(v.graph.topological_order().is_ok());
    }

    #[test]
    fn removing_members_shrinks_and_then_drops_the_group() {
        let (mut g, ids) = chain(&["a", "b", "c"]);
        g.add_group("ab", [ids[0], ids[1]]).unwrap();
        g.remove_node(ids[0]);
        assert_eq!(g.groups()[0].members, vec![ids[1]]);
        g.remove_node(ids[1]);
        assert!(g.groups().is_empty());
    }

    #[test]
    fn name_prefixes_group_framework_blocks() {
        let (g, _) = chain(&[
            "conv1",
            "layer1.0.conv1",
            "layer1.0.bn1",
            "layer1.0.relu",
            "layer1.1.conv1",
            "layer1.1.relu",
            "/Mixed_5b/branch1x1/conv/Conv",
            "/Mixed_5b/branch1x1/Relu",
            "fc",
        ]);
        let groups: Vec<(String, usize)> = groups_from_name_prefixes(&g)
            .into_iter()
            .map(|(n, m)| (n, m.len()))
            .collect();
        assert_eq!(
            groups,
            vec![
                ("layer1.0".to_string(), 3),
                ("layer1.1".to_string(), 2),
                ("Mixed_5b".to_string(), 2)
            ]
        );
    }

    #[test]
    fn a_prefix_holding_most_of_the_design_is_split_deeper() {
        let (g, _) = chain(&[
            "features.conv0",
            "features.block1.conv",
            "features.block1.relu",
            "features.block2.conv",
            "features.block2.relu",
            "classifier",
        ]);
        let names: Vec<String> = groups_from_name_prefixes(&g)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["features.block1", "features.block2"]);
    }
}
