//! What differs between compare designs A and B: layers matched by name
//! (added, removed, changed parameters, changed cost), the branches into
//! every merge (Concat, Add) and the groups (blocks), each with its totals
//! in both designs. No UI: the compare view and the canvases read it.

use crate::graph::{Arity, Graph, NodeId};
use crate::infer::{Analysis, Conventions};
use std::collections::{BTreeSet, HashMap};

/// How a layer of one design differs from the layer of the same name in
/// the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, with other parameters (kind, filters, window, …).
    Parameters,
    /// In both with the same parameters, but costing other MACs or params
    /// (its input changed).
    Cost,
}

impl Change {
    /// The words the canvas badge and the table show.
    pub fn label(self) -> &'static str {
        match self {
            Change::Added => "added in B",
            Change::Removed => "not in B",
            Change::Parameters => "parameters changed",
            Change::Cost => "cost changed",
        }
    }
}

/// MACs and params of a layer, a branch or a block in one design.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub macs: u64,
    pub params: u64,
}

impl Figures {
    fn add(&mut self, other: Figures) {
        self.macs = self.macs.saturating_add(other.macs);
        self.params = self.params.saturating_add(other.params);
    }
}

/// One layer that differs, with its figures in A and B (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDelta {
    pub name: String,
    pub change: Change,
    pub a: Option<Figures>,
    pub b: Option<Figures>,
}

/// One branch into a merge: the chain of one-input layers between the
/// fork and input `input` of the merge layer `merge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchDelta {
    pub merge: String,
    pub input: usize,
    /// The branch's layers in B (in A when B has no such branch), first to last.
    pub layers: Vec<String>,
    pub a: Option<Figures>,
    pub b: Option<Figures>,
}

impl BranchDelta {
    /// e.g. `concat input 1: 3x3_reduce … 3x3_relu` or `add input 1: identity`.
    pub fn label(&self) -> String {
        let path = match self.layers.as_slice() {
            [] => "identity".to_string(),
            [one] => one.clone(),
            [first, .., last] => format!("{first} ... {last}"),
        };
        format!("{} input {}: {path}", self.merge, self.input)
    }
}

/// A group of A paired with one of B (same name, else the most shared
/// layers), with both totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDelta {
    pub a_name: Option<String>,
    pub b_name: Option<String>,
    pub a: Option<Figures>,
    pub b: Option<Figures>,
}

impl BlockDelta {
    pub fn label(&self) -> String {
        match (&self.a_name, &self.b_name) {
            (Some(a), Some(b)) if a == b => a.clone(),
            (Some(a), Some(b)) => format!("{a} / {b}"),
            (Some(a), None) => format!("{a} (only A)"),
            (None, Some(b)) => format!("{b} (only B)"),
            (None, None) => String::new(),
        }
    }
}

/// Everything that differs between A and B.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Differing layers: A's order, then the layers only B has.
    pub layers: Vec<LayerDelta>,
    pub branches: Vec<BranchDelta>,
    pub blocks: Vec<BlockDelta>,
    /// The mark of every differing layer of A (removed, changed).
    pub marks_a: HashMap<NodeId, Change>,
    /// The mark of every differing layer of B (added, changed).
    pub marks_b: HashMap<NodeId, Change>,
}

impl Diff {
    /// A layer's change by name, if it differs.
    pub fn change_of(&self, name: &str) -> Option<Change> {
        self.layers
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.change)
    }
}

/// One design with its analysis, as the diff reads it.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub graph: &'a Graph,
    pub analysis: &'a Analysis,
}

impl Side<'_> {
    fn figures(&self, id: NodeId, conventions: &Conventions) -> Option<Figures> {
        let info = self.analysis.node(id)?;
        let (trainable, frozen) = info.params(conventions);
        Some(Figures {
            macs: info.cost.macs,
            params: trainable.saturating_add(frozen),
        })
    }

    fn sum<'n>(
        &self,
        names: impl IntoIterator<Item = &'n String>,
        conventions: &Conventions,
    ) -> Figures {
        let mut f = Figures::default();
        for name in names {
            if let Some(x) = self
                .graph
                .find(name)
                .and_then(|id| self.figures(id, conventions))
            {
                f.add(x);
            }
        }
        f
    }
}

