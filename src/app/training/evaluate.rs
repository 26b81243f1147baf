//! The course's evaluation tricks from the Runs tab: a finished run
//! evaluated with ten views per image (multi-crop), and the softmax of
//! several runs of one design averaged (an ensemble), each beside the
//! single-model, single-view accuracy measured in the same pass.
//!
//! The work runs on the named thread `netloom-eval` with the library's
//! evaluator (`train::eval`, as `netloom eval` uses it): the run's weights
//! file is loaded into its design, the run's test split is read again the
//! way the trainer split it (seed and validation fraction from the file),
//! and the test images go through in small chunks so progress shows and
//! Cancel takes effect between chunks.

use super::RunRecord;
use crate::data::{self, ChannelStats, Dataset, LoadOptions};
use crate::graph::Graph;
use crate::train::eval::{self, EvalOptions, Evaluation};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};

const THREAD_NAME: &str = "netloom-eval";

/// Test images per chunk (progress and Cancel act between chunks).
const CHUNK: usize = 16;

/// What the Runs tab asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalRequest {
    /// Evaluate run `0` (its id) with ten views per image.
    MultiCrop(usize),
    /// Average the softmax of the picked runs (one design); `multi_crop`:
    /// ten views per image for every member.
    Ensemble { multi_crop: bool },
    /// Pick run `run` for the ensemble, or unpick it.
    Pick { run: usize, on: bool },
    /// Stop the evaluation in progress.
    Cancel,
}

/// What an evaluation evaluates.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalTarget {
    MultiCrop(usize),
    Ensemble { runs: Vec<usize>, multi_crop: bool },
}

impl EvalTarget {
    pub fn describe(&self) -> String {
        match self {
            EvalTarget::MultiCrop(id) => format!("run #{id} with 10 views per image"),
            EvalTarget::Ensemble { runs, multi_crop } => format!(
                "the ensemble of {}{}",
                run_list(runs),
                if *multi_crop {
                    " with 10 views per image"
                } else {
                    ""
                }
            ),
        }
    }
}

/// `#1 + #2 + #3`.
pub fn run_list(runs: &[usize]) -> String {
    runs.iter()
        .map(|r| format!("#{r}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Why an evaluation could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EvalJobError {
    #[error("An evaluation is already running: wait for it or cancel it first.")]
    Busy,
    #[error("There is no run #{0} in this session.")]
    NoSuchRun(usize),
    #[error("Run #{0} has no saved weights to evaluate: evaluate a run once it has finished.")]
    NotFinished(usize),
    #[error("An ensemble averages at least two runs: pick them in the Ensemble column.")]
    TooFewRuns,
    #[error("An ensemble averages runs of one design, but {first} and {other} differ.")]
    MixedDesigns { first: String, other: String },
    #[error("Could not load run #{run}'s weights: {source}")]
    Model {
        run: usize,
        #[source]
        source: eval::EvalError,
    },
    #[error("Could not read the design's input size: {0}")]
    Input(#[from] crate::train::prepare::PrepareError),
    #[error("Could not read the test images from {}: {source}", path.display())]
    Data {
        path: PathBuf,
        #[source]
        source: data::DataError,
    },
    #[error("{} has no test split to evaluate on.", path.display())]
    NoTestSplit { path: PathBuf },
    #[error("Run #{run} was trained on classes {trained:?}, but the dataset now has {found:?}.")]
    Classes {
        run: usize,
        trained: Vec<String>,
        found: Vec<String>,
    },
    #[error("Could not start the evaluation thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("The evaluation thread ended without an answer.")]
    Ended,
    #[error("Cancelled.")]
    Cancelled,
}

/// One member of an evaluation: a run's design and final weights.
struct Member {
    run: usize,
    graph: Graph,
    weights: PathBuf,
}

/// What an evaluation found.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalAnswer {
    /// Multi-crop of one model, or the ensemble.
    pub combined: Evaluation,
    /// Each member alone with one view per image, on the same images.
    pub single: Vec<(usize, Evaluation)>,
}

/// The result of a multi-crop evaluation, kept on its run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiCropResult {
    pub accuracy: f32,
    /// One view per image, same weights, same images.
    pub single: f32,
    pub views: usize,
    pub images: usize,
}

/// The result of an ensemble evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleResult {
    pub runs: Vec<usize>,
    pub design: String,
    pub accuracy: f32,
    pub views: usize,
    pub images: usize,
    /// Each member alone, one view per image: `(run, accuracy)`.
    pub single: Vec<(usize, f32)>,
}

