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
mod import;

pub use export::{export, export_bytes};
pub use import::{import, import_bytes};

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
    /// Things the user should know: approximations, skipped weights.
    pub warnings: Vec<String>,
}
