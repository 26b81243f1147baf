//! The training thread: [`Trainer::spawn`] starts a named thread that loads
//! the data, compiles the design and trains it, controlled by [`Command`]s
//! and reporting [`Event`]s over unbounded channels (the trainer never waits
//! on a slow reader). The GUI and the `netloom train` CLI drive the very same
//! API.
//!
//! ```no_run
//! use netloom::train::trainer::{Command, DataSource, Event, TrainConfig, Trainer};
//! let graph = netloom::graph::file::load(&netloom::default_design_path()).unwrap();
//! let mut config = TrainConfig::new(graph, DataSource::Path(netloom::data::default_dataset_dir()));
//! config.epochs = 2;
//! let trainer = Trainer::spawn(config).unwrap();
//! trainer.send(Command::Start);
//! for event in trainer.events() {
//!     if let Event::Epoch(e) = &event { println!("epoch {} val acc {:?}", e.epoch, e.val_acc); }
//! }
//! let outcome = trainer.join().unwrap();
//! ```

use super::eval;
use super::feed::{ActivationCache, Feed, bn_stat_params, recompute_bn_stats};
use super::gradcam::{self, GradCam, GradCamMaps, GradCamRequest};
use super::memory;
use super::plan::{ParamTensor, Plan, step_param_indices};
use super::prepare::{apply_freeze, fit_output, input_hwc};
use super::weights::{self, EMA_PREFIX, OPTIMIZER_PREFIX, WeightsMeta};
use super::{Mode, Optimizer, OptimizerConfig, Schedule};
use crate::data::{
    self, AugmentConfig, Augmenter, BatchConfig, ChannelStats, Dataset, LoadOptions, Prefetcher,
    Splits,
};
use crate::graph::Graph;
use crate::infer::{Analysis, Shape, analyze};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Name of the training thread.
/// Kept here too so `trainer::layers_through` callers keep working; the
/// design-preparation steps live in [`super::prepare`].
pub use super::prepare::layers_through;

/// Why a run could not start or go on. Its text is what `Event::Failed`
/// and `RunEnd::Failed` carry to the user.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The design or the settings cannot be trained, said in words
    /// (no single input, an output that cannot fit the classes, batch 0, …).
    #[error("{0}")]
    Refused(String),
    #[error("batch size must be at least 1")]
    ZeroBatch,
    #[error("the training split has no images")]
    NoTrainingImages,
    /// The prefetching thread stopped before the epoch's last batch.
    #[error("the batch thread ended early")]
    BatchThreadEnded,
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    #[error(transparent)]
    Compile(#[from] super::CompileError),
    #[error(transparent)]
    Prepare(#[from] super::prepare::PrepareError),
    /// The plan would not fit the memory budget.
    #[error("training `{design}` {source}")]
    Memory {
        design: String,
        source: memory::MemoryError,
    },
    /// The loss or a parameter stopped being finite (the message names the
    /// batch, the layer and what was rolled back).
    #[error("{0}")]
    Diverged(String),
    /// Reading or writing the cached activations of the frozen prefix.
    #[error("activation cache: {0}")]
    Cache(#[from] std::io::Error),
    /// The final weights could not be written where they were asked for.
    #[error(transparent)]
    Save(Box<SaveError>),
}

impl From<SaveError> for TrainError {
    fn from(e: SaveError) -> Self {
        TrainError::Save(Box::new(e))
    }
}

/// Why [`Command::Probe`] got no feature maps.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` has no output in the trained network")]
    UnknownLayer(String),
    #[error("image {image} does not exist: the split has {images} images")]
    NoSuchImage { image: usize, images: usize },
    #[error("`{0}` has no known output shape")]
    NoShape(String),
    #[error("`{node}` produced {values} values for a {h}×{w}×{c} output")]
    WrongSize {
        node: String,
        values: usize,
        h: usize,
        w: usize,
        c: usize,
    },
    /// Reading the image's cached activations (the I/O error's text).
    #[error("activation cache: {0}")]
    Cache(String),
}

/// Why [`TrainerHandle::join`] has no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the trainer thread panicked")]
    Panicked,
    #[error("already joined")]
    AlreadyJoined,
}

/// Where the final weights went when `--save` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("could not save the weights to {} ({source}); they were saved to {} instead", path.display(), fallback.display())]
    SavedElsewhere {
        path: PathBuf,
        fallback: PathBuf,
        source: Box<weights::WeightsError>,
    },
    #[error("could not save the weights to {} ({source}), nor to a fallback file ({})", path.display(), tried.join("; "))]
    NotSaved {
        path: PathBuf,
        source: Box<weights::WeightsError>,
        /// Why each fallback failed.
        tried: Vec<String>,
    },
}

pub const THREAD_NAME: &str = "netloom-trainer";

/// Where the images come from.
#[derive(Debug)]
pub enum DataSource {
    /// A dataset on disk in any format [`data::load`] reads.
    Path(PathBuf),
    /// Splits already in memory (raw intensities in `[0, 1]`).
    Splits(Box<Splits>),
}

/// Fraction of the training images held out for validation when the data
/// has no validation split (also what the designer's epoch estimate assumes).
pub const DEFAULT_VAL_FRACTION: f32 = 0.1;

/// Everything a training run needs.
#[derive(Debug)]
pub struct TrainConfig {
    pub graph: Graph,
    pub data: DataSource,
    pub epochs: u64,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub augment: AugmentConfig,
    /// Layers to freeze (by name), on top of those frozen in the design.
    pub freeze: Vec<String>,
    /// Weights to start from (tensors matched by name and shape).
    pub init_weights: Option<PathBuf>,
    /// Where to save the final weights.
    pub save: Option<PathBuf>,
    /// Written after every epoch (weights + optimizer state) for `resume`.
    pub checkpoint: Option<PathBuf>,
    /// A checkpoint to continue from.
    pub resume: Option<PathBuf>,
    pub seed: u64,
    /// Fraction of train held out for validation when the data has no validation split.
    pub val_fraction: f32,
    /// Fraction held out for test when the data has no test split.
    pub test_fraction: f32,
    /// Recompute BatchNorm running statistics before validation and test.
    pub precise_bn: bool,
    /// Training images (at most) the precise-BN pass reads.
    pub precise_bn_images: usize,
    /// Precompute the frozen prefix's activations once when possible.
    pub activation_cache: bool,
    /// Cache bytes kept in memory; a larger cache spills to a temporary file.
    pub cache_memory_limit: usize,
    /// Bytes the plan and the dataset may take (`None`: a fraction of the
    /// memory available, see [`memory::Budget::new`]).
    pub memory_limit: Option<u64>,
    /// Start training without waiting for [`Command::Start`].
    pub autostart: bool,
    /// The optimizer schedule's spans (Step `every`, Cosine `total`) count
    /// epochs rather than batches; they are converted once the data is loaded.
    pub schedule_in_epochs: bool,
    /// Train at low CPU priority (this thread, its batch thread and its own
    /// rayon workers) so an interactive UI sharing the cores stays smooth.
    pub background: bool,
    /// After the run ends, keep the trained network and answer
    /// [`Command::Probe`] until [`Command::Close`] (the designer's feature maps).
    pub linger: bool,
    /// When the final save fails, send the weights with [`Event::SaveFailed`]
    /// and end the run as if it had saved (the designer keeps them in memory
    /// and offers Save As) instead of writing a fallback file and failing.
    pub keep_unsaved: bool,
}

impl TrainConfig {
    /// The defaults: Adam 1e-3, batch 32, 15 epochs, precise BN, activation cache.
    pub fn new(graph: Graph, data: DataSource) -> Self {
        TrainConfig {
            graph,
            data,
            epochs: 15,
            batch_size: 32,
            optimizer: OptimizerConfig::default(),
            augment: AugmentConfig::default(),
            freeze: Vec::new(),
            init_weights: None,
            save: None,
            checkpoint: None,
            resume: None,
            seed: 42,
            val_fraction: DEFAULT_VAL_FRACTION,
            test_fraction: 0.2,
            precise_bn: true,
            precise_bn_images: 1024,
            activation_cache: true,
            cache_memory_limit: 1 << 30,
            memory_limit: None,
            autostart: false,
            schedule_in_epochs: false,
            background: false,
            linger: false,
            keep_unsaved: false,
        }
    }
}