/// Compares A with B.
pub fn diff(a: Side<'_>, b: Side<'_>, conventions: &Conventions) -> Diff {
    let mut out = Diff::default();
    let order = |s: Side<'_>| -> Vec<NodeId> {
        if s.analysis.order.len() == s.graph.len() {
            s.analysis.order.clone()
        } else {
            s.graph.node_ids().collect()
        }
    };
    for id in order(a) {
        let name = a.graph.name_of(id);
        let fa = a.figures(id, conventions);
        let (change, fb) = match b.graph.find(name) {
            None => (Some(Change::Removed), None),
            Some(bid) => {
                let fb = b.figures(bid, conventions);
                let same_kind =
                    a.graph.node(id).map(|n| &n.kind) == b.graph.node(bid).map(|n| &n.kind);
                let change = if !same_kind {
                    Some(Change::Parameters)
                } else if fa != fb {
                    Some(Change::Cost)
                } else {
                    None
                };
                if let Some(c) = change {
                    out.marks_b.insert(bid, c);
                }
                (change, fb)
            }
        };
        if let Some(change) = change {
            out.marks_a.insert(id, change);
            out.layers.push(LayerDelta {
                name: name.to_string(),
                change,
                a: fa,
                b: fb,
            });
        }
    }
    for id in order(b) {
        let name = b.graph.name_of(id);
        if a.graph.find(name).is_none() {
            out.marks_b.insert(id, Change::Added);
            out.layers.push(LayerDelta {
                name: name.to_string(),
                change: Change::Added,
                a: None,
                b: b.figures(id, conventions),
            });
        }
    }
    out.branches = branch_deltas(a, b, conventions);
    out.blocks = block_deltas(a, b, conventions);
    out
}

/// The branches into every merge layer of `graph`: `(merge name, input,
/// layers)`, layers first to last. A branch runs back from the merge's
/// input through one-input layers feeding only the next, and stops before
/// the fork (a layer with several consumers) or anything else.
pub fn branches(graph: &Graph) -> Vec<(String, usize, Vec<String>)> {
    let mut out = Vec::new();
    for (merge, node) in graph.nodes() {
        if node.kind.arity() != Arity::Many {
            continue;
        }
        for (input, producer) in graph.inputs_of(merge).into_iter().enumerate() {
            let mut layers = Vec::new();
            let mut at = producer;
            let mut seen = BTreeSet::new();
            while let Some(id) = at {
                let only_feeds_branch = graph.consumers_of(id).count() == 1;
                let one_input = graph.node(id).is_some_and(|n| n.kind.arity() == Arity::One);
                if !only_feeds_branch || !one_input || !seen.insert(id) {
                    break;
                }
                layers.push(graph.name_of(id).to_string());
                at = graph.inputs_of(id).first().copied().flatten();
            }
            layers.reverse();
            out.push((node.name.clone(), input, layers));
        }
    }
    out
}

fn branch_deltas(a: Side<'_>, b: Side<'_>, conventions: &Conventions) -> Vec<BranchDelta> {
    let in_a = branches(a.graph);
    let in_b = branches(b.graph);
    let mut out = Vec::new();
    for (merge, input, layers) in &in_b {
        let fb = b.sum(layers, conventions);
        let other = in_a.iter().find(|(m, i, _)| m == merge && i == input);
        let fa = other.map(|(_, _, l)| a.sum(l, conventions));
        out.push(BranchDelta {
            merge: merge.clone(),
            input: *input,
            layers: layers.clone(),
            a: fa,
            b: Some(fb),
        });
    }
    for (merge, input, layers) in &in_a {
        if !in_b.iter().any(|(m, i, _)| m == merge && i == input) {
            out.push(BranchDelta {
                merge: merge.clone(),
                input: *input,
                layers: layers.clone(),
                a: Some(a.sum(layers, conventions)),
                b: None,
            });
        }
    }
    out
}

