//! Optimizers and learning-rate schedules. State is keyed by parameter index
//! in the plan, so a plan and its optimizer always travel together.

use super::plan::{CompileError, ParamRole, ParamTensor, zeroed};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with (optionally Nesterov) momentum; momentum 0 is plain SGD.
    Sgd { momentum: f32, nesterov: bool },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

impl OptimizerKind {
    pub fn sgd_momentum() -> Self {
        OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        }
    }

    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { nesterov: true, .. } => "SGD (Nesterov)",
            OptimizerKind::Sgd { .. } => "SGD",
            OptimizerKind::Adam { .. } => "Adam",
        }
    }
}

/// Learning rate as a function of the step number.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `every` steps.
    Step {
        every: u64,
        gamma: f32,
    },
    /// Cosine decay from the base rate to `base·min_factor` over `total` steps.
    Cosine {
        total: u64,
        min_factor: f32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub learning_rate: f32,
    /// L2 penalty on conv and dense weights (not biases or BatchNorm), added to the gradient.
    pub weight_decay: f32,
    pub schedule: Schedule,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::adam(),
            learning_rate: 1e-3,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
        }
    }
}

impl OptimizerConfig {
    pub fn learning_rate_at(&self, step: u64) -> f32 {
        let base = self.learning_rate;
        match self.schedule {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                base * gamma.powi((step / every.max(1)).min(i32::MAX as u64) as i32)
            }
            Schedule::Cosine { total, min_factor } => {
                let t = (step as f64 / total.max(1) as f64).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
                base * (min_factor + (1.0 - min_factor) * cos as f32)
            }
        }
    }
}

/// An optimizer with its per-parameter state.
pub struct Optimizer {
    pub config: OptimizerConfig,
    /// First and second moments (momentum buffer / Adam m, v) per parameter.
    state: Vec<(Vec<f32>, Vec<f32>)>,
    pub step: u64,
}

