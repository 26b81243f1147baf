//! Netloom's `kernels` module built on its own (it knows nothing of graphs
//! or UI), for running its tests on other architectures.

#[path = "../../src/kernels/mod.rs"]
pub mod kernels;
