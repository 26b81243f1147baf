//! Experiments built on the trainer: the learning-rate range test and
//! parameter sweeps (cost against accuracy). Each runs ordinary training
//! runs through [`Trainer`], so they behave exactly like `netloom train`.

pub mod cli;
mod design_edit;

pub use design_edit::{DesignEditError, add_classifier_head, design_with};

use super::trainer::{Event, RunEnd, TrainConfig, Trainer};
use super::{OptimizerConfig, Schedule};
use crate::infer::{Conventions, analyze};
use serde::Serialize;

/// Why an experiment could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("could not start the trainer: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Trainer(String),
    #[error("{0}")]
    Design(#[from] DesignEditError),
    #[error("the learning-rate range test needs 0 < start < end (got {start:e} and {end:e})")]
    LrRange { start: f32, end: f32 },
    #[error("the learning-rate range test needs at least 5 batches (got {0})")]
    TooFewBatches(usize),
    #[error("the sweep has no values")]
    NoValues,
}

/// Settings of the learning-rate range test (Smith, 2015).
#[derive(Clone, Debug)]
pub struct LrFindOptions {
    pub start_lr: f32,
    pub end_lr: f32,
    /// Batches over which the rate rises exponentially from start to end.
    pub batches: usize,
    /// Stop once the smoothed loss exceeds this multiple of its minimum.
    pub divergence: f32,
}

impl Default for LrFindOptions {
    fn default() -> Self {
        LrFindOptions {
            start_lr: 1e-6,
            end_lr: 1.0,
            batches: 100,
            divergence: 4.0,
        }
    }
}

/// One batch of the range test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LrPoint {
    pub lr: f32,
    pub loss: f32,
    /// Exponential moving average of the loss (0.98, bias-corrected).
    pub smoothed: f32,
}

/// The range test's result.
#[derive(Clone, Debug, Serialize)]
pub struct LrCurve {
    pub points: Vec<LrPoint>,
    /// The rate where the smoothed loss falls fastest before its minimum.
    pub suggested_lr: Option<f32>,
    /// The loss diverged (or turned non-finite) before the last batch.
    pub diverged: bool,
}

/// The per-batch growth factor that takes `start` to `end` in `batches − 1` steps.
fn growth_factor(options: &LrFindOptions) -> f32 {
    let steps = (options.batches - 1) as f64;
    ((options.end_lr as f64 / options.start_lr as f64).powf(1.0 / steps)) as f32
}

/// Trains a copy of `config`'s design with the learning rate rising
/// exponentially and records the loss of every batch. Nothing is saved:
/// `config.save`, `checkpoint` and `resume` are cleared, so the user's
/// weights files and optimizer state are never written.
pub fn lr_find(
    mut config: TrainConfig,
    options: &LrFindOptions,
    mut on_event: impl FnMut(&Event),
) -> Result<LrCurve, ExperimentError> {
    if !(options.start_lr > 0.0 && options.end_lr > options.start_lr) {
        return Err(ExperimentError::LrRange {
            start: options.start_lr,
            end: options.end_lr,
        });
    }
    if options.batches < 5 {
        return Err(ExperimentError::TooFewBatches(options.batches));
    }
    // `Step { every: 1 }` multiplies the rate by `gamma` after every batch.
    config.optimizer = OptimizerConfig {
        learning_rate: options.start_lr,
        schedule: Schedule::Step {
            every: 1,
            gamma: growth_factor(options),
        },
        ..config.optimizer
    };
    config.schedule_in_epochs = false;
    // At least one batch per epoch, so this many epochs always suffice.
    config.epochs = options.batches as u64;
    config.save = None;
    config.checkpoint = None;
    config.resume = None;
    config.precise_bn = false;
    config.autostart = true;
    config.linger = false;

    let trainer = Trainer::spawn(config).map_err(ExperimentError::Spawn)?;
    let mut curve = LrCurve {
        points: Vec::new(),
        suggested_lr: None,
        diverged: false,
    };
    let mut smoother = Smoother::new(0.98);
    let mut best = f32::INFINITY;
    let mut failure = None;
    let mut stopping = false;
    for event in trainer.events() {
        on_event(&event);
        match event {
            Event::Batch { loss, lr, .. } if !stopping => {
                if !loss.is_finite() {
                    curve.diverged = true;
                    stopping = true;
                    trainer.send(super::trainer::Command::Stop);
                    continue;
                }
                let smoothed = smoother.push(loss);
                best = best.min(smoothed);
                curve.points.push(LrPoint { lr, loss, smoothed });
                let diverging = curve.points.len() > 5 && smoothed > options.divergence * best;
                if diverging {
                    curve.diverged = true;
                }
                if diverging || curve.points.len() == options.batches {
                    // Batches already under way are not recorded.
                    stopping = true;
                    trainer.send(super::trainer::Command::Stop);
                }
            }
            Event::Failed(why) => failure = Some(why),
            _ => {}
        }
    }
    let outcome = trainer
        .join()
        .map_err(|e| ExperimentError::Trainer(e.to_string()))?;
    if let RunEnd::Failed(why) = &outcome.end {
        failure.get_or_insert_with(|| why.clone());
    }
    match failure {
        // A rate high enough to make the loss non-finite ends the test.
        Some(_) if curve.points.len() >= 5 => curve.diverged = true,
        Some(why) => return Err(ExperimentError::Trainer(why)),
        None => {}
    }
    curve.suggested_lr = suggest_lr(&curve.points);
    Ok(curve)
}