/// Control messages to the trainer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Begin training (the trainer waits for it unless `autostart`).
    Start,
    /// Pause after the current batch.
    Pause,
    Resume,
    /// Train exactly one batch, then pause.
    Step,
    /// Stop after the current batch; the weights so far are kept (and saved if asked).
    Stop,
    /// Add activation mean/std and gradient norms to the [`Event::Layers`] reports.
    Watch(bool),
    /// Feature maps of layer `node` for image `image` of the test split (the
    /// validation or training split when there is none), answered with
    /// [`Event::FeatureMaps`] between batches, while paused, or while lingering.
    Probe {
        node: String,
        image: usize,
    },
    /// Grad-CAM maps of test images (the split [`Command::Probe`] reads),
    /// answered with [`Event::GradCam`] when probes are.
    GradCam(GradCamRequest),
    /// Ends a trainer that lingers after its run (see [`TrainConfig::linger`]).
    Close,
}

/// What the trainer is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Ready, waiting for `Start` or `Step`.
    Waiting,
    Running,
    Paused,
}

/// Per-layer time of an epoch's training batches.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    pub name: String,
    /// Forward + backward milliseconds per batch.
    pub ms_per_batch: f64,
}

/// The figures of one finished epoch (1-based `epoch`).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    pub epoch: u64,
    pub train_loss: f32,
    pub train_acc: f32,
    pub val_loss: Option<f32>,
    pub val_acc: Option<f32>,
    pub seconds: f64,
    pub learning_rate: f32,
    /// Slowest first.
    pub layer_times: Vec<LayerTime>,
}

/// One test image with its prediction, for a gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Index in the split [`Command::Probe`] reads.
    pub index: usize,
    pub label: u32,
    pub predicted: u32,
    /// Raw intensities in `[0, 1]`, `h × w × c` ([`TestResult::image_shape`]).
    pub image: Vec<f32>,
}

/// Live per-layer figures, sent about once a second while training.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerLive {
    pub name: String,
    /// Forward + backward milliseconds per batch since the last report.
    pub ms_per_batch: f64,
    /// Present while watching ([`Command::Watch`]).
    pub stats: Option<LayerStats>,
}

/// Statistics of a layer's output on the last batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerStats {
    pub mean: f32,
    pub std: f32,
    /// L2 norm of the layer's parameter gradients (`None` without trainable parameters).
    pub grad_norm: Option<f32>,
}

/// A layer's output for one image ([`Command::Probe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMaps {
    pub node: String,
    pub image: usize,
    pub label: u32,
    pub predicted: u32,
    /// The input image, raw intensities `h × w × c` (`input_shape`).
    pub input: Vec<f32>,
    pub input_shape: (usize, usize, usize),
    /// The layer's output, `h × w × c` (`shape`; vectors are `1 × 1 × n`).
    pub values: Vec<f32>,
    pub shape: (usize, usize, usize),
}

/// Test-split results at the end of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TestResult {
    pub test_loss: f32,
    pub test_acc: f32,
    /// The same with the training-time running statistics (no precise BN);
    /// `None` when precise BN is off or the design has no trainable BatchNorm.
    pub test_acc_without_precise_bn: Option<f32>,
    pub confusion: Vec<Vec<usize>>,
    /// Up to [`GALLERY_SIZE`] test images, mistakes first.
    pub samples: Vec<Sample>,
    pub image_shape: (usize, usize, usize),
}

/// Test images a [`TestResult`] carries for a prediction gallery.
pub const GALLERY_SIZE: usize = 48;

/// Facts about the run, sent once before the first batch.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub design: String,
    pub classes: Vec<String>,
    pub train_images: usize,
    pub val_images: usize,
    pub test_images: usize,
    pub batches_per_epoch: usize,
    pub epochs: u64,
    pub first_epoch: u64,
    pub trainable_params: usize,
    pub total_params: usize,
    /// The layer whose activations are cached, and the cache's size.
    pub cache: Option<(String, usize)>,
}

/// Progress reports from the trainer.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Decoded `done` of `total` dataset files.
    DataLoading {
        done: usize,
        total: usize,
    },
    /// Something the user should read: a resized layer, a weights report, skipped files.
    Notice(String),
    /// Computing the frozen prefix's activations: `done` of `total` images.
    Caching {
        done: usize,
        total: usize,
    },
    Started(RunInfo),
    State(RunState),
    Batch {
        /// 1-based epoch.
        epoch: u64,
        /// 1-based batch within the epoch.
        batch: usize,
        batches: usize,
        loss: f32,
        lr: f32,
        images_per_sec: f64,
        eta: Duration,
    },
    Epoch(EpochStats),
    /// Per-layer time (and statistics while watching), in plan order.
    Layers(Vec<LayerLive>),
    /// The answer to [`Command::Probe`], or why it failed.
    FeatureMaps(Result<FeatureMaps, ProbeError>),
    /// The answer to [`Command::GradCam`], or why it failed.
    GradCam(Result<GradCamMaps, gradcam::GradCamError>),
    Finished(TestResult),
    /// Stopped on request after `epoch`/`batch`.
    Stopped {
        epoch: u64,
        batch: usize,
    },
    /// The run ended with an error (bad data, non-finite loss, …).
    Failed(String),
    /// The final weights could not be written to `--save` (only with
    /// [`TrainConfig::keep_unsaved`]): why, and the weights themselves.
    /// Sent before the run's end ([`Event::Finished`], [`Event::Stopped`]).
    SaveFailed {
        message: String,
        weights: Box<UnsavedWeights>,
    },
}

/// Final weights that could not be saved, as the save would have written them.
#[derive(Clone, Debug)]
pub struct UnsavedWeights {
    /// The tensors (without gradients).
    pub params: Vec<ParamTensor>,
    /// Extra tensors (the training-time BatchNorm statistics), by file name.
    pub extra: Vec<(String, Vec<f32>)>,
    pub meta: WeightsMeta,
    /// The design as trained, stored with them as the final save does.
    pub design: Graph,
}

impl PartialEq for UnsavedWeights {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta
            && self.design == other.design
            && self.extra == other.extra
            && self.params.len() == other.params.len()
            && self
                .params
                .iter()
                .zip(&other.params)
                .all(|(a, b)| (&a.name, &a.shape, &a.data) == (&b.name, &b.shape, &b.data))
    }
}

impl UnsavedWeights {
    /// Writes the file the failed save would have written.
    pub fn save(&self, path: &Path) -> Result<(), weights::WeightsError> {
        let extra: Vec<(String, Vec<usize>, &[f32])> = self
            .extra
            .iter()
            .map(|(name, d)| (name.clone(), vec![d.len()], d.as_slice()))
            .collect();
        weights::save_trained(path, &self.params, &extra, &self.meta, &self.design)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    Finished,
    Stopped,
    Failed(String),
}

/// What [`TrainerHandle::join`] returns.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub end: RunEnd,
    /// The design as trained (final Dense resized, freezes applied).
    pub graph: Graph,
    /// The last good weights (empty when the run failed before compiling).
    pub params: Vec<ParamTensor>,
    pub meta: WeightsMeta,
    pub history: Vec<EpochStats>,
    pub test: Option<TestResult>,
    /// The training-time (moving-average) BatchNorm statistics that precise
    /// BN replaced, by tensor name; saved as `ema.{name}` beside the weights.
    pub ema_stats: Vec<(String, Vec<f32>)>,
}

/// Starts training threads.
pub struct Trainer;

