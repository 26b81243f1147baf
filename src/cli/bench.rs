//! `netloom bench`: the resnet-mini training workload timed on this machine,
//! with the machine's own f32 FMA peak measured beside it so efficiency is a
//! ratio from one run, not a figure from elsewhere.

use crate::graph::Graph;
use crate::infer::analyze;
use crate::kernels::KernelSet;
use crate::kernels::misc::SplitMix64;
use crate::train::plan::{GradWrite, Op};
use crate::train::{Mode, Optimizer, OptimizerConfig, OptimizerKind, Plan, Schedule};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub design: String,
    pub batch: usize,
    pub threads: usize,
    /// The kernel set that ran (`avx512`, `avx2`, `neon`, `portable`).
    pub kernels: String,
    pub steps: usize,
    pub train_step_ms: f64,
    pub train_step_ms_min: f64,
    pub forward_ms: f64,
    pub forward_ms_min: f64,
    /// Multiply-adds of one training step: forward, weight gradients, and input gradients where needed.
    pub train_macs: u64,
    pub forward_macs: u64,
    pub train_gflops: f64,
    pub forward_gflops: f64,
    /// f32 FMA throughput of all threads in a register-only loop on the
    /// widest FMA unit this CPU has (whatever kernel set ran).
    pub peak_gflops: f64,
    /// The vector width that peak was measured with.
    pub peak_kernels: String,
    pub train_efficiency: f64,
    pub forward_efficiency: f64,
    pub peak_rss_mb: f64,
    /// Median ms per layer of a training step (forward + backward), slowest first.
    pub layers: Vec<LayerTime>,
    /// Median ms per layer of an evaluation-mode forward pass, slowest first
    /// (fused layers report their time under the first layer of the fusion).
    pub forward_layers: Vec<LayerTime>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    pub name: String,
    pub ms: f64,
    /// Conv/dense layers: GFLOP/s of the work counted for this pass (0 otherwise).
    pub gflops: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Multiply-adds of each step: (forward, training step). A training step
/// counts every conv/dense layer's forward and weight gradient, plus its
/// input gradient when the input needs one; other layers count 0.
fn step_macs(plan: &Plan, graph: &Graph) -> Vec<(u64, u64)> {
    let analysis = analyze(graph);
    let batch = plan.max_batch as u64;
    plan.steps
        .iter()
        .map(|step| {
            if !matches!(step.op, Op::Conv { .. } | Op::Dense { .. }) {
                return (0, 0);
            }
            let macs = analysis.node(step.node).map_or(0, |n| n.cost.macs) * batch;
            let mut train = macs;
            if step.runs_backward && !step.frozen {
                train += macs;
            }
            if step.grad_writes.iter().any(|w| *w != GradWrite::Skip) {
                train += macs;
            }
            (macs, train)
        })
        .collect()
}

/// Peak resident memory of this process in MB (Linux), 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// f32 FMA throughput of every rayon thread running independent FMA chains
/// on the widest vector unit of `set`.
pub fn fma_peak_gflops(set: KernelSet) -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let iters = 20_000_000u64;
    let start = Instant::now();
    let flops: f64 = (0..threads)
        .into_par_iter()
        .map(|t| fma_chains(set, iters, t as f32))
        .sum();
    flops / start.elapsed().as_secs_f64() / 1e9
}

fn fma_chains(set: KernelSet, iters: u64, seed: f32) -> f64 {
    assert!(set.supported(), "fma_chains: {set} not supported");
    match set {
        // SAFETY (each arm): the set's features were detected.
        #[cfg(target_arch = "x86_64")]
        KernelSet::Avx512 => unsafe { fma_chains_avx512(iters, seed) },
        #[cfg(target_arch = "x86_64")]
        KernelSet::Avx2 => unsafe { fma_chains_avx2(iters, seed) },
        #[cfg(target_arch = "aarch64")]
        KernelSet::Neon => unsafe { fma_chains_neon(iters, seed) },
        _ => fma_chains_portable(iters, seed),
    }
}