/// Bias-corrected exponential moving average.
struct Smoother {
    beta: f32,
    average: f32,
    count: i32,
}

impl Smoother {
    fn new(beta: f32) -> Self {
        Smoother {
            beta,
            average: 0.0,
            count: 0,
        }
    }

    fn push(&mut self, value: f32) -> f32 {
        self.count += 1;
        self.average = self.beta * self.average + (1.0 - self.beta) * value;
        self.average / (1.0 - self.beta.powi(self.count))
    }
}

/// The rate where the loss falls fastest against `log10(lr)` before its
/// minimum. Single-batch losses are noisy, so the fall at each point is the
/// least-squares slope of the raw losses over a window of ±⅛ of the points,
/// and the minimum is that of a centred moving average (no lag, unlike the
/// running average used to detect divergence).
pub fn suggest_lr(points: &[LrPoint]) -> Option<f32> {
    let n = points.len();
    if n < 5 {
        return None;
    }
    let x: Vec<f64> = points.iter().map(|p| (p.lr as f64).log10()).collect();
    let y: Vec<f64> = points.iter().map(|p| p.loss as f64).collect();
    let minimum = (0..n)
        .map(|i| (i, window_mean(&y, i, (n / 20).max(1))))
        .min_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    let k = (n / 8).max(2);
    (k..minimum.min(n - k))
        .map(|i| (i, slope(&x[i - k..=i + k], &y[i - k..=i + k])))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, s)| *s < 0.0)
        .map(|(i, _)| points[i].lr)
}

/// Mean of `v` over `i ± half` (clipped at the ends).
fn window_mean(v: &[f64], i: usize, half: usize) -> f64 {
    let w = &v[i.saturating_sub(half)..(i + half + 1).min(v.len())];
    w.iter().sum::<f64>() / w.len() as f64
}

/// Least-squares slope of `y` against `x`.
fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// What a sweep varies.
#[derive(Clone, Debug, PartialEq)]
pub enum SweepTarget {
    /// A numeric parameter of one layer, by node and parameter name as in
    /// the design file (`reduce.filters`, `conv.kernel`).
    Layer {
        node: String,
        param: String,
    },
    BatchSize,
    LearningRate,
}