impl Trainer {
    /// Spawns the `netloom-trainer` thread. It loads the data at once, then
    /// waits for [`Command::Start`] (or [`Command::Step`]) unless `autostart`.
    pub fn spawn(config: TrainConfig) -> std::io::Result<TrainerHandle> {
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let name = config.graph.name.clone();
                let graph = config.graph.clone();
                let panic_tx = ev_tx.clone();
                let background = config.background;
                let work = || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run(config, cmd_rx, ev_tx)
                    }))
                };
                let result = if background {
                    lower_thread_priority();
                    // Own workers, so the global pool (and whoever else uses
                    // it) keeps its priority.
                    match rayon::ThreadPoolBuilder::new()
                        .thread_name(|i| format!("netloom-train-{i}"))
                        .start_handler(|_| lower_thread_priority())
                        .build()
                    {
                        Ok(pool) => pool.install(work),
                        Err(_) => work(),
                    }
                } else {
                    work()
                };
                match result {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown panic".into());
                        let msg = format!("training `{name}` crashed: {msg}");
                        let _ = panic_tx.send(Event::Failed(msg.clone()));
                        TrainOutcome::failed(graph, msg)
                    }
                }
            })?;
        Ok(TrainerHandle {
            commands: cmd_tx,
            events: ev_rx,
            thread: Some(thread),
        })
    }
}

/// Lowers the calling thread's CPU priority (Linux: niceness 10 for this
/// thread only; threads it starts afterwards inherit it). Elsewhere a no-op.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the caller's own thread id only changes that
    // thread's niceness; a failure (e.g. no permission) is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// The controlling side of a training thread.
pub struct TrainerHandle {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<TrainOutcome>>,
}

impl TrainerHandle {
    /// Sends a command; `false` once the trainer has ended.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The event stream; iterating it blocks and ends when the trainer does.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Every event waiting now, without blocking (for a GUI frame).
    pub fn drain(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// `true` once the thread has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the thread and returns how the run ended.
    pub fn join(mut self) -> Result<TrainOutcome, JoinError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| JoinError::Panicked),
            None => Err(JoinError::AlreadyJoined),
        }
    }
}

impl Drop for TrainerHandle {
    /// Dropping the handle stops the run and waits for the thread.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.commands.send(Command::Stop);
            let _ = self.commands.send(Command::Close);
            let _ = t.join();
        }
    }
}

impl TrainOutcome {
    fn failed(graph: Graph, message: String) -> Self {
        TrainOutcome {
            end: RunEnd::Failed(message),
            graph,
            params: Vec::new(),
            meta: WeightsMeta::default(),
            history: Vec::new(),
            test: None,
            ema_stats: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// The run

struct Control {
    rx: Receiver<Command>,
    state: RunState,
    /// Pause after this many more batches (Step).
    steps_left: Option<usize>,
    stop: bool,
    /// The run is over; only probes and `Close` matter now.
    ended: bool,
    close: bool,
    watch: bool,
    /// Probe requests not yet answered.
    probes: Vec<Ask>,
}

/// A question the run's current network answers between batches.
enum Ask {
    /// Feature maps of (node, image).
    Maps(String, usize),
    GradCam(GradCamRequest),
}

/// Answers a probe request with the run's current network.
type Serve<'a> = dyn FnMut(Ask) -> Event + 'a;

impl Control {
    fn new(rx: Receiver<Command>) -> Self {
        Control {
            rx,
            state: RunState::Waiting,
            steps_left: None,
            stop: false,
            ended: false,
            close: false,
            watch: false,
            probes: Vec::new(),
        }
    }

    /// Applies one command.
    fn apply(&mut self, cmd: Command, ev: &Sender<Event>) {
        let before = self.state;
        let stepping = cmd == Command::Step;
        match cmd {
            Command::Watch(on) => self.watch = on,
            Command::Probe { node, image } => self.probes.push(Ask::Maps(node, image)),
            Command::GradCam(request) => self.probes.push(Ask::GradCam(request)),
            Command::Close => {
                self.close = true;
                self.stop = true;
            }
            _ if self.ended => {}
            Command::Start | Command::Resume => {
                self.state = RunState::Running;
                self.steps_left = None;
            }
            Command::Pause => {
                if self.state == RunState::Running {
                    self.state = RunState::Paused;
                }
            }
            Command::Step => {
                self.state = RunState::Running;
                self.steps_left = Some(1);
            }
            Command::Stop => self.stop = true,
        }
        if self.state != before && !stepping {
            let _ = ev.send(Event::State(self.state));
        }
    }

    /// Answers every waiting probe.
    fn serve_probes(&mut self, ev: &Sender<Event>, serve: &mut Serve) {
        for ask in std::mem::take(&mut self.probes) {
            let _ = ev.send(serve(ask));
        }
    }

    /// Handles pending commands; blocks while paused or waiting. Returns
    /// `false` when the run must stop.
    fn gate(&mut self, ev: &Sender<Event>, serve: &mut Serve) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.apply(cmd, ev),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // Nobody can resume a paused run any more.
                    if self.state != RunState::Running {
                        self.stop = true;
                    }
                    break;
                }
            }
        }
        self.serve_probes(ev, serve);
        while !self.stop && self.state != RunState::Running {
            match self.rx.recv() {
                Ok(cmd) => {
                    self.apply(cmd, ev);
                    self.serve_probes(ev, serve);
                }
                Err(_) => self.stop = true,
            }
        }
        !self.stop
    }

    /// After the run: answers probes until `Close` or until nobody listens.
    fn linger(&mut self, ev: &Sender<Event>, serve: &mut Serve) {
        self.ended = true;
        self.serve_probes(ev, serve);
        while !self.close {
            match self.rx.recv() {
                Ok(cmd) => {
                    self.apply(cmd, ev);
                    self.serve_probes(ev, serve);
                }
                Err(_) => break,
            }
        }
    }

    /// Called after each batch: counts down a Step.
    fn batch_done(&mut self, ev: &Sender<Event>) {
        if let Some(n) = self.steps_left {
            if n <= 1 {
                self.steps_left = None;
                self.state = RunState::Paused;
                let _ = ev.send(Event::State(RunState::Paused));
            } else {
                self.steps_left = Some(n - 1);
            }
        }
    }
}

fn run(config: TrainConfig, rx: Receiver<Command>, ev: Sender<Event>) -> TrainOutcome {
    let graph = config.graph.clone();
    let mut ctl = Control::new(rx);
    let mut out = TrainOutcome::failed(graph, String::new());
    match run_inner(config, &mut ctl, &ev, &mut out) {
        Ok(end) => out.end = end,
        Err(error) => {
            let msg = error.to_string();
            let _ = ev.send(Event::Failed(msg.clone()));
            out.end = RunEnd::Failed(msg);
        }
    }
    out
}

/// Refuses a design whose plan would not fit `budget` at the configured
/// batch (naming the layer at fault when the design has errors); returns
/// the estimate in bytes.
fn check_plan_memory(
    graph: &Graph,
    config: &TrainConfig,
    budget: &memory::Budget,
) -> Result<u64, TrainError> {
    let analysis = analyze(graph);
    if !analysis.is_valid() {
        return Err(TrainError::Refused(format!(
            "the design has errors; fix them before training: {}",
            analysis.error_summary(graph, 3)
        )));
    }
    let optimizer_slots = match config.optimizer.kind {
        super::OptimizerKind::Adam { .. } => 2,
        super::OptimizerKind::Sgd { momentum, .. } if momentum != 0.0 => 1,
        super::OptimizerKind::Sgd { .. } => 0,
    };
    let estimate = memory::estimate(
        graph,
        &analysis,
        config.batch_size,
        memory::Purpose::Train { optimizer_slots },
    );
    budget
        .check(&estimate)
        .map_err(|source| TrainError::Memory {
            design: graph.name.clone(),
            source,
        })?;
    Ok(estimate.total())
}

