//! Seconds per epoch before Train: a few training steps of the design at
//! the setup's batch, timed on this machine on a thread of their own, times
//! the batches an epoch of the chosen dataset has.

use super::RunSetup;
use crate::graph::Graph;
use crate::infer::Analysis;
use crate::train::memory;
use crate::train::{Optimizer, Plan};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Timed steps after one untimed warm-up step; the fastest counts.
const TIMED_STEPS: usize = 2;

/// What a measurement depends on: the design version and the setup's batch and optimizer.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    tab: usize,
    generation: u64,
    batch: usize,
    optimizer: super::OptimizerChoice,
}

/// The step timer of the Run setup.
#[derive(Default)]
pub struct StepTimer {
    key: Option<Key>,
    pending: Option<Receiver<Result<f64, String>>>,
    /// Milliseconds per training step of the design last measured, or why not.
    pub ms_per_step: Option<Result<f64, String>>,
    /// Never measures: the figure stays as set (for stable images in tests).
    fixed: bool,
}

impl StepTimer {
    /// A timer that reports `ms_per_step` and never measures (snapshot
    /// images must not depend on this machine's speed).
    pub fn fixed(ms_per_step: f64) -> Self {
        StepTimer {
            ms_per_step: Some(Ok(ms_per_step)),
            fixed: true,
            ..StepTimer::default()
        }
    }

    /// Measures again when the design, batch or optimizer changed (never
    /// while a run trains: it would slow the run and the figure both).
    pub fn refresh(
        &mut self,
        graph: &Graph,
        analysis: &Analysis,
        (tab, generation): (usize, u64),
        setup: &RunSetup,
        training: bool,
    ) {
        if let Some(rx) = &self.pending {
            match rx.try_recv() {
                Ok(result) => {
                    self.ms_per_step = Some(result);
                    self.pending = None;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.ms_per_step = Some(Err("the step timer ended early".into()));
                    self.pending = None;
                }
            }
        }
        let key = Key {
            tab,
            generation,
            batch: setup.batch_size,
            optimizer: setup.optimizer,
        };
        // One measurement at a time: edits made meanwhile are measured next.
        if training
            || self.fixed
            || self.pending.is_some()
            || self.key.as_ref() == Some(&key)
            || !analysis.is_valid()
        {
            return;
        }
        self.key = Some(key);
        self.ms_per_step = None;
        let (tx, rx) = mpsc::channel();
        let (graph, analysis, setup) = (graph.clone(), analysis.clone(), setup.clone());
        let spawned = std::thread::Builder::new()
            .name("netloom-step-timer".into())
            .spawn(move || {
                let _ = tx.send(time_steps(&graph, &analysis, &setup));
            });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(e) => self.ms_per_step = Some(Err(format!("no timer thread: {e}"))),
        }
    }

    pub fn is_measuring(&self) -> bool {
        self.pending.is_some()
    }

    /// Milliseconds per step measured for this design version, batch and
    /// optimizer (`None` when the figure is of something else or missing).
    pub fn measured_for(&self, (tab, generation): (usize, u64), setup: &RunSetup) -> Option<f64> {
        let key = Key {
            tab,
            generation,
            batch: setup.batch_size,
            optimizer: setup.optimizer,
        };
        match (&self.key, &self.ms_per_step) {
            (Some(k), Some(Ok(ms))) if *k == key && self.pending.is_none() => Some(*ms),
            _ => None,
        }
    }
}

/// The Run setup's estimate a run started with: the progress bar's ETA
/// starts from it and blends into the measured time per batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StartEstimate {
    pub ms_per_step: f64,
    /// Batches an epoch of the chosen dataset has, when known before loading it.
    pub batches_per_epoch: Option<usize>,
}

/// How many measured batches the estimate counts as: after that many the
/// measured time has half the say, after ten times as many nearly all of it.
const ESTIMATE_WEIGHT_IN_BATCHES: f64 = 10.0;