impl EnsembleResult {
    /// The line the Runs tab shows.
    pub fn line(&self) -> String {
        let singles: Vec<String> = self
            .single
            .iter()
            .map(|(r, a)| format!("#{r} {:.2}%", 100.0 * a))
            .collect();
        format!(
            "Ensemble {} ({}, {} view{}): {:.2}% on {} test images · single models: {}",
            run_list(&self.runs),
            self.design,
            self.views,
            if self.views == 1 { "" } else { "s" },
            100.0 * self.accuracy,
            self.images,
            singles.join(", ")
        )
    }
}

/// An evaluation in progress on its thread.
pub struct EvalJob {
    pub target: EvalTarget,
    /// Units of work done and in all (images × views × models).
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    /// What the thread is doing before the images go through.
    stage: Arc<Mutex<String>>,
    cancel: Arc<AtomicBool>,
    rx: Receiver<Result<EvalAnswer, EvalJobError>>,
}

impl EvalJob {
    /// The fraction done (0 until the test images are read).
    pub fn fraction(&self) -> f32 {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        (self.done.load(Ordering::Relaxed) as f32 / total as f32).clamp(0.0, 1.0)
    }

    pub fn stage(&self) -> String {
        self.stage.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The answer, once it has come.
    pub fn poll(&self) -> Option<Result<EvalAnswer, EvalJobError>> {
        match self.rx.try_recv() {
            Ok(answer) => Some(answer),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(EvalJobError::Ended)),
        }
    }
}

/// The member for run `id`: its design and saved weights.
fn member(runs: &[RunRecord], id: usize) -> Result<Member, EvalJobError> {
    let run = runs
        .iter()
        .find(|r| r.id == id)
        .ok_or(EvalJobError::NoSuchRun(id))?;
    let weights = run
        .weights
        .clone()
        .filter(|w| w.is_file())
        .ok_or(EvalJobError::NotFinished(id))?;
    let graph = run.graph.clone().ok_or(EvalJobError::NotFinished(id))?;
    Ok(Member {
        run: id,
        graph: (*graph).clone(),
        weights,
    })
}

/// Whether runs `a` and `b` trained the same design (name, MACs and parameters).
pub fn same_design(a: &RunRecord, b: &RunRecord) -> bool {
    a.design == b.design && a.macs == b.macs && a.params == b.params
}

/// Starts evaluating `target` on a thread; `repaint` is asked for a new
/// frame whenever progress is made.
pub fn start(
    runs: &[RunRecord],
    target: EvalTarget,
    repaint: Option<egui::Context>,
) -> Result<EvalJob, EvalJobError> {
    let ids = match &target {
        EvalTarget::MultiCrop(id) => vec![*id],
        EvalTarget::Ensemble { runs: ids, .. } => {
            if ids.len() < 2 {
                return Err(EvalJobError::TooFewRuns);
            }
            ids.clone()
        }
    };
    let members = ids
        .iter()
        .map(|&id| member(runs, id))
        .collect::<Result<Vec<_>, _>>()?;
    if let [first, rest @ ..] = &ids[..] {
        let find = |id: usize| runs.iter().find(|r| r.id == id);
        if let Some(a) = find(*first) {
            for b in rest.iter().filter_map(|&id| find(id)) {
                if !same_design(a, b) {
                    return Err(EvalJobError::MixedDesigns {
                        first: a.label(),
                        other: b.label(),
                    });
                }
            }
        }
    }
    let dataset = runs
        .iter()
        .find(|r| Some(r.id) == ids.first().copied())
        .and_then(|r| r.setup.dataset.clone())
        .unwrap_or_else(data::default_dataset_dir);
    let multi_crop = match &target {
        EvalTarget::MultiCrop(_) => true,
        EvalTarget::Ensemble { multi_crop, .. } => *multi_crop,
    };
    let (tx, rx) = mpsc::channel();
    let job = EvalJob {
        target,
        done: Arc::default(),
        total: Arc::default(),
        stage: Arc::new(Mutex::new("loading the weights".into())),
        cancel: Arc::default(),
        rx,
    };
    let shared = Shared {
        done: Arc::clone(&job.done),
        total: Arc::clone(&job.total),
        stage: Arc::clone(&job.stage),
        cancel: Arc::clone(&job.cancel),
        repaint,
    };
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            let answer = run(&members, &dataset, multi_crop, &shared);
            let _ = tx.send(answer);
            shared.repaint();
        })
        .map_err(EvalJobError::Thread)?;
    Ok(job)
}

/// What the thread shares with the UI.
struct Shared {
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    stage: Arc<Mutex<String>>,
    cancel: Arc<AtomicBool>,
    repaint: Option<egui::Context>,
}