impl Optimizer {
    /// The optimizer with its state allocated as [`Optimizer::try_new`]
    /// does (small plans, tests); runs use `try_new`.
    ///
    /// # Panics
    /// When the system cannot give the state's memory.
    pub fn new(config: OptimizerConfig, params: &[ParamTensor]) -> Self {
        Self::try_new(config, params).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The optimizer, its state (momentum / Adam moments per trainable
    /// tensor) allocated fallibly: memory the system cannot give is an error
    /// naming the tensor.
    pub fn try_new(config: OptimizerConfig, params: &[ParamTensor]) -> Result<Self, CompileError> {
        let state = params
            .iter()
            .map(|p| {
                if !p.is_trainable() {
                    return Ok((Vec::new(), Vec::new()));
                }
                let len = p.data.len();
                let what = || format!("optimizer state of `{}`", p.name);
                let second = match config.kind {
                    OptimizerKind::Adam { .. } => zeroed(what, len)?,
                    OptimizerKind::Sgd { .. } => Vec::new(),
                };
                Ok((zeroed(what, len)?, second))
            })
            .collect::<Result<_, CompileError>>()?;
        Ok(Optimizer {
            config,
            state,
            step: 0,
        })
    }

    /// Per-parameter state (momentum buffer / Adam `m`, and Adam `v`),
    /// aligned with the plan's parameters; empty for untrained tensors.
    /// Checkpoints save and restore it so a resumed run continues exactly.
    pub fn moments(&self) -> &[(Vec<f32>, Vec<f32>)] {
        &self.state
    }

    pub fn moments_mut(&mut self) -> &mut [(Vec<f32>, Vec<f32>)] {
        &mut self.state
    }

    pub fn learning_rate(&self) -> f32 {
        self.config.learning_rate_at(self.step)
    }

    /// One update of every trainable parameter from its gradient.
    pub fn update(&mut self, params: &mut [ParamTensor]) {
        let lr = self.learning_rate();
        self.step += 1;
        let t = self.step as i32;
        let wd = self.config.weight_decay;
        for (p, (m, v)) in params.iter_mut().zip(&mut self.state) {
            if !p.is_trainable() || m.is_empty() {
                continue;
            }
            let decay = if p.role == ParamRole::Weight { wd } else { 0.0 };
            match self.config.kind {
                OptimizerKind::Sgd { momentum, nesterov } => {
                    for ((w, &g), m) in p.data.iter_mut().zip(&p.grad).zip(m.iter_mut()) {
                        let g = g + decay * *w;
                        *m = momentum * *m + g;
                        let step = if nesterov { g + momentum * *m } else { *m };
                        *w -= lr * step;
                    }
                }
                OptimizerKind::Adam {
                    beta1,
                    beta2,
                    epsilon,
                } => {
                    let c1 = 1.0 - beta1.powi(t);
                    let c2 = 1.0 - beta2.powi(t);
                    let step_size = lr * c2.sqrt() / c1;
                    for (((w, &g), m), v) in p
                        .data
                        .iter_mut()
                        .zip(&p.grad)
                        .zip(m.iter_mut())
                        .zip(v.iter_mut())
                    {
                        let g = g + decay * *w;
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= step_size * *m / (v.sqrt() + epsilon);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(value: f32) -> ParamTensor {
        ParamTensor {
            name: "w.weight".into(),
            layer: "w".into(),
            role: ParamRole::Weight,
            shape: vec![1, 1],
            data: vec![value],
            grad: vec![0.0],
            frozen: false,
        }
    }

    /// Minimises (w − 3)² and checks each optimizer gets there.
    fn minimise(kind: OptimizerKind, lr: f32) -> f32 {
        let mut params = vec![param(0.0)];
        let mut opt = Optimizer::new(
            OptimizerConfig {
                kind,
                learning_rate: lr,
                weight_decay: 0.0,
                schedule: Schedule::Constant,
            },
            &params,
        );
        for _ in 0..500 {
            params[0].grad[0] = 2.0 * (params[0].data[0] - 3.0);
            opt.update(&mut params);
        }
        params[0].data[0]
    }

    #[test]
    fn every_optimizer_converges_on_a_quadratic() {
        assert!((minimise(OptimizerKind::sgd_momentum(), 0.01) - 3.0).abs() < 1e-3);
        let nesterov = OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: true,
        };
        assert!((minimise(nesterov, 0.01) - 3.0).abs() < 1e-3);
        assert!((minimise(OptimizerKind::adam(), 0.05) - 3.0).abs() < 1e-2);
    }

    #[test]
    fn sgd_first_step_is_lr_times_gradient() {
        let mut params = vec![param(1.0)];
        let mut opt = Optimizer::new(
            OptimizerConfig {
                kind: OptimizerKind::sgd_momentum(),
                learning_rate: 0.1,
                weight_decay: 0.5,
                schedule: Schedule::Constant,
            },
            &params,
        );
        params[0].grad[0] = 2.0;
        opt.update(&mut params);
        // g = 2 + 0.5·1 = 2.5; w = 1 − 0.1·2.5
        assert!((params[0].data[0] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn schedules() {
        let mut c = OptimizerConfig {
            learning_rate: 0.1,
            schedule: Schedule::Step {
                every: 10,
                gamma: 0.5,
            },
            ..Default::default()
        };
        assert_eq!(c.learning_rate_at(9), 0.1);
        assert!((c.learning_rate_at(10) - 0.05).abs() < 1e-7);
        c.schedule = Schedule::Cosine {
            total: 100,
            min_factor: 0.0,
        };
        assert!((c.learning_rate_at(0) - 0.1).abs() < 1e-7);
        assert!((c.learning_rate_at(50) - 0.05).abs() < 1e-6);
        assert!(c.learning_rate_at(100).abs() < 1e-7);
    }

    #[test]
    fn frozen_params_are_untouched() {
        let mut params = vec![param(1.0)];
        params[0].frozen = true;
        let mut opt = Optimizer::new(OptimizerConfig::default(), &params);
        params[0].grad[0] = 5.0;
        opt.update(&mut params);
        assert_eq!(params[0].data[0], 1.0);
    }
}