/// A run from its settings to its end: read the weight files, check the
/// memory, load the splits, prepare the plan, initialise or resume, build
/// the feeds, run the epochs, test, save, then linger if asked.
fn run_inner(
    mut config: TrainConfig,
    ctl: &mut Control,
    ev: &Sender<Event>,
    out: &mut TrainOutcome,
) -> Result<RunEnd, TrainError> {
    let hwc = input_hwc(&config.graph)?;
    if config.batch_size == 0 {
        return Err(TrainError::ZeroBatch);
    }
    data::check_fractions(config.val_fraction, config.test_fraction)?;
    let files = WeightFiles::read(&config)?;
    // Memory: the plan's estimate first (before any data is read), then
    // the dataset gets what is left of the budget.
    let budget = memory::Budget::new(config.memory_limit);
    let plan_bytes = check_plan_memory(&config.graph, &config, &budget)?;
    let data_budget = Some(budget.bytes.saturating_sub(plan_bytes));
    let splits = load_splits(&mut config, hwc, data_budget, ev)?;
    let classes = splits.class_names().to_vec();
    let (graph, analysis, mut plan) = prepare_plan(&config, classes.len(), ev, out)?;
    let stats = splits.train.channel_stats();
    let meta = WeightsMeta {
        design: graph.name.clone(),
        classes: classes.clone(),
        mean: stats.mean.clone(),
        std: stats.std.clone(),
        seed: config.seed,
        val_fraction: config.val_fraction,
        epoch: 0,
        optimizer_step: 0,
        precise_bn: false,
    };
    out.meta = meta.clone();
    let (optimizer, first_epoch) =
        init_or_resume(&mut config, &files, &mut plan, splits.train.len(), ev)?;
    let feeds = build_feeds(splits, &stats, &mut plan, &config, ctl, ev)?;
    let mut run = Run::start(
        config,
        Model {
            graph,
            analysis,
            plan,
            optimizer,
            meta,
        },
        feeds,
        &stats,
        first_epoch,
        classes,
        ctl,
        ev,
    )?;
    for epoch in first_epoch..run.config.epochs {
        if let Some(end) = run.epoch(epoch, out)? {
            return Ok(end);
        }
    }
    drop(run.prefetch.take());
    let result = run.test_phase(out)?;
    save_final(out, &run.config, ev)?;
    let _ = ev.send(Event::Finished(result.unwrap_or(TestResult {
        test_loss: f32::NAN,
        test_acc: f32::NAN,
        test_acc_without_precise_bn: None,
        confusion: Vec::new(),
        samples: Vec::new(),
        image_shape: hwc,
    })));
    run.linger();
    Ok(RunEnd::Finished)
}

/// The weight files a run starts from, read (and checked) before the data
/// so a bad one is refused at once.
struct WeightFiles {
    init: Option<weights::WeightsFile>,
    resume: Option<weights::WeightsFile>,
}

impl WeightFiles {
    fn read(config: &TrainConfig) -> Result<Self, TrainError> {
        Ok(WeightFiles {
            init: config
                .init_weights
                .as_deref()
                .map(weights::read)
                .transpose()?,
            resume: config.resume.as_deref().map(weights::read).transpose()?,
        })
    }
}

/// The train/validation/test splits, conformed to the design's input,
/// within `data_budget`; skipped files and conversions are announced.
fn load_splits(
    config: &mut TrainConfig,
    (h, w, c): (usize, usize, usize),
    data_budget: Option<u64>,
    ev: &Sender<Event>,
) -> Result<Splits, TrainError> {
    let opts = LoadOptions {
        val_fraction: config.val_fraction,
        test_fraction: config.test_fraction,
        seed: config.seed,
        memory_budget: data_budget,
        ..LoadOptions::for_input(h, w, c)
    };
    let source = std::mem::replace(&mut config.data, DataSource::Path(PathBuf::new()));
    let splits = match source {
        DataSource::Splits(s) => {
            let mut s = s.conform_within(data::Shape::new(h, w, c), data_budget)?;
            s.hold_out(&opts)?;
            s
        }
        DataSource::Path(path) => {
            let mut last = Instant::now();
            data::load(&path, &opts, &mut |done, total| {
                if done == total || last.elapsed() > Duration::from_millis(100) {
                    last = Instant::now();
                    let _ = ev.send(Event::DataLoading { done, total });
                }
            })?
        }
    };
    if !splits.skipped.is_empty() {
        let _ = ev.send(Event::Notice(format!(
            "{}",
            data::SkippedSummary(&splits.skipped)
        )));
    }
    for notice in &splits.notices {
        let _ = ev.send(Event::Notice(notice.clone()));
    }
    if splits.train.is_empty() {
        return Err(TrainError::NoTrainingImages);
    }
    Ok(splits)
}

/// The design as trained (its head fitted to the classes, the asked layers
/// frozen; kept in `out`), its analysis and compiled plan.
fn prepare_plan(
    config: &TrainConfig,
    classes: usize,
    ev: &Sender<Event>,
    out: &mut TrainOutcome,
) -> Result<(Graph, Analysis, Plan), TrainError> {
    let mut graph = config.graph.clone();
    if let Some(msg) = fit_output(&mut graph, classes)? {
        let _ = ev.send(Event::Notice(msg));
    }
    apply_freeze(&mut graph, &config.freeze)?;
    out.graph = graph.clone();
    let analysis = analyze(&graph);
    let plan = Plan::compile(&graph, &analysis, config.batch_size, config.seed)?;
    Ok((graph, analysis, plan))
}

/// Applies the initial weights, converts the schedule's epochs to batches,
/// and builds the optimizer, or resumes it (and the weights) from a
/// checkpoint. Returns the optimizer and the first epoch to run.
fn init_or_resume(
    config: &mut TrainConfig,
    files: &WeightFiles,
    plan: &mut Plan,
    train_images: usize,
    ev: &Sender<Event>,
) -> Result<(Optimizer, u64), TrainError> {
    if let (Some(path), Some(file)) = (&config.init_weights, &files.init) {
        let report = weights::apply(file, &mut plan.params);
        let _ = ev.send(Event::Notice(format!(
            "initial weights from {}: {report}",
            path.display()
        )));
    }
    if config.schedule_in_epochs {
        let per_epoch = BatchConfig::train(config.batch_size, config.seed, None, None)
            .batches_per_epoch(train_images)
            .max(1) as u64;
        config.optimizer.schedule = match config.optimizer.schedule {
            Schedule::Step { every, gamma } => Schedule::Step {
                every: every * per_epoch,
                gamma,
            },
            Schedule::Cosine { total, min_factor } => Schedule::Cosine {
                total: total * per_epoch,
                min_factor,
            },
            Schedule::Constant => Schedule::Constant,
        };
    }
    let mut optimizer = Optimizer::try_new(config.optimizer, &plan.params)?;
    let mut first_epoch = 0;
    if let (Some(path), Some(file)) = (&config.resume, &files.resume) {
        let report = weights::apply(file, &mut plan.params);
        if !report.is_complete() {
            return Err(TrainError::Refused(format!(
                "{} does not fit this design: {report}",
                path.display()
            )));
        }
        let names: Vec<String> = plan.params.iter().map(|p| p.name.clone()).collect();
        for (name, (m, v)) in names.iter().zip(optimizer.moments_mut()) {
            for (suffix, buf) in [("m", m), ("v", v)] {
                if let Some((_, d)) = file.get(&format!("{OPTIMIZER_PREFIX}{name}.{suffix}"))
                    && d.len() == buf.len()
                {
                    buf.copy_from_slice(d);
                }
            }
        }
        if let Some(m) = &file.meta {
            first_epoch = m.epoch;
            optimizer.step = m.optimizer_step;
        }
        if first_epoch >= config.epochs {
            return Err(TrainError::Refused(format!(
                "nothing to do: {} already completed epoch {first_epoch} and {} epochs were asked for; ask for more epochs to continue",
                path.display(),
                config.epochs
            )));
        }
        let _ = ev.send(Event::Notice(format!(
            "resumed from {} after epoch {first_epoch}",
            path.display()
        )));
    }
    Ok((optimizer, first_epoch))
}

/// Where each split's batches come from.
struct Feeds {
    train_ds: Arc<Dataset>,
    train: Feed,
    val: Option<Feed>,
    test: Option<Feed>,
    /// Probes read whole images (never the activation cache).
    probe: Feed,
    /// The cached frozen prefix: its last layer and the cache's bytes.
    cache_info: Option<(String, usize)>,
}