fn block_deltas(a: Side<'_>, b: Side<'_>, conventions: &Conventions) -> Vec<BlockDelta> {
    let members = |s: Side<'_>, g: usize| -> BTreeSet<String> {
        s.graph.groups()[g]
            .members
            .iter()
            .map(|&id| s.graph.name_of(id).to_string())
            .collect()
    };
    let na = a.graph.groups().len();
    let nb = b.graph.groups().len();
    let mut paired_b = vec![false; nb];
    let mut pairs: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    // Same name first, then the group of B sharing the most layers.
    let mut left = Vec::new();
    for ga in 0..na {
        let name = &a.graph.groups()[ga].name;
        match b.graph.find_group(name) {
            Some(gb) if !paired_b[gb] => {
                paired_b[gb] = true;
                pairs.push((Some(ga), Some(gb)));
            }
            _ => left.push(ga),
        }
    }
    for ga in left {
        let ma = members(a, ga);
        let best = (0..nb)
            .filter(|&gb| !paired_b[gb])
            .map(|gb| (ma.intersection(&members(b, gb)).count(), gb))
            .filter(|&(shared, _)| shared > 0)
            .max_by_key(|&(shared, gb)| (shared, std::cmp::Reverse(gb)));
        match best {
            Some((_, gb)) => {
                paired_b[gb] = true;
                pairs.push((Some(ga), Some(gb)));
            }
            None => pairs.push((Some(ga), None)),
        }
    }
    pairs.extend(
        (0..nb)
            .filter(|&gb| !paired_b[gb])
            .map(|gb| (None, Some(gb))),
    );
    pairs
        .into_iter()
        .map(|(ga, gb)| BlockDelta {
            a_name: ga.map(|g| a.graph.groups()[g].name.clone()),
            b_name: gb.map(|g| b.graph.groups()[g].name.clone()),
            a: ga.map(|g| a.sum(&members(a, g), conventions)),
            b: gb.map(|g| b.sum(&members(b, g), conventions)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::command::preset_graph;
    use crate::infer::analyze;

    fn pair(a: &str, b: &str) -> Diff {
        let (ga, gb) = (preset_graph(a).unwrap(), preset_graph(b).unwrap());
        let (aa, ab) = (analyze(&ga), analyze(&gb));
        diff(
            Side {
                graph: &ga,
                analysis: &aa,
            },
            Side {
                graph: &gb,
                analysis: &ab,
            },
            &Conventions::default(),
        )
    }

    #[test]
    fn the_bottleneck_module_adds_reductions_and_cheapens_the_big_convs() {
        let d = pair("inception-module-naive", "inception-module-bottleneck");
        for added in ["3x3_reduce", "5x5_reduce", "pool_proj", "pool_proj_relu"] {
            assert_eq!(d.change_of(added), Some(Change::Added), "{added}");
        }
        // Same 3×3 conv parameters, fed 96 channels instead of 192.
        assert_eq!(d.change_of("3x3"), Some(Change::Cost));
        assert_eq!(d.change_of("5x5"), Some(Change::Cost));
        assert_eq!(d.change_of("1x1"), None);
        assert_eq!(d.change_of("input"), None);
        let three = d.layers.iter().find(|l| l.name == "3x3").unwrap();
        // 28·28·128·3·3·192 MACs in A, half the input channels in B.
        assert_eq!(three.a.unwrap().macs, 28 * 28 * 128 * 9 * 192);
        assert_eq!(three.b.unwrap().macs, 28 * 28 * 128 * 9 * 96);
    }

    #[test]
    fn branches_run_from_the_fork_to_the_merge() {
        let g = preset_graph("inception-module-bottleneck").unwrap();
        let b = branches(&g);
        assert_eq!(b.len(), 4);
        assert_eq!(
            b[1],
            (
                "concat".to_string(),
                1,
                vec![
                    "3x3_reduce".to_string(),
                    "3x3_reduce_relu".to_string(),
                    "3x3".to_string(),
                    "3x3_relu".to_string()
                ]
            )
        );
    }

    #[test]
    fn branch_and_block_totals_add_up_to_the_layers() {
        let d = pair("inception-module-naive", "inception-module-bottleneck");
        let five = d.branches.iter().find(|b| b.input == 2).unwrap();
        let f5 = 28 * 28 * 32 * 25;
        assert_eq!(five.a.unwrap().macs, f5 * 192);
        assert_eq!(five.b.unwrap().macs, 28 * 28 * 16 * 192 + f5 * 16);
        assert_eq!(five.label(), "concat input 2: 5x5_reduce ... 5x5_relu");
        // The two modules' groups pair up although their names differ.
        assert_eq!(d.blocks.len(), 1);
        let block = &d.blocks[0];
        assert_eq!(block.label(), "inception / inception_3a");
        let macs_of =
            |s: &str| preset_graph(s).map(|g| analyze(&g).totals(&Conventions::default()).macs);
        assert_eq!(
            Some(block.a.unwrap().macs),
            macs_of("inception-module-naive")
        );
        assert_eq!(
            Some(block.b.unwrap().macs),
            macs_of("inception-module-bottleneck")
        );
    }
}
