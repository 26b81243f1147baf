//! Compiled plans, autodiff, optimizers and the trainer thread.
//!
//! ```no_run
//! use netloom::{graph, infer, train};
//! let graph = graph::file::load(&netloom::default_design_path()).unwrap();
//! let analysis = infer::analyze(&graph);
//! let mut plan = train::Plan::compile(&graph, &analysis, 32, 42).unwrap();
//! let mut opt = train::Optimizer::new(Default::default(), &plan.params);
//! let images = vec![0.0; 32 * 64 * 64 * 3];
//! let labels = vec![0; 32];
//! let loss = plan.train_step(&images, &labels, &mut opt);
//! ```

pub mod arrays;
pub mod backward;
pub mod eval;
pub mod experiment;
pub mod feed;
pub mod forward;
pub mod gradcam;
pub mod memory;
pub mod optim;
pub mod plan;
pub mod prepare;
pub mod trainer;
pub mod weights;

pub use arrays::ArrayError;
pub use forward::Mode;
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind, Schedule};
pub use plan::{CompileError, Head, ParamRole, ParamTensor, Plan};
pub use trainer::{
    Command, DataSource, Event, FeatureMaps, LayerLive, LayerStats, RunState, Sample, TrainConfig,
    TrainOutcome, Trainer, TrainerHandle,
};

impl Plan {
    /// Forward, loss, backward and one optimizer update; returns the loss.
    pub fn train_step(&mut self, images: &[f32], labels: &[u32], optimizer: &mut Optimizer) -> f32 {
        self.forward(images, Mode::Train);
        let loss = self.loss_backward(labels);
        self.backward();
        optimizer.update(&mut self.params);
        loss
    }

    /// Number of the last batch's predictions that match `labels`.
    pub fn correct(&self, labels: &[u32]) -> usize {
        let probs = self.probabilities();
        let k = self.classes;
        labels
            .iter()
            .enumerate()
            .filter(|&(i, &l)| {
                let row = &probs[i * k..(i + 1) * k];
                let predicted = if k == 1 {
                    (row[0] > 0.5) as u32
                } else {
                    argmax(row) as u32
                };
                predicted == l
            })
            .count()
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