/// The time left of a run of `epochs` epochs: before its first batch, the
/// estimate times the batches to train; after, the trainer's measured time
/// per batch blended with the estimate by their weights (batches measured
/// against [`ESTIMATE_WEIGHT_IN_BATCHES`]). `None`: nothing to go on yet.
pub fn eta(
    estimate: Option<&StartEstimate>,
    progress: Option<&super::Progress>,
    epochs: u64,
) -> Option<Duration> {
    let Some(p) = progress else {
        let e = estimate?;
        let batches = e.batches_per_epoch? as f64 * epochs.max(1) as f64;
        return Some(Duration::from_secs_f64(e.ms_per_step * batches / 1e3));
    };
    let Some(e) = estimate else {
        return Some(p.eta);
    };
    let total = p.epochs.max(1) * p.batches.max(1) as u64;
    let done = (p.epoch.saturating_sub(1) * p.batches as u64 + p.batch as u64).min(total);
    let remaining = (total - done) as f64;
    if remaining == 0.0 {
        return Some(Duration::ZERO);
    }
    let measured = p.eta.as_secs_f64() / remaining;
    let w = done as f64;
    let per_batch = (w * measured + ESTIMATE_WEIGHT_IN_BATCHES * e.ms_per_step / 1e3)
        / (w + ESTIMATE_WEIGHT_IN_BATCHES);
    Some(Duration::from_secs_f64(per_batch * remaining))
}