/// The feeds of every split, with the frozen prefix's activations cached
/// when possible.
fn build_feeds(
    splits: Splits,
    stats: &ChannelStats,
    plan: &mut Plan,
    config: &TrainConfig,
    ctl: &Control,
    ev: &Sender<Event>,
) -> Result<Feeds, TrainError> {
    let train_ds = Arc::new(splits.train);
    let feed = |d: Dataset| Feed::new(Arc::new(d), stats.clone());
    let val = splits.val.filter(|d| !d.is_empty()).map(feed);
    let test = splits.test.filter(|d| !d.is_empty()).map(feed);
    let probe_ds = test
        .as_ref()
        .or(val.as_ref())
        .map_or_else(|| Arc::clone(&train_ds), |f| Arc::clone(&f.ds));
    let mut feeds = Feeds {
        train: Feed::new(Arc::clone(&train_ds), stats.clone()),
        val,
        test,
        probe: Feed::new(probe_ds, stats.clone()),
        train_ds,
        cache_info: None,
    };
    if let Some(cut) = plan.frozen_cut()
        && config.activation_cache
    {
        if config.augment.any() {
            let _ = ev.send(Event::Notice(format!(
                "layers up to `{}` are frozen, but augmentation changes their input every epoch, so their activations are not cached",
                plan.steps[cut].name
            )));
        } else {
            cache_frozen_prefix(&mut feeds, cut, stats, plan, config, ctl, ev)?;
        }
    }
    Ok(feeds)
}

/// Computes the activations at `cut` once for every split's images.
fn cache_frozen_prefix(
    feeds: &mut Feeds,
    cut: usize,
    stats: &ChannelStats,
    plan: &mut Plan,
    config: &TrainConfig,
    ctl: &Control,
    ev: &Sender<Event>,
) -> Result<(), TrainError> {
    let total = feeds.train.len()
        + feeds.val.as_ref().map_or(0, Feed::len)
        + feeds.test.as_ref().map_or(0, Feed::len);
    let mut done_before = 0;
    let mut bytes = 0;
    let mut on_disk = false;
    for feed in std::iter::once(&mut feeds.train)
        .chain(feeds.val.as_mut())
        .chain(feeds.test.as_mut())
    {
        let cache = ActivationCache::build(
            plan,
            cut,
            &feed.ds,
            stats,
            config.cache_memory_limit,
            &mut |d, _| {
                let _ = ev.send(Event::Caching {
                    done: done_before + d,
                    total,
                });
            },
        )?;
        done_before += feed.len();
        bytes += feed.len() * cache.per_image() * 4;
        on_disk |= cache.is_on_disk();
        feed.cache = Some((cache, cut));
        if ctl.stop {
            break;
        }
    }
    let frozen_prefix = plan.steps[..=cut]
        .iter()
        .any(|s| !step_param_indices(&s.op).is_empty());
    let _ = ev.send(Event::Notice(format!(
        "{} up to `{}`: their activations were computed once ({:.1} MB{}); training runs only the layers after it",
        if frozen_prefix {
            "frozen layers"
        } else {
            "the layers without parameters"
        },
        plan.steps[cut].name,
        bytes as f64 / 1e6,
        if on_disk { ", in a temporary file" } else { "" }
    )));
    feeds.cache_info = Some((plan.steps[cut].name.clone(), bytes));
    Ok(())
}

/// What is trained: the design, its plan and optimizer, and the metadata
/// its weights are saved with.
struct Model {
    graph: Graph,
    analysis: Analysis,
    plan: Plan,
    optimizer: Optimizer,
    meta: WeightsMeta,
}

/// A started run: the model, its feeds and the epoch loop's state.
struct Run<'r> {
    config: TrainConfig,
    model: Model,
    feeds: Feeds,
    classes: Vec<String>,
    train_cfg: BatchConfig,
    prefetch: Option<Prefetcher>,
    batches: usize,
    bn_stats: Vec<usize>,
    run_start: Instant,
    batches_done_total: usize,
    total_batches: usize,
    cached_labels: Vec<u32>,
    /// The weights before the current batch, to fall back on if it goes non-finite.
    last_good: Vec<Vec<f32>>,
    /// The plan's fusions while watching (which needs every layer's output).
    fused: Option<Vec<super::plan::Fusion>>,
    /// Compiled on the first Grad-CAM request.
    cam: Option<GradCam>,
    last_report: Instant,
    nanos_at_report: Vec<u64>,
    batches_since_report: usize,
    ctl: &'r mut Control,
    ev: &'r Sender<Event>,
}

