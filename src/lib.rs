//! Netloom: a visual designer for convolutional networks.
//!
//! The pipeline, one way: a [`graph::Graph`] (the design as data) is checked
//! and costed by [`infer`], compiled and trained by `train` on the CPU
//! [`kernels`]; `data` feeds training.

pub mod app;
pub mod data;
pub mod graph;
pub mod infer;
pub mod kernels;
pub mod train;
