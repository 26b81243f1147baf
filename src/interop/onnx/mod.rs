//! ONNX import and export of designs (structure, and weights when present).
//!
//! Export writes **opset 13** (IR version 7), NCHW, with `same` padding
//! resolved to explicit `pads`. Import reads opsets 7 to 21 of the default
//! domain; see [`import`] for the operators it maps.
//!
//! [`export`](mod@export) builds the `ModelProto`, [`import`](mod@import)
//! maps an ONNX graph onto Netloom layers, and [`attributes`] builds and
//! reads node attributes for both.

mod attributes;
mod export;
mod external;
mod import;

pub use export::{export, export_bytes, export_with_meta};
pub use import::{
    ImportOptions, import, import_bytes, import_bytes_with_options, import_with_options,
};

use super::Tensors;
use crate::graph::Graph;

/// The ONNX operator set exports target.
pub const EXPORT_OPSET: i64 = 13;
/// The ONNX IR version exports declare (the one opset 13 shipped with).
pub const EXPORT_IR_VERSION: i64 = 7;
/// Written into a node's `doc_string` when the Netloom layer used `same` padding,
/// so a re-import restores `same` instead of the equivalent explicit pads.
const SAME_HINT: &str = "netloom: padding same";

/// A design read from an ONNX file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The design, auto-laid-out.
    pub graph: Graph,
    /// Initializers of the mapped layers, in Netloom layouts (empty when the
    /// model carries none).
    pub weights: Tensors,
    /// Operators Netloom has no layer for: `(op_type, how many)`, most frequent first.
    pub unsupported: Vec<(String, usize)>,
    /// Every place where the design does not compute what the model does
    /// (operators left out or passed through, weights not imported), in
    /// graph order. Empty when the import is faithful.
    pub deviations: Vec<Deviation>,
    /// Things the user should know that do not change the function.
    pub warnings: Vec<String>,
}

/// Appended to the design's name when an unfaithful import is kept anyway.
pub const PARTIAL_MARK: &str = " (partial import)";

impl Imported {
    /// Whether the design computes the same function as the model.
    pub fn is_faithful(&self) -> bool {
        self.deviations.is_empty()
    }

    /// The deviations, one a line (`  - …`), at most `max` of them and a
    /// count of the rest.
    pub fn deviation_list(&self, max: usize) -> String {
        let mut lines: Vec<String> = self
            .deviations
            .iter()
            .take(max)
            .map(|d| format!("  - {d}"))
            .collect();
        if self.deviations.len() > max {
            lines.push(format!("  … and {} more", self.deviations.len() - max));
        }
        lines.join("\n")
    }

    /// Marks the design as a partial import (its name says so), for when
    /// the user keeps what could be read.
    pub fn mark_partial(&mut self) {
        if !self.graph.name.ends_with(PARTIAL_MARK) {
            self.graph.name.push_str(PARTIAL_MARK);
        }
    }

    /// The note a partial design file carries: what it leaves out.
    pub fn partial_note(&self) -> String {
        let items: Vec<String> = self.deviations.iter().map(|d| d.to_string()).collect();
        format!(
            "Partial import: this design does not compute what the ONNX model does. {}",
            items.join("; ")
        )
    }
}

/// One thing the imported design does differently from the ONNX model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    /// The ONNX node (its name, or `op → first output`), or the tensor.
    pub node: String,
    /// What could not be represented: an operator with its variant
    /// (`Clip (min 0, max 1)`), or `weights`.
    pub what: String,
    /// What it changes in the written design.
    pub effect: String,
}

impl std::fmt::Display for Deviation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}`: {}", self.what, self.node, self.effect)
    }
}
