//! Compiled plans, autodiff, optimizers and the trainer thread.
