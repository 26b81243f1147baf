//! Netloom: a visual designer for convolutional networks.
//!
//! The pipeline, one way: a [`graph::Graph`] (the design as data) is checked
//! and costed by [`infer`], compiled and trained by `train` on the CPU
//! [`kernels`]; `data` feeds training.

pub mod data;
pub mod graph;
pub mod infer;
pub mod interop;
pub mod kernels;
pub mod report;
pub mod train;

/// The design opened when none is given: the small ResNet that trains in minutes.
pub fn default_design_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/resnet-mini.json")
}