/// How one epoch's training batches went.
#[derive(Default)]
struct EpochTally {
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl<'r> Run<'r> {
    /// Announces the run, waits for Start unless autostarting, and starts
    /// the batch thread (unless the training images come from the cache).
    #[allow(clippy::too_many_arguments)]
    fn start(
        config: TrainConfig,
        model: Model,
        feeds: Feeds,
        stats: &ChannelStats,
        first_epoch: u64,
        classes: Vec<String>,
        ctl: &'r mut Control,
        ev: &'r Sender<Event>,
    ) -> Result<Self, TrainError> {
        let train_cfg = BatchConfig::train(
            config.batch_size,
            config.seed,
            if config.augment.any() {
                Some(Augmenter::new(config.augment, &feeds.train_ds)?)
            } else {
                None
            },
            Some(stats.clone()),
        );
        let batches = train_cfg.batches_per_epoch(feeds.train_ds.len());
        let plan = &model.plan;
        let _ = ev.send(Event::Started(RunInfo {
            design: model.graph.name.clone(),
            classes: classes.clone(),
            train_images: feeds.train_ds.len(),
            val_images: feeds.val.as_ref().map_or(0, Feed::len),
            test_images: feeds.test.as_ref().map_or(0, Feed::len),
            batches_per_epoch: batches,
            epochs: config.epochs,
            first_epoch,
            trainable_params: plan.trainable_param_count(),
            total_params: plan.total_param_count(),
            cache: feeds.cache_info.clone(),
        }));
        let _ = ev.send(Event::State(RunState::Waiting));
        if config.autostart {
            ctl.apply(Command::Start, ev);
        }
        let prefetch = if feeds.train.cache.is_some() || first_epoch >= config.epochs {
            None
        } else {
            Some(Prefetcher::spawn(
                Arc::clone(&feeds.train_ds),
                train_cfg.clone(),
                first_epoch..config.epochs,
                4,
            )?)
        };
        // Filled before each batch; allocated fallibly like the plan's buffers.
        let last_good = plan
            .params
            .iter()
            .map(|p| super::plan::zeroed(|| format!("copy of `{}`", p.name), p.data.len()))
            .collect::<Result<_, _>>()?;
        Ok(Run {
            bn_stats: bn_stat_params(plan),
            run_start: Instant::now(),
            batches_done_total: 0,
            total_batches: (config.epochs.saturating_sub(first_epoch)) as usize * batches,
            cached_labels: Vec::new(),
            last_good,
            fused: None,
            cam: None,
            last_report: Instant::now(),
            nanos_at_report: plan.step_nanos.clone(),
            batches_since_report: 0,
            config,
            model,
            feeds,
            classes,
            train_cfg,
            prefetch,
            batches,
            ctl,
            ev,
        })
    }

    /// Trains one epoch, validates, reports and checkpoints. `Some` when
    /// the user stopped the run (saved and ended as the user asked).
    fn epoch(&mut self, epoch: u64, out: &mut TrainOutcome) -> Result<Option<RunEnd>, TrainError> {
        let epoch_start = Instant::now();
        let nanos_before = self.model.plan.step_nanos.clone();
        let order = self.train_cfg.epoch_order(self.feeds.train_ds.len(), epoch);
        let mut tally = EpochTally::default();
        for b in 0..self.batches {
            let m = &mut self.model;
            let (probe, cam) = (&mut self.feeds.probe, &mut self.cam);
            if !self.ctl.gate(self.ev, &mut |ask| {
                answer(&mut m.plan, probe, &m.analysis, &m.graph, cam, ask)
            }) {
                let end = finish_stopped(&self.model.plan, out, &self.config, self.ev, epoch, b)?;
                self.linger();
                return Ok(Some(end));
            }
            self.batch(epoch, b, &order, epoch_start, &mut tally, out)?;
        }
        let layer_times = layer_times(&self.model.plan, &nanos_before, self.batches);
        let (val_loss, val_acc) = self.validate(epoch)?;
        let stats_epoch = EpochStats {
            epoch: epoch + 1,
            train_loss: (tally.loss_sum / tally.seen.max(1) as f64) as f32,
            train_acc: tally.correct as f32 / tally.seen.max(1) as f32,
            val_loss,
            val_acc,
            seconds: epoch_start.elapsed().as_secs_f64(),
            learning_rate: self.model.optimizer.learning_rate(),
            layer_times,
        };
        out.history.push(stats_epoch.clone());
        let _ = self.ev.send(Event::Epoch(stats_epoch));
        self.checkpoint(epoch);
        Ok(None)
    }

    /// One training batch: forward, loss, backward and update, rolled back
    /// (and the run ended with the reason) if anything goes non-finite.
    fn batch(
        &mut self,
        epoch: u64,
        b: usize,
        order: &[usize],
        epoch_start: Instant,
        tally: &mut EpochTally,
        out: &mut TrainOutcome,
    ) -> Result<(), TrainError> {
        self.follow_watch();
        let plan = &mut self.model.plan;
        for (good, p) in self.last_good.iter_mut().zip(&plan.params) {
            good.copy_from_slice(&p.data);
        }
        // Forward.
        self.cached_labels.clear();
        if self.feeds.train.cache.is_some() {
            let batch_size = self.config.batch_size;
            let idx = &order[b * batch_size..((b + 1) * batch_size).min(order.len())];
            let labels = self.feeds.train.forward(plan, idx, Mode::Train)?;
            self.cached_labels.extend_from_slice(labels);
        } else {
            let Some(batch) = self.prefetch.as_mut().and_then(Iterator::next) else {
                return Err(TrainError::BatchThreadEnded);
            };
            plan.forward(batch.images(), Mode::Train);
            self.cached_labels.extend_from_slice(batch.labels());
            if let Some(p) = &self.prefetch {
                p.recycle(batch);
            }
        }
        let labels = &self.cached_labels;
        let optimizer = &mut self.model.optimizer;
        let lr = optimizer.learning_rate();
        let loss = plan.loss_backward(labels);
        let batch_correct = plan.correct(labels);
        let mut bad = (!loss.is_finite()).then_some(loss);
        if bad.is_none() {
            plan.backward();
            if plan
                .params
                .iter()
                .any(|p| p.is_trainable() && p.grad.iter().any(|g| !g.is_finite()))
            {
                bad = Some(f32::NAN);
            } else {
                optimizer.update(&mut plan.params);
                if plan
                    .params
                    .iter()
                    .any(|p| p.data.iter().any(|v| !v.is_finite()))
                {
                    bad = Some(0.0);
                }
            }
        }
        if let Some(bad_loss) = bad {
            // Running statistics move in the forward pass and weights in
            // the update: put everything back as it was before this batch.
            for (p, good) in plan.params.iter_mut().zip(&self.last_good) {
                p.data.copy_from_slice(good);
            }
            return Err(TrainError::Diverged(non_finite(
                plan,
                out,
                &self.config,
                self.ev,
                bad_loss,
                epoch,
                b,
                lr,
            )));
        }
        let n = labels.len();
        tally.loss_sum += loss as f64 * n as f64;
        tally.correct += batch_correct;
        tally.seen += n;
        self.batches_done_total += 1;
        let elapsed = epoch_start.elapsed().as_secs_f64();
        let per_batch = self.run_start.elapsed().as_secs_f64() / self.batches_done_total as f64;
        let _ = self.ev.send(Event::Batch {
            epoch: epoch + 1,
            batch: b + 1,
            batches: self.batches,
            loss,
            lr,
            images_per_sec: tally.seen as f64 / elapsed.max(1e-9),
            eta: Duration::from_secs_f64(
                per_batch * self.total_batches.saturating_sub(self.batches_done_total) as f64,
            ),
        });
        self.ctl.batch_done(self.ev);
        self.batches_since_report += 1;
        if self.last_report.elapsed() >= LAYER_REPORT_EVERY || b + 1 == self.batches {
            let plan = &self.model.plan;
            let _ = self.ev.send(Event::Layers(layer_live(
                plan,
                &self.nanos_at_report,
                self.batches_since_report,
                self.ctl.watch,
            )));
            self.nanos_at_report.clone_from(&plan.step_nanos);
            self.batches_since_report = 0;
            self.last_report = Instant::now();
        }
        Ok(())
    }

    /// Watching needs every layer's own output, which fused steps do not
    /// write; the training fusions are bit-identical, so runs do not change.
    fn follow_watch(&mut self) {
        let plan = &mut self.model.plan;
        match (self.ctl.watch, self.fused.is_some()) {
            (true, false) => {
                self.fused = Some(plan.steps.iter().map(|s| s.fusion).collect());
                plan.unfuse();
            }
            (false, true) => {
                for (s, f) in plan
                    .steps
                    .iter_mut()
                    .zip(self.fused.take().unwrap_or_default())
                {
                    s.fusion = f;
                }
            }
            _ => {}
        }
    }

    /// Validation loss and accuracy, with precise BN statistics when asked
    /// (the training-time statistics are put back afterwards).
    fn validate(&mut self, epoch: u64) -> Result<(Option<f32>, Option<f32>), TrainError> {
        let Some(vf) = self.feeds.val.as_mut() else {
            return Ok((None, None));
        };
        let plan = &mut self.model.plan;
        let ema: Vec<Vec<f32>> = self
            .bn_stats
            .iter()
            .map(|&i| plan.params[i].data.clone())
            .collect();
        if self.config.precise_bn {
            recompute_bn_stats(
                plan,
                &mut self.feeds.train,
                self.config.precise_bn_images,
                self.config.seed ^ epoch,
            )?;
        }
        let (l, a, _) = vf.evaluate(plan)?;
        for (&i, d) in self.bn_stats.iter().zip(ema) {
            plan.params[i].data = d;
        }
        Ok((Some(l), Some(a)))
    }

    /// Writes the checkpoint after `epoch`, if one is asked for. A failed
    /// checkpoint never ends the run: it is reported and written again
    /// after the next epoch.
    fn checkpoint(&self, epoch: u64) {
        let Some(path) = &self.config.checkpoint else {
            return;
        };
        let Model {
            graph,
            plan,
            optimizer,
            meta,
            ..
        } = &self.model;
        let moments: Vec<(String, Vec<usize>, &[f32])> = plan
            .params
            .iter()
            .zip(optimizer.moments())
            .flat_map(|(p, (m, v))| {
                [("m", m), ("v", v)]
                    .into_iter()
                    .filter(|(_, b)| !b.is_empty())
                    .map(|(s, b)| {
                        (
                            format!("{OPTIMIZER_PREFIX}{}.{s}", p.name),
                            p.shape.clone(),
                            b.as_slice(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let m = WeightsMeta {
            epoch: epoch + 1,
            optimizer_step: optimizer.step,
            ..meta.clone()
        };
        // With the design as trained, as the final save: a checkpoint
        // exports and evaluates as the run's output does.
        if let Err(e) = weights::save_trained(path, &plan.params, &moments, &m, graph) {
            let _ = self.ev.send(Event::Notice(format!(
                "the checkpoint after epoch {} could not be written ({e}); training goes on and tries again after the next epoch",
                epoch + 1
            )));
        }
    }

    /// Tests with the training-time running statistics, then with precise
    /// BN statistics when asked; puts the trained weights in `out`.
    fn test_phase(&mut self, out: &mut TrainOutcome) -> Result<Option<TestResult>, TrainError> {
        let config = &self.config;
        let plan = &mut self.model.plan;
        let mut result = None;
        let mut used_precise = false;
        let ema_stats: Vec<(String, Vec<f32>)> = self
            .bn_stats
            .iter()
            .map(|&i| (plan.params[i].name.clone(), plan.params[i].data.clone()))
            .collect();
        let train_feed = &mut self.feeds.train;
        if let Some(tf) = self.feeds.test.as_mut() {
            let (l0, a0, p0) = tf.evaluate(plan)?;
            let mut without = None;
            let (mut l, mut a, mut predictions) = (l0, a0, p0);
            if config.precise_bn
                && recompute_bn_stats(
                    plan,
                    train_feed,
                    config.precise_bn_images,
                    config.seed ^ 0xF1,
                )? > 0
            {
                used_precise = true;
                without = Some(a0);
                (l, a, predictions) = tf.evaluate(plan)?;
            }
            let confusion = eval::confusion_matrix(&tf.ds.labels, &predictions, self.classes.len());
            result = Some(TestResult {
                test_loss: l,
                test_acc: a,
                test_acc_without_precise_bn: without,
                confusion,
                samples: gallery(&tf.ds, &predictions),
                image_shape: (tf.ds.h, tf.ds.w, tf.ds.c),
            });
        } else if config.precise_bn {
            used_precise = recompute_bn_stats(
                plan,
                train_feed,
                config.precise_bn_images,
                config.seed ^ 0xF1,
            )? > 0;
        }
        out.params.clone_from(&plan.params);
        out.meta = WeightsMeta {
            epoch: config.epochs,
            optimizer_step: self.model.optimizer.step,
            precise_bn: used_precise,
            ..self.model.meta.clone()
        };
        out.test.clone_from(&result);
        if used_precise {
            out.ema_stats = ema_stats;
        }
        Ok(result)
    }

    /// Keeps answering probes until closed, when the run was asked to linger.
    fn linger(&mut self) {
        if !self.config.linger {
            return;
        }
        let m = &mut self.model;
        let (probe, cam) = (&mut self.feeds.probe, &mut self.cam);
        self.ctl.linger(self.ev, &mut |ask| {
            answer(&mut m.plan, probe, &m.analysis, &m.graph, cam, ask)
        });
    }
}

/// How often [`Event::Layers`] reports are sent while training.
const LAYER_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Per-layer time since `before` (and output statistics when `watch`).
fn layer_live(plan: &Plan, before: &[u64], batches: usize, watch: bool) -> Vec<LayerLive> {
    plan.steps
        .iter()
        .enumerate()
        .map(|(i, step)| LayerLive {
            name: step.name.clone(),
            ms_per_batch: (plan.step_nanos[i] - before[i]) as f64 / 1e6 / batches.max(1) as f64,
            stats: watch.then(|| {
                let (mean, std) = mean_std(plan.activation(i));
                let learned: Vec<&ParamTensor> = step_param_indices(&step.op)
                    .into_iter()
                    .map(|p| &plan.params[p])
                    .filter(|p| p.is_trainable())
                    .collect();
                let grad_norm = (!learned.is_empty()).then(|| {
                    learned
                        .iter()
                        .flat_map(|p| &p.grad)
                        .map(|&g| g as f64 * g as f64)
                        .sum::<f64>()
                        .sqrt() as f32
                });
                LayerStats {
                    mean,
                    std,
                    grad_norm,
                }
            }),
        })
        .collect()
}

/// Mean and standard deviation, accumulated in f64.
fn mean_std(values: &[f32]) -> (f32, f32) {
    let n = values.len().max(1) as f64;
    let (sum, sq) = values.iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
        (s + v as f64, q + v as f64 * v as f64)
    });
    let mean = sum / n;
    (mean as f32, (sq / n - mean * mean).max(0.0).sqrt() as f32)
}

/// Test images for a gallery: the mistakes first, then correct ones, in split order.
fn gallery(ds: &Dataset, predictions: &[u32]) -> Vec<Sample> {
    let wrong = (0..predictions.len()).filter(|&i| predictions[i] != ds.labels[i]);
    let right = (0..predictions.len()).filter(|&i| predictions[i] == ds.labels[i]);
    wrong
        .chain(right)
        .take(GALLERY_SIZE)
        .map(|i| Sample {
            index: i,
            label: ds.labels[i],
            predicted: predictions[i],
            image: ds.image(i).to_vec(),
        })
        .collect()
}

/// Answers one probe request.
fn answer(
    plan: &mut Plan,
    feed: &mut Feed,
    analysis: &Analysis,
    graph: &Graph,
    cam: &mut Option<GradCam>,
    ask: Ask,
) -> Event {
    match ask {
        Ask::Maps(node, image) => {
            Event::FeatureMaps(feature_maps(plan, feed, analysis, &node, image))
        }
        Ask::GradCam(request) => {
            let images = feed.len();
            Event::GradCam(gradcam::explain(
                cam,
                graph,
                &plan.params,
                &request,
                images,
                |p, indices, mode| {
                    feed.forward(p, indices, mode)
                        .map(|_| ())
                        .map_err(|e| TrainError::Cache(e).to_string())
                },
            ))
        }
    }
}

/// Runs image `image` of `feed` through the network (evaluation mode) and
/// returns layer `node`'s output. Layer timings are left as they were.
fn feature_maps(
    plan: &mut Plan,
    feed: &mut Feed,
    analysis: &Analysis,
    node: &str,
    image: usize,
) -> Result<FeatureMaps, ProbeError> {
    let step = plan
        .step_of(node)
        .ok_or_else(|| ProbeError::UnknownLayer(node.to_string()))?;
    if image >= feed.len() {
        return Err(ProbeError::NoSuchImage {
            image,
            images: feed.len(),
        });
    }
    let shape = match analysis
        .node(plan.steps[step].node)
        .and_then(|info| info.output_shape)
    {
        Some(Shape::Volume { h, w, c }) => (h as usize, w as usize, c as usize),
        Some(Shape::Vector(n)) => (1, 1, n as usize),
        None => return Err(ProbeError::NoShape(node.to_string())),
    };
    let nanos = plan.step_nanos.clone();
    let label = feed
        .forward(plan, &[image], Mode::Eval)
        .map_err(|e| ProbeError::Cache(e.to_string()))?
        .first()
        .copied()
        .unwrap_or(0);
    let probs = plan.probabilities();
    let predicted = if plan.classes == 1 {
        u32::from(probs.first().is_some_and(|&p| p > 0.5))
    } else {
        super::argmax(probs) as u32
    };
    // A step fused into a later one does not write its own output in a
    // full pass; a pass ending at it does.
    plan.forward_through(feed.images(), step, Mode::Eval);
    plan.step_nanos = nanos;
    let values = plan.activation(step).to_vec();
    if values.len() != shape.0 * shape.1 * shape.2 {
        return Err(ProbeError::WrongSize {
            node: node.to_string(),
            values: values.len(),
            h: shape.0,
            w: shape.1,
            c: shape.2,
        });
    }
    let ds = &feed.ds;
    Ok(FeatureMaps {
        node: node.to_string(),
        image,
        label,
        predicted,
        input: ds.image(image).to_vec(),
        input_shape: (ds.h, ds.w, ds.c),
        values,
        shape,
    })
}

fn layer_times(plan: &Plan, before: &[u64], batches: usize) -> Vec<LayerTime> {
    let mut v: Vec<LayerTime> = plan
        .steps
        .iter()
        .zip(plan.step_nanos.iter().zip(before))
        .map(|(s, (&now, &then))| LayerTime {
            name: s.name.clone(),
            ms_per_batch: (now - then) as f64 / 1e6 / batches.max(1) as f64,
        })
        .collect();
    v.sort_by(|a, b| b.ms_per_batch.total_cmp(&a.ms_per_batch));
    v
}

/// Saves the final weights to `--save`; when that fails, to a fallback file
/// (see [`fallback_path`]), and the error says where they went.
fn save_final(
    out: &TrainOutcome,
    config: &TrainConfig,
    ev: &Sender<Event>,
) -> Result<(), SaveError> {
    let Some(path) = &config.save else {
        return Ok(());
    };
    if out.params.is_empty() {
        return Ok(());
    }
    let extra: Vec<(String, Vec<usize>, &[f32])> = out
        .ema_stats
        .iter()
        .map(|(name, d)| (format!("{EMA_PREFIX}{name}"), vec![d.len()], d.as_slice()))
        .collect();
    if config.keep_unsaved {
        return match weights::save_trained(path, &out.params, &extra, &out.meta, &out.graph) {
            Ok(()) => Ok(()),
            Err(e) => {
                let unsaved = UnsavedWeights {
                    params: out
                        .params
                        .iter()
                        .map(|p| ParamTensor {
                            grad: Vec::new(),
                            ..p.clone()
                        })
                        .collect(),
                    extra: extra
                        .iter()
                        .map(|(name, _, d)| (name.clone(), d.to_vec()))
                        .collect(),
                    meta: out.meta.clone(),
                    design: out.graph.clone(),
                };
                let _ = ev.send(Event::SaveFailed {
                    message: format!("could not save the weights to {} ({e})", path.display()),
                    weights: Box::new(unsaved),
                });
                Ok(())
            }
        };
    }
    let fallbacks = fallback_paths(path, &out.meta.design);
    save_with_fallback(path, &fallbacks, |p| {
        weights::save_trained(p, &out.params, &extra, &out.meta, &out.graph)
    })?;
    let _ = ev.send(Event::Notice(format!(
        "weights saved to {}",
        path.display()
    )));
    Ok(())
}

/// Writes with `save` to `path`, else to the first of `fallbacks` that
/// takes the file; a fallback is an error that says where the file went.
fn save_with_fallback(
    path: &Path,
    fallbacks: &[PathBuf],
    save: impl Fn(&Path) -> Result<(), weights::WeightsError>,
) -> Result<(), SaveError> {
    let Err(source) = save(path) else {
        return Ok(());
    };
    let source = Box::new(source);
    let mut tried = Vec::new();
    for fallback in fallbacks {
        if let Some(dir) = fallback.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match save(fallback) {
            Ok(()) => {
                return Err(SaveError::SavedElsewhere {
                    path: path.to_path_buf(),
                    fallback: fallback.clone(),
                    source,
                });
            }
            Err(f) => tried.push(f.to_string()),
        }
    }
    Err(SaveError::NotSaved {
        path: path.to_path_buf(),
        source,
        tried,
    })
}

/// Where weights go when `--save` cannot be written: the user's data folder
/// (`$XDG_DATA_HOME/netloom` or `~/.local/share/netloom`), then the system's
/// temporary folder; the file is named after the design and the time.
pub fn fallback_paths(save: &Path, design: &str) -> Vec<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stem: String = design
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ext = save
        .extension()
        .map_or("safetensors".into(), |e| e.to_string_lossy().into_owned());
    let name = format!("{stem}-unsaved-{stamp}.{ext}");
    let mut dirs = Vec::new();
    match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(d) => dirs.push(PathBuf::from(d).join("netloom")),
        None => {
            if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
                dirs.push(PathBuf::from(home).join(".local/share/netloom"));
            }
        }
    }
    dirs.push(std::env::temp_dir().join("netloom"));
    dirs.into_iter().map(|d| d.join(&name)).collect()
}

fn finish_stopped(
    plan: &Plan,
    out: &mut TrainOutcome,
    config: &TrainConfig,
    ev: &Sender<Event>,
    epoch: u64,
    batch: usize,
) -> Result<RunEnd, SaveError> {
    out.params.clone_from(&plan.params);
    out.meta.epoch = epoch;
    save_final(out, config, ev)?;
    let _ = ev.send(Event::Stopped {
        epoch: epoch + 1,
        batch,
    });
    Ok(RunEnd::Stopped)
}

#[allow(clippy::too_many_arguments)]
fn non_finite(
    plan: &Plan,
    out: &mut TrainOutcome,
    config: &TrainConfig,
    ev: &Sender<Event>,
    loss: f32,
    epoch: u64,
    batch: usize,
    lr: f32,
) -> String {
    // The update was skipped, so the parameters are the last good ones.
    out.params.clone_from(&plan.params);
    out.meta.epoch = epoch;
    let saved = match save_final(out, config, ev) {
        Ok(()) => config
            .save
            .as_ref()
            .map(|p| format!(" (saved to {})", p.display()))
            .unwrap_or_default(),
        Err(e) => format!(" (could not save them: {e})"),
    };
    let what = if loss.is_infinite() {
        "the loss became infinite"
    } else if loss.is_nan() {
        "the loss or its gradients became NaN"
    } else {
        "an update made the weights non-finite"
    };
    format!(
        "{what} at epoch {}, batch {}; training stopped and kept the weights from before that batch{saved}. The learning rate ({lr:e}) is probably too high.",
        epoch + 1,
        batch + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::file;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netloom-trainer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_save_falls_back_and_says_where() {
        let dir = scratch("fallback");
        // Saving onto a folder fails.
        let target = dir.join("taken");
        std::fs::create_dir_all(&target).unwrap();
        let fallback = dir.join("fallback").join("w.safetensors");
        let save = |p: &Path| weights::save(p, &[], &WeightsMeta::default());
        let err = save_with_fallback(&target, &[target.clone(), fallback.clone()], save)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "they were saved to {} instead",
                fallback.display()
            )),
            "{err}"
        );
        assert!(weights::read(&fallback).is_ok());
        let err = save_with_fallback(&target, std::slice::from_ref(&target), save)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nor to a fallback file"), "{err}");
        assert!(save_with_fallback(&dir.join("ok.safetensors"), &[], save).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fallbacks_are_named_after_the_design() {
        let paths = fallback_paths(Path::new("/x/w.safetensors"), "res net/1");
        assert!(!paths.is_empty());
        for p in &paths {
            let name = p.file_name().unwrap().to_string_lossy();
            assert!(name.starts_with("res_net_1-unsaved-"), "{name}");
            assert!(name.ends_with(".safetensors"), "{name}");
        }
    }

    /// Two classes of 4×4 images: bright or dark.
    fn two_classes() -> data::Splits {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for i in 0..16 {
            let v = if i % 2 == 0 { 0.9 } else { 0.1 };
            images.extend(std::iter::repeat_n(v, 4 * 4 * 3));
            labels.push((i % 2) as u32);
        }
        let ds = Dataset::new(
            images,
            labels,
            data::Shape::new(4, 4, 3),
            vec!["bright".into(), "dark".into()],
        )
        .unwrap();
        data::Splits {
            train: ds,
            val: None,
            test: None,
            skipped: Vec::new(),
            notices: Vec::new(),
        }
    }

    fn tiny_graph() -> Graph {
        file::from_json(
            r#"{"format":"netloom-design","version":1,"nodes":[
            {"name":"in","kind":"input","height":4,"width":4,"channels":3},
            {"name":"gap","kind":"global_avg_pool"},
            {"name":"fc","kind":"dense","units":2},
            {"name":"sm","kind":"softmax"}],
            "edges":[{"from":"in","to":"gap"},{"from":"gap","to":"fc"},{"from":"fc","to":"sm"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_run_over_its_memory_budget_is_refused_with_the_estimate() {
        // The designer's Train goes through here too.
        let mut config =
            TrainConfig::new(tiny_graph(), DataSource::Splits(Box::new(two_classes())));
        config.autostart = true;
        config.memory_limit = Some(1000);
        let trainer = Trainer::spawn(config).unwrap();
        let outcome = trainer.join().unwrap();
        match outcome.end {
            RunEnd::Failed(msg) => {
                assert!(msg.starts_with("training `untitled` needs ~"), "{msg}");
                assert!(msg.contains("at batch 32; --memory-limit is 1 kB"), "{msg}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_checkpoint_is_reported_and_retried_and_the_run_goes_on() {
        let dir = scratch("checkpoint");
        let mut config =
            TrainConfig::new(tiny_graph(), DataSource::Splits(Box::new(two_classes())));
        config.epochs = 3;
        config.batch_size = 4;
        config.val_fraction = 0.0;
        config.test_fraction = 0.0;
        config.autostart = true;
        // A folder in the checkpoint's place: every checkpoint write fails.
        let blocked = dir.join("ck.safetensors");
        std::fs::create_dir_all(&blocked).unwrap();
        config.checkpoint = Some(blocked);
        let save = dir.join("w.safetensors");
        config.save = Some(save.clone());
        let trainer = Trainer::spawn(config).unwrap();
        let notices: Vec<String> = trainer
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::Notice(n) => Some(n),
                _ => None,
            })
            .collect();
        let outcome = trainer.join().unwrap();
        assert_eq!(outcome.end, RunEnd::Finished, "{notices:?}");
        let failed = notices
            .iter()
            .filter(|n| n.contains("could not be written") && n.contains("tries again"))
            .count();
        assert_eq!(failed, 3, "{notices:?}");
        assert!(weights::read(&save).is_ok(), "the final save still happens");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
