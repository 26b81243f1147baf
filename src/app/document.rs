//! One open design: the graph, its file, undo history and cached analysis.

use super::command::{Command, EditError, EditOutcome, apply_edit};
use crate::graph::Graph;
use crate::infer::{Analysis, analyze};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many undo steps are kept.
const HISTORY_LIMIT: usize = 200;

/// A generation no document has had yet.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub struct Document {
    pub graph: Graph,
    /// Where the design was loaded from or last saved to.
    pub path: Option<PathBuf>,
    /// Edited since the last save.
    pub dirty: bool,
    /// Shapes and costs of `graph`, recomputed after every change.
    pub analysis: Analysis,
    /// Identifies this state of `graph` for caches (the compare diff, the
    /// canvas picture) and autosave: a fresh value on every change, drawn
    /// from one counter for all documents, so a design opened into a tab
    /// never reuses the value of the design it replaced.
    pub generation: u64,
    undo: Vec<Graph>,
    redo: Vec<Graph>,
    /// The coalescing key of the last edit, if it may merge with the next.
    last_key: Option<(u8, crate::graph::NodeId)>,
}

impl Document {
    pub fn new(graph: Graph, path: Option<PathBuf>) -> Self {
        let analysis = analyze(&graph);
        Document {
            graph,
            path,
            dirty: false,
            analysis,
            generation: next_generation(),
            undo: Vec::new(),
            redo: Vec::new(),
            last_key: None,
        }
    }

    /// The title shown in tabs and the window title.
    pub fn title(&self) -> String {
        match &self.path {
            Some(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.graph.name.clone()),
            None if self.graph.name.is_empty() => "untitled".into(),
            None => self.graph.name.clone(),
        }
    }

    /// Applies an edit as one undoable step. On error nothing changes.
    pub fn apply(&mut self, cmd: &Command) -> Result<EditOutcome, EditError> {
        let before = self.graph.clone();
        let outcome = match apply_edit(&mut self.graph, cmd) {
            Ok(o) => o,
            Err(e) => {
                self.graph = before;
                return Err(e);
            }
        };
        if self.graph == before {
            return Ok(outcome);
        }
        let key = cmd.coalesce_key();
        if key.is_none() || key != self.last_key {
            self.undo.push(before);
            if self.undo.len() > HISTORY_LIMIT {
                self.undo.remove(0);
            }
        }
        self.last_key = key;
        self.redo.clear();
        self.changed();
        Ok(outcome)
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn undo(&mut self) -> bool {
        let Some(prev) = self.undo.pop() else {
            return false;
        };
        self.redo.push(std::mem::replace(&mut self.graph, prev));
        self.last_key = None;
        self.changed();
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(next) = self.redo.pop() else {
            return false;
        };
        self.undo.push(std::mem::replace(&mut self.graph, next));
        self.last_key = None;
        self.changed();
        true
    }

    /// Ends merging of consecutive parameter edits (e.g. when focus leaves a field).
    pub fn break_coalescing(&mut self) {
        self.last_key = None;
    }

    fn changed(&mut self) {
        self.dirty = true;
        self.generation = next_generation();
        self.analysis = analyze(&self.graph);
    }

    /// Marks the design saved at `path`.
    pub fn saved(&mut self, path: PathBuf) {
        self.path = Some(path);
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::command::PaletteItem;
    use crate::graph::LayerKind;

    fn add_relu(doc: &mut Document, x: f32) {
        doc.apply(&Command::AddItem {
            item: PaletteItem::Layer(LayerKind::Relu),
            position: [x, 0.0],
        })
        .unwrap();
    }

    #[test]
    fn undo_redo_round_trip() {
        let mut doc = Document::new(Graph::new("t"), None);
        let empty = doc.graph.clone();
        add_relu(&mut doc, 0.0);
        add_relu(&mut doc, 100.0);
        let two = doc.graph.clone();
        assert_eq!(two.len(), 2);
        assert!(doc.undo());
        assert!(doc.undo());
        assert_eq!(doc.graph, empty);
        assert!(!doc.undo());
        assert!(doc.redo());
        assert!(doc.redo());
        assert_eq!(doc.graph, two);
        assert!(!doc.redo());
        assert!(doc.dirty);
    }

    /// A generation names one state of one document: caches keyed by it
    /// see an edit, an undo and a design opened in place of another.
    #[test]
    fn every_change_and_every_new_document_gets_a_new_generation() {
        let mut doc = Document::new(Graph::new("t"), None);
        let mut seen = vec![doc.generation];
        add_relu(&mut doc, 0.0);
        seen.push(doc.generation);
        assert!(doc.undo());
        seen.push(doc.generation);
        seen.push(Document::new(Graph::new("t"), None).generation);
        let distinct: std::collections::BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(distinct.len(), seen.len(), "{seen:?}");
    }

    #[test]
    fn a_new_edit_clears_redo() {
        let mut doc = Document::new(Graph::new("t"), None);
        add_relu(&mut doc, 0.0);
        doc.undo();
        assert!(doc.can_redo());
        add_relu(&mut doc, 10.0);
        assert!(!doc.can_redo());
    }

    #[test]
    fn parameter_edits_coalesce_into_one_step() {
        let mut doc = Document::new(Graph::new("t"), None);
        doc.apply(&Command::AddItem {
            item: PaletteItem::Layer(LayerKind::Dense {
                units: 10,
                bias: true,
            }),
            position: [0.0, 0.0],
        })
        .unwrap();
        let id = doc.graph.node_ids().next().unwrap();
        for units in [1, 12, 128] {
            doc.apply(&Command::SetKind {
                id,
                kind: LayerKind::Dense { units, bias: true },
            })
            .unwrap();
        }
        doc.undo();
        assert_eq!(
            doc.graph.node(id).unwrap().kind,
            LayerKind::Dense {
                units: 10,
                bias: true
            }
        );
    }

    /// A wire that makes a group leave and re-enter itself takes the group
    /// apart (the design stays drawable and saves as it reopens); undo
    /// brings the group back with the wire gone.
    #[test]
    fn a_wire_that_breaks_a_group_ungroups_it_in_one_undo_step() {
        let mut g = Graph::new("t");
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let sum = g.add_node("sum", LayerKind::Add, [0.0, 0.0]).unwrap();
        g.connect(a, sum, 0).unwrap();
        g.connect(a, b, 0).unwrap();
        g.add_group("pair", [a, sum]).unwrap();
        let mut doc = Document::new(g, None);
        let before = doc.graph.clone();
        let outcome = doc
            .apply(&Command::Connect {
                from: b,
                to: sum,
                input: Some(1),
            })
            .unwrap();
        assert_eq!(outcome.ungrouped.len(), 1);
        assert_eq!(outcome.ungrouped[0].group, "pair");
        assert!(doc.graph.groups().is_empty());
        doc.graph.check_groups().unwrap();
        assert!(doc.undo());
        assert_eq!(doc.graph, before);
    }

    #[test]
    fn failed_edits_change_nothing() {
        let mut doc = Document::new(Graph::new("t"), None);
        add_relu(&mut doc, 0.0);
        let id = doc.graph.node_ids().next().unwrap();
        let g = doc.graph.clone();
        let err = doc.apply(&Command::Connect {
            from: id,
            to: id,
            input: None,
        });
        assert!(err.is_err());
        assert_eq!(doc.graph, g);
        assert!(doc.undo());
        assert!(doc.graph.is_empty());
    }
}
