//! Netloom: a visual designer for convolutional networks.
//!
//! Data flows one way: [`graph`] (the design as data) → [`infer`] (shapes,
//! params, multiply counts, errors) → [`train`] (compiled plan, autodiff,
//! optimizers) → [`kernels`] (f32 math on contiguous slices, parallel with
//! rayon, that knows nothing of graphs). [`data`] feeds `train`; [`cli`] is
//! the command line. `ARCHITECTURE.md` at the repository root maps the code.
//!
//! ```no_run
//! use netloom::{graph, infer, train};
//! let design = graph::file::load(&netloom::default_design_path())?;
//! let analysis = infer::analyze(&design);
//! println!("{} MACs", analysis.totals(&Default::default()).macs);
//! let mut plan = train::Plan::compile(&design, &analysis, 32, 42)?;
//! let mut optimizer = train::Optimizer::new(Default::default(), &plan.params);
//! let (images, labels) = (vec![0.0; 32 * 64 * 64 * 3], vec![0u32; 32]);
//! let loss = plan.train_step(&images, &labels, &mut optimizer);
//! # let _ = loss;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "gui")]
pub mod app;
pub mod cli;
pub mod data;
pub mod graph;
pub mod infer;
pub mod interop;
pub mod kernels;
pub mod render;
pub mod train;

/// The design opened when none is given: the small ResNet that trains in minutes.
pub fn default_design_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/resnet-mini.json")
}