/// Why a sweep's `--set` (or the designer's sweep fields) describes no sweep.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SweepSpecError {
    #[error("`{0}`: expected NODE.PARAM (e.g. `reduce.filters`), `batch` or `lr`")]
    Target(String),
    #[error("--set `{0}`: expected NODE.PARAM=V1,V2,…")]
    NoValues(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}`: a range needs a step, e.g. `8..64*2` or `8..64+8`")]
    RangeWithoutStep(String),
    #[error("`{text}`: the range does not grow from {start} to {end}")]
    RangeDoesNotGrow { text: String, start: f64, end: f64 },
    #[error("batch sizes must be whole numbers of at least 1")]
    BatchSizes,
}

impl SweepTarget {
    /// Parses `NODE.PARAM`, `batch` or `lr`.
    pub fn parse(text: &str) -> Result<Self, SweepSpecError> {
        match text.trim() {
            "batch" | "batch_size" => Ok(SweepTarget::BatchSize),
            "lr" | "learning_rate" => Ok(SweepTarget::LearningRate),
            other => match other.rsplit_once('.') {
                Some((node, param)) if !node.is_empty() && !param.is_empty() => {
                    Ok(SweepTarget::Layer {
                        node: node.to_string(),
                        param: param.to_string(),
                    })
                }
                _ => Err(SweepSpecError::Target(other.to_string())),
            },
        }
    }

    pub fn label(&self) -> String {
        match self {
            SweepTarget::Layer { node, param } => format!("{node}.{param}"),
            SweepTarget::BatchSize => "batch".into(),
            SweepTarget::LearningRate => "lr".into(),
        }
    }
}

/// One finished run of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRun {
    pub value: f64,
    /// MACs per image of the design as trained (after any head resize).
    pub macs: u64,
    pub params: u64,
    /// Median wall time of a training step.
    pub ms_per_step: f64,
    pub val_acc: Option<f32>,
    pub test_acc: Option<f32>,
    /// No other run has fewer MACs and a higher validation accuracy.
    pub pareto: bool,
}

/// Trains one run per value, one after another, each on its own copy of the
/// design; `make_config` builds the run's configuration from that copy.
pub fn sweep(
    base: &crate::graph::Graph,
    target: &SweepTarget,
    values: &[f64],
    make_config: impl Fn(crate::graph::Graph) -> TrainConfig,
    mut on_event: impl FnMut(f64, &Event),
) -> Result<Vec<SweepRun>, ExperimentError> {
    if values.is_empty() {
        return Err(ExperimentError::NoValues);
    }
    let mut runs = Vec::with_capacity(values.len());
    for &value in values {
        let mut config = match target {
            SweepTarget::Layer { node, param } => {
                make_config(design_with(base, node, param, value)?)
            }
            SweepTarget::BatchSize | SweepTarget::LearningRate => make_config(base.clone()),
        };
        match target {
            SweepTarget::BatchSize => config.batch_size = value as usize,
            SweepTarget::LearningRate => config.optimizer.learning_rate = value as f32,
            SweepTarget::Layer { .. } => {}
        }
        config.autostart = true;
        runs.push(sweep_run(config, value, |e| on_event(value, e))?);
    }
    mark_pareto_front(&mut runs);
    Ok(runs)
}

/// Trains one configuration and measures it.
fn sweep_run(
    config: TrainConfig,
    value: f64,
    mut on_event: impl FnMut(&Event),
) -> Result<SweepRun, ExperimentError> {
    let batch = config.batch_size as f64;
    let trainer = Trainer::spawn(config).map_err(ExperimentError::Spawn)?;
    let mut step_ms = Vec::new();
    for event in trainer.events() {
        on_event(&event);
        if let Event::Batch { images_per_sec, .. } = event
            && images_per_sec > 0.0
        {
            step_ms.push(1000.0 * batch / images_per_sec);
        }
    }
    let outcome = trainer
        .join()
        .map_err(|e| ExperimentError::Trainer(e.to_string()))?;
    if let RunEnd::Failed(why) = outcome.end {
        return Err(ExperimentError::Trainer(format!("value {value}: {why}")));
    }
    let totals = analyze(&outcome.graph).totals(&Conventions::default());
    step_ms.sort_by(f64::total_cmp);
    Ok(SweepRun {
        value,
        macs: totals.macs,
        params: totals.total_params,
        ms_per_step: step_ms.get(step_ms.len() / 2).copied().unwrap_or(0.0),
        val_acc: outcome.history.iter().rev().find_map(|e| e.val_acc),
        test_acc: outcome.test.map(|t| t.test_acc),
        pareto: false,
    })
}

/// One row of a sweep's table as its CSV export writes it (from a headless
/// [`SweepRun`] or a run of the designer's Sweep view).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    pub value: f64,
    pub macs: u64,
    pub params: u64,
    /// `None`: not measured (the run reported no speed).
    pub ms_per_step: Option<f64>,
    pub val_acc: Option<f32>,
    pub test_acc: Option<f32>,
    pub on_front: bool,
}

impl From<&SweepRun> for SweepRow {
    fn from(r: &SweepRun) -> Self {
        SweepRow {
            value: r.value,
            macs: r.macs,
            params: r.params,
            ms_per_step: Some(r.ms_per_step),
            val_acc: r.val_acc,
            test_acc: r.test_acc,
            on_front: r.pareto,
        }
    }
}

/// The header of [`sweep_csv`].
pub const SWEEP_CSV_HEADER: &str =
    "parameter,value,macs,params,ms_per_step,val_acc,test_acc,on_front";

/// A sweep's table as CSV: [`SWEEP_CSV_HEADER`], then one line per run with
/// the swept parameter's name (`label`), accuracies as fractions, and an
/// empty field for a figure the run does not have.
pub fn sweep_csv(label: &str, rows: impl IntoIterator<Item = SweepRow>) -> String {
    let quoted = if label.contains([',', '"', '\n']) {
        format!("\"{}\"", label.replace('"', "\"\""))
    } else {
        label.to_string()
    };
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut out = format!("{SWEEP_CSV_HEADER}\n");
    for r in rows {
        out.push_str(&format!(
            "{quoted},{},{},{},{},{},{},{}\n",
            r.value,
            r.macs,
            r.params,
            opt(r.ms_per_step),
            opt(r.val_acc.map(f64::from)),
            opt(r.test_acc.map(f64::from)),
            r.on_front
        ));
    }
    out
}

/// Marks the runs on the Pareto front of validation accuracy against MACs.
pub fn mark_pareto_front(runs: &mut [SweepRun]) {
    let points: Vec<(u64, Option<f32>)> = runs.iter().map(|r| (r.macs, r.val_acc)).collect();
    for (run, on_front) in runs.iter_mut().zip(pareto_front(&points)) {
        run.pareto = on_front;
    }
}

/// For each `(MACs, accuracy)` point, whether no other point dominates it:
/// none has fewer or equal MACs and a strictly higher accuracy, or fewer
/// MACs and an equal one. A missing accuracy counts as the lowest.
pub fn pareto_front(points: &[(u64, Option<f32>)]) -> Vec<bool> {
    let acc = |a: Option<f32>| a.unwrap_or(f32::NEG_INFINITY);
    points
        .iter()
        .map(|&(macs, a)| {
            !points
                .iter()
                .any(|&(m, b)| (m <= macs && acc(b) > acc(a)) || (m < macs && acc(b) >= acc(a)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_csv_has_a_row_per_run_with_empty_fields_for_missing_figures() {
        let rows = [
            SweepRow {
                value: 8.0,
                macs: 1200,
                params: 34,
                ms_per_step: Some(2.5),
                val_acc: Some(0.5),
                test_acc: None,
                on_front: true,
            },
            SweepRow {
                value: 16.0,
                macs: 2400,
                params: 68,
                ms_per_step: None,
                val_acc: None,
                test_acc: Some(0.25),
                on_front: false,
            },
        ];
        assert_eq!(
            sweep_csv("a,b.filters", rows),
            "parameter,value,macs,params,ms_per_step,val_acc,test_acc,on_front\n\
             \"a,b.filters\",8,1200,34,2.5,0.5,,true\n\
             \"a,b.filters\",16,2400,68,,,0.25,false\n"
        );
    }

    fn run(macs: u64, acc: f32) -> SweepRun {
        SweepRun {
            value: macs as f64,
            macs,
            params: 0,
            ms_per_step: 0.0,
            val_acc: Some(acc),
            test_acc: None,
            pareto: false,
        }
    }

    #[test]
    fn the_pareto_front_keeps_runs_nothing_beats_on_both_cost_and_accuracy() {
        let mut runs = vec![
            run(10, 0.5),
            run(20, 0.7),
            run(30, 0.6),
            run(40, 0.9),
            run(20, 0.7),
        ];
        mark_pareto_front(&mut runs);
        let front: Vec<bool> = runs.iter().map(|r| r.pareto).collect();
        assert_eq!(front, [true, true, false, true, true]);
    }

    #[test]
    fn the_suggestion_is_the_steepest_fall_before_the_minimum() {
        // Loss flat, then falling fastest around lr 1e-3, minimum at 1e-2, then rising.
        let lrs: Vec<f32> = (0..41)
            .map(|i| 10f32.powf(-6.0 + 0.15 * i as f32))
            .collect();
        let points: Vec<LrPoint> = lrs
            .iter()
            .map(|&lr| {
                let x = lr.log10();
                let loss = if x < -2.0 {
                    2.0 - 1.5 / (1.0 + (-(x + 3.0) * 4.0).exp())
                } else {
                    0.5 + (x + 2.0) * 2.0
                };
                LrPoint {
                    lr,
                    loss,
                    smoothed: loss,
                }
            })
            .collect();
        let lr = suggest_lr(&points).expect("a suggestion");
        assert!((lr.log10() + 3.0).abs() < 0.2, "suggested {lr:e}");
    }

    #[test]
    fn growth_factor_reaches_the_end_rate_on_the_last_batch() {
        let o = LrFindOptions {
            start_lr: 1e-5,
            end_lr: 1e-1,
            batches: 50,
            divergence: 4.0,
        };
        let last = o.start_lr as f64 * (growth_factor(&o) as f64).powi(49);
        assert!((last / 1e-1 - 1.0).abs() < 1e-4, "{last}");
    }

    #[test]
    fn targets_parse_from_node_param_batch_and_lr() {
        assert_eq!(
            SweepTarget::parse("reduce.filters"),
            Ok(SweepTarget::Layer {
                node: "reduce".into(),
                param: "filters".into()
            })
        );
        assert_eq!(SweepTarget::parse("batch"), Ok(SweepTarget::BatchSize));
        assert_eq!(SweepTarget::parse("lr"), Ok(SweepTarget::LearningRate));
        assert!(SweepTarget::parse("filters").is_err());
    }
}