/// Milliseconds of the fastest of [`TIMED_STEPS`] training steps of
/// `graph` at the setup's batch on synthetic images (after a warm-up step).
pub fn time_steps(graph: &Graph, analysis: &Analysis, setup: &RunSetup) -> Result<f64, String> {
    let batch = setup.batch_size.max(1);
    let optimizer_slots = match setup.optimizer {
        super::OptimizerChoice::Adam => 2,
        _ => 1,
    };
    let estimate = memory::estimate(
        graph,
        analysis,
        batch,
        memory::Purpose::Train { optimizer_slots },
    );
    memory::Budget::new(None)
        .check(&estimate)
        .map_err(|e| e.to_string())?;
    let mut plan = Plan::compile(graph, analysis, batch, setup.seed).map_err(|e| e.to_string())?;
    let config = setup.train_config(graph).optimizer;
    let mut optimizer = Optimizer::new(config, &plan.params);
    let (h, w, c) = plan.input_shape;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let images: Vec<f32> = (0..batch * h * w * c)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let classes = plan.classes.max(2) as u32;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes).collect();
    let mut fastest = f64::INFINITY;
    for step in 0..=TIMED_STEPS {
        let start = Instant::now();
        plan.train_step(&images, &labels, &mut optimizer);
        if step > 0 {
            fastest = fastest.min(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(fastest)
}

/// Training images an epoch of `setup`'s dataset has: what the last run of
/// the same dataset reported, else the image files of an image folder
/// (less the validation share the trainer holds out).
pub fn epoch_images(setup: &RunSetup, last_run_of_same_data: Option<usize>) -> Option<usize> {
    if let Some(n) = last_run_of_same_data {
        return Some(n);
    }
    let dir = setup
        .dataset
        .clone()
        .unwrap_or_else(crate::data::default_dataset_dir);
    let train = dir.join("train");
    let root = if train.is_dir() { train } else { dir };
    let files = image_files_in_class_folders(&root)?;
    let val = crate::train::trainer::DEFAULT_VAL_FRACTION as f64;
    Some(((files as f64) * (1.0 - val)).round() as usize)
}

/// Image files one level down (`root/class/*.png|jpg|jpeg`), or `None` when `root` is no folder.
fn image_files_in_class_folders(root: &Path) -> Option<usize> {
    let mut n = 0;
    for class in std::fs::read_dir(root).ok()?.flatten() {
        let Ok(files) = std::fs::read_dir(class.path()) else {
            continue;
        };
        n += files
            .flatten()
            .filter(|f| {
                f.path().extension().is_some_and(|e| {
                    let e = e.to_string_lossy().to_ascii_lowercase();
                    matches!(e.as_str(), "png" | "jpg" | "jpeg")
                })
            })
            .count();
    }
    (n > 0).then_some(n)
}

/// `~12 s per epoch (35 ms per step × 34 batches)`, or why there is no figure yet.
pub fn estimate_text(timer: &StepTimer, setup: &RunSetup, images: Option<usize>) -> String {
    match &timer.ms_per_step {
        None if timer.is_measuring() => "timing a few steps…".into(),
        None => "- (fix the design's errors first)".into(),
        Some(Err(why)) => format!("- ({why})"),
        Some(Ok(ms)) => match images {
            Some(n) => {
                let batches = n.div_ceil(setup.batch_size.max(1));
                let seconds = ms * batches as f64 / 1e3;
                format!(
                    "~{} per epoch ({ms:.0} ms per step × {batches} batches)",
                    human_seconds(seconds)
                )
            }
            None => format!("{ms:.0} ms per step of {}", setup.batch_size),
        },
    }
}

fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;
    use crate::infer::analyze;

    #[test]
    fn the_estimate_multiplies_the_step_by_the_epochs_batches() {
        let timer = StepTimer {
            ms_per_step: Some(Ok(40.0)),
            ..StepTimer::default()
        };
        let setup = RunSetup::default();
        // 1000 images at batch 32: 32 batches (the last one short).
        assert_eq!(
            estimate_text(&timer, &setup, Some(1000)),
            "~1 s per epoch (40 ms per step × 32 batches)"
        );
        assert_eq!(estimate_text(&timer, &setup, None), "40 ms per step of 32");
        assert_eq!(human_seconds(600.0), "10 min");
    }

    fn progress(epoch: u64, batch: usize, eta_secs: f64) -> super::super::Progress {
        super::super::Progress {
            epoch,
            epochs: 2,
            batch,
            batches: 50,
            images_per_sec: 1.0,
            eta: Duration::from_secs_f64(eta_secs),
        }
    }

    #[test]
    fn the_eta_starts_from_the_estimate_and_blends_into_measured_time() {
        let e = StartEstimate {
            ms_per_step: 100.0,
            batches_per_epoch: Some(50),
        };
        let secs = |d: Option<Duration>| d.expect("an ETA").as_secs_f64();
        // Before the first batch: 2 epochs × 50 batches × 0.1 s.
        assert!((secs(eta(Some(&e), None, 2)) - 10.0).abs() < 1e-9);
        // Unknown batch count and no progress: nothing to say.
        let no_count = StartEstimate {
            batches_per_epoch: None,
            ..e
        };
        assert_eq!(eta(Some(&no_count), None, 2), None);
        // After 10 batches measured at 0.3 s (90 left, trainer says 27 s):
        // equal weights, 0.2 s per batch.
        assert!((secs(eta(Some(&e), Some(&progress(1, 10, 27.0)), 2)) - 18.0).abs() < 1e-9);
        // After 90 of 100 at 0.3 s: (90 × 0.3 + 10 × 0.1) / 100 = 0.28 s for each of the last 10.
        let late = secs(eta(Some(&e), Some(&progress(2, 40, 3.0)), 2));
        assert!((late - 2.8).abs() < 1e-9, "{late}");
        // Without an estimate the trainer's figure stands; at the end, zero.
        assert!((secs(eta(None, Some(&progress(1, 10, 27.0)), 2)) - 27.0).abs() < 1e-9);
        assert_eq!(
            eta(Some(&e), Some(&progress(2, 50, 0.0)), 2),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_figure_counts_only_for_the_design_and_setup_it_measured() {
        let setup = RunSetup::default();
        let timer = StepTimer {
            key: Some(Key {
                tab: 0,
                generation: 3,
                batch: setup.batch_size,
                optimizer: setup.optimizer,
            }),
            pending: None,
            ms_per_step: Some(Ok(12.0)),
            fixed: false,
        };
        assert_eq!(timer.measured_for((0, 3), &setup), Some(12.0));
        assert_eq!(timer.measured_for((0, 4), &setup), None);
        let bigger = RunSetup {
            batch_size: setup.batch_size * 2,
            ..setup.clone()
        };
        assert_eq!(timer.measured_for((0, 3), &bigger), None);
    }

    #[test]
    fn steps_of_a_small_design_are_timed() {
        let g = blocks::resnet_mini();
        let setup = RunSetup {
            batch_size: 2,
            ..RunSetup::default()
        };
        let ms = time_steps(&g, &analyze(&g), &setup).unwrap();
        assert!(ms.is_finite() && ms > 0.0, "{ms}");
    }

    #[test]
    fn the_built_in_set_counts_its_training_images() {
        let n = epoch_images(&RunSetup::default(), None).expect("an image folder");
        assert!(n > 100, "{n}");
        assert_eq!(epoch_images(&RunSetup::default(), Some(7)), Some(7));
    }
}