fn fma_chains_portable(iters: u64, seed: f32) -> f64 {
    let mut acc = [seed; 32];
    for _ in 0..iters / 8 {
        for a in &mut acc {
            *a = *a * 0.999_999 + 1e-7;
        }
    }
    std::hint::black_box(acc);
    (iters / 8) as f64 * 32.0 * 2.0
}

/// 12 independent 16-wide FMA chains: enough in flight to cover the FMA
/// latency on two 512-bit pipes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(iters: u64, seed: f32) -> f64 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(seed); 12];
    let rounds = iters / 12;
    for _ in 0..rounds {
        for v in &mut acc {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    std::hint::black_box(&acc);
    rounds as f64 * 12.0 * 16.0 * 2.0
}

/// 12 independent 8-wide FMA chains: enough in flight to cover FMA latency on two pipes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iters: u64, seed: f32) -> f64 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(seed); 12];
    let rounds = iters / 12;
    for _ in 0..rounds {
        for v in &mut acc {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    std::hint::black_box(&acc);
    rounds as f64 * 12.0 * 8.0 * 2.0
}

/// 24 independent 4-wide FMA chains: four FMA pipes of latency 4 (Apple
/// M-series, Neoverse V) need 16 in flight.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn fma_chains_neon(iters: u64, seed: f32) -> f64 {
    use std::arch::aarch64::*;
    let a = vdupq_n_f32(0.999_999);
    let b = vdupq_n_f32(1e-7);
    let mut acc = [vdupq_n_f32(seed); 24];
    let rounds = iters / 12;
    for _ in 0..rounds {
        for v in &mut acc {
            *v = vfmaq_f32(b, *v, a);
        }
    }
    std::hint::black_box(&acc);
    rounds as f64 * 24.0 * 4.0 * 2.0
}

/// Median ms of each step over the timed runs, slowest first, with the
/// GFLOP/s of its `macs`.
fn layer_medians(plan: &Plan, per_layer: &mut [Vec<f64>], macs: &[u64]) -> Vec<LayerTime> {
    let mut layers: Vec<LayerTime> = plan
        .steps
        .iter()
        .zip(per_layer.iter_mut())
        .zip(macs)
        .map(|((s, t), &m)| {
            let ms = median(t);
            LayerTime {
                name: s.name.clone(),
                ms,
                gflops: if ms > 0.0 {
                    2.0 * m as f64 / (ms * 1e6)
                } else {
                    0.0
                },
            }
        })
        .collect();
    layers.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    layers
}

/// Why a benchmark did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the design has errors: {0}")]
    InvalidDesign(String),
    #[error("benchmarking `{design}` {source}")]
    OverBudget {
        design: String,
        source: crate::train::memory::MemoryError,
    },
    #[error(transparent)]
    Compile(#[from] crate::train::CompileError),
    #[error("loss became {0} during the benchmark")]
    NonFiniteLoss(f32),
}

/// Refuses a benchmark whose plan would not fit the memory budget `limit`
/// (or whose design has errors, naming the layer); else the bytes it needs.
pub fn check_memory(graph: &Graph, batch: usize, limit: Option<u64>) -> Result<u64, BenchError> {
    use crate::train::memory::{Budget, Purpose, estimate};
    let analysis = analyze(graph);
    if !analysis.is_valid() {
        return Err(BenchError::InvalidDesign(analysis.error_summary(graph, 3)));
    }
    // The benchmark trains with SGD and momentum: one state tensor per parameter.
    let e = estimate(
        graph,
        &analysis,
        batch,
        Purpose::Train { optimizer_slots: 1 },
    );
    Budget::new(limit)
        .check(&e)
        .map_err(|source| BenchError::OverBudget {
            design: graph.name.clone(),
            source,
        })?;
    Ok(e.total())
}

/// Times `steps` training steps (after warm-up) and as many forward passes.
pub fn run(
    graph: &Graph,
    batch: usize,
    steps: usize,
    seed: u64,
) -> Result<BenchReport, BenchError> {
    let analysis = analyze(graph);
    let mut plan = Plan::compile(graph, &analysis, batch, seed)?;
    let (h, w, c) = plan.input_shape;
    let mut rng = SplitMix64::new(seed);
    let images: Vec<f32> = (0..batch * h * w * c).map(|_| rng.next_f32()).collect();
    let classes = plan.classes.max(2) as u64;
    let labels: Vec<u32> = (0..batch)
        .map(|_| (rng.next_u64() % classes) as u32)
        .collect();
    let mut opt = Optimizer::try_new(
        OptimizerConfig {
            kind: OptimizerKind::sgd_momentum(),
            learning_rate: 0.01,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
        },
        &plan.params,
    )?;
    for _ in 0..3 {
        plan.train_step(&images, &labels, &mut opt);
    }
    let n_steps = plan.steps.len();
    let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); n_steps];
    let mut train_ms = Vec::with_capacity(steps);
    for _ in 0..steps {
        plan.step_nanos.iter_mut().for_each(|t| *t = 0);
        let start = Instant::now();
        let loss = plan.train_step(&images, &labels, &mut opt);
        train_ms.push(start.elapsed().as_secs_f64() * 1e3);
        if !loss.is_finite() {
            return Err(BenchError::NonFiniteLoss(loss));
        }
        for (acc, &ns) in per_layer.iter_mut().zip(&plan.step_nanos) {
            acc.push(ns as f64 / 1e6);
        }
    }
    let mut forward_ms = Vec::with_capacity(steps);
    let mut per_layer_fwd: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); n_steps];
    for _ in 0..steps {
        plan.step_nanos.iter_mut().for_each(|t| *t = 0);
        let start = Instant::now();
        plan.forward(&images, Mode::Eval);
        forward_ms.push(start.elapsed().as_secs_f64() * 1e3);
        for (acc, &ns) in per_layer_fwd.iter_mut().zip(&plan.step_nanos) {
            acc.push(ns as f64 / 1e6);
        }
    }
    let macs = step_macs(&plan, graph);
    let forward_macs = macs.iter().map(|m| m.0).sum::<u64>();
    let train_macs = macs.iter().map(|m| m.1).sum::<u64>();
    let train_step = median(&mut train_ms);
    let forward = median(&mut forward_ms);
    let peak_set = KernelSet::best();
    let peak = fma_peak_gflops(peak_set);
    let train_gflops = 2.0 * train_macs as f64 / (train_step * 1e-3) / 1e9;
    let forward_gflops = 2.0 * forward_macs as f64 / (forward * 1e-3) / 1e9;
    let train_layer_macs: Vec<u64> = macs.iter().map(|m| m.1).collect();
    let forward_layer_macs: Vec<u64> = macs.iter().map(|m| m.0).collect();
    let layers = layer_medians(&plan, &mut per_layer, &train_layer_macs);
    let forward_layers = layer_medians(&plan, &mut per_layer_fwd, &forward_layer_macs);
    Ok(BenchReport {
        design: graph.name.clone(),
        batch,
        threads: rayon::current_num_threads(),
        kernels: crate::kernels::isa::active().name().to_string(),
        steps,
        train_step_ms: train_step,
        train_step_ms_min: train_ms[0],
        forward_ms: forward,
        forward_ms_min: forward_ms[0],
        train_macs,
        forward_macs,
        train_gflops,
        forward_gflops,
        peak_gflops: peak,
        peak_kernels: peak_set.name().to_string(),
        train_efficiency: train_gflops / peak,
        forward_efficiency: forward_gflops / peak,
        peak_rss_mb: peak_rss_mb(),
        layers,
        forward_layers,
    })
}