impl Shared {
    fn repaint(&self) {
        if let Some(ctx) = &self.repaint {
            ctx.request_repaint();
        }
    }

    fn stage(&self, text: &str) {
        if let Ok(mut s) = self.stage.lock() {
            *s = text.into();
        }
        self.repaint();
    }

    fn cancelled(&self) -> Result<(), EvalJobError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(EvalJobError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Probabilities summed over chunks, one buffer per model.
struct Sums {
    single: Vec<Vec<f32>>,
    multi: Vec<Vec<f32>>,
}

/// The evaluation itself (on the thread).
fn run(
    members: &[Member],
    dataset: &std::path::Path,
    multi_crop: bool,
    shared: &Shared,
) -> Result<EvalAnswer, EvalJobError> {
    // Ten views of a few images per forward pass.
    const MAX_BATCH: usize = 40;
    let mut models = Vec::with_capacity(members.len());
    for m in members {
        shared.cancelled()?;
        let model = eval::load_model(&m.graph, &m.weights, MAX_BATCH)
            .map_err(|source| EvalJobError::Model { run: m.run, source })?;
        models.push(model);
    }
    let Some(first) = models.first() else {
        return Err(EvalJobError::TooFewRuns);
    };
    let meta = first.meta.clone();
    shared.stage("reading the test images");
    let (h, w, c) = crate::train::prepare::input_hwc(&members[0].graph)?;
    let opts = LoadOptions {
        val_fraction: meta.val_fraction,
        seed: meta.seed,
        ..LoadOptions::for_input(h, w, c)
    };
    let splits =
        data::load(dataset, &opts, &mut |_, _| {}).map_err(|source| EvalJobError::Data {
            path: dataset.to_path_buf(),
            source,
        })?;
    for (m, model) in members.iter().zip(&models) {
        if !model.meta.classes.is_empty() && model.meta.classes != splits.class_names() {
            return Err(EvalJobError::Classes {
                run: m.run,
                trained: model.meta.classes.clone(),
                found: splits.class_names().to_vec(),
            });
        }
    }
    let stats = meta.stats().unwrap_or_else(|| splits.train.channel_stats());
    let test = splits.test.ok_or_else(|| EvalJobError::NoTestSplit {
        path: dataset.to_path_buf(),
    })?;
    shared.cancelled()?;
    shared.stage("evaluating");
    let mut plans: Vec<_> = models.into_iter().map(|m| m.plan).collect();
    let sums = predict_in_chunks(&mut plans, &test, &stats, multi_crop, shared)?;
    let single: Vec<(usize, Evaluation)> = members
        .iter()
        .zip(&sums.single)
        .map(|(m, p)| (m.run, eval::summarise(p, &test.labels, &test.class_names)))
        .collect();
    let per_model = if multi_crop {
        &sums.multi
    } else {
        &sums.single
    };
    let mut mean = vec![0.0f32; per_model.first().map_or(0, Vec::len)];
    for p in per_model {
        for (s, v) in mean.iter_mut().zip(p) {
            *s += v / per_model.len() as f32;
        }
    }
    let mut combined = eval::summarise(&mean, &test.labels, &test.class_names);
    combined.views = if multi_crop { 10 } else { 1 };
    combined.models = plans.len();
    Ok(EvalAnswer { combined, single })
}

/// Each model's probabilities of `test`, one view and (if asked) ten,
/// [`CHUNK`] images at a time with progress and Cancel between chunks.
fn predict_in_chunks(
    plans: &mut [crate::train::Plan],
    test: &Dataset,
    stats: &ChannelStats,
    multi_crop: bool,
    shared: &Shared,
) -> Result<Sums, EvalJobError> {
    let one = EvalOptions::default();
    let ten = EvalOptions {
        multi_crop: true,
        ..EvalOptions::default()
    };
    let views = if multi_crop { 11 } else { 1 };
    shared
        .total
        .store(test.len() * views * plans.len(), Ordering::Relaxed);
    let mut sums = Sums {
        single: vec![Vec::with_capacity(test.len() * 2); plans.len()],
        multi: vec![Vec::new(); plans.len()],
    };
    let indices: Vec<usize> = (0..test.len()).collect();
    for chunk in indices.chunks(CHUNK) {
        let part = test.subset(chunk);
        for (i, plan) in plans.iter_mut().enumerate() {
            shared.cancelled()?;
            sums.single[i].extend(eval::predict(plan, &part, stats, &one));
            if multi_crop {
                sums.multi[i].extend(eval::predict(plan, &part, stats, &ten));
            }
            shared
                .done
                .fetch_add(chunk.len() * views, Ordering::Relaxed);
            shared.repaint();
        }
    }
    Ok(sums)
}
