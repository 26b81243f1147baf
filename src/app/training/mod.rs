//! Training from the designer: the run setup, the runs of this session and
//! the one trainer thread talking to them.
//!
//! The session never touches a network itself: it starts a
//! [`Trainer`](crate::train::Trainer) on a copy of the design and turns the
//! trainer's events into per-run records that the panels draw
//! ([`panel`], [`views`]). Everything a user does here is a
//! [`Command`](super::command::Command) applied by `NetloomApp::execute`.

pub mod augment_preview;
pub mod estimate;
pub mod evaluate;
pub mod lr_finder;
pub mod pair;
pub mod panel;
pub mod sweep;
pub mod sweep_view;
pub mod views;

use crate::data::AugmentConfig;
use crate::graph::Graph;
use crate::infer::Analysis;
use crate::train::gradcam::{GradCamMaps, GradCamRequest};
use crate::train::trainer::{
    DataSource, EpochStats, Event, FeatureMaps, LayerLive, RunInfo, RunState, TestResult,
    TrainConfig, Trainer, TrainerHandle, UnsavedWeights,
};
use crate::train::{Command as TrainerCommand, OptimizerConfig, OptimizerKind, Schedule};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The optimizer choices the setup offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerChoice {
    Adam,
    SgdMomentum,
    Nesterov,
}

impl OptimizerChoice {
    pub const ALL: [OptimizerChoice; 3] = [
        OptimizerChoice::Adam,
        OptimizerChoice::SgdMomentum,
        OptimizerChoice::Nesterov,
    ];

    pub fn label(self) -> &'static str {
        match self {
            OptimizerChoice::Adam => "Adam",
            OptimizerChoice::SgdMomentum => "SGD + momentum 0.9",
            OptimizerChoice::Nesterov => "SGD + Nesterov 0.9",
        }
    }

    fn kind(self) -> OptimizerKind {
        match self {
            OptimizerChoice::Adam => OptimizerKind::adam(),
            OptimizerChoice::SgdMomentum => OptimizerKind::sgd_momentum(),
            OptimizerChoice::Nesterov => OptimizerKind::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
        }
    }
}

/// The learning-rate schedules the setup offers (spans set from the run length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleChoice {
    Constant,
    /// ×0.1 after a third and two thirds of the run.
    Step,
    Cosine,
}

impl ScheduleChoice {
    pub const ALL: [ScheduleChoice; 3] = [
        ScheduleChoice::Constant,
        ScheduleChoice::Step,
        ScheduleChoice::Cosine,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ScheduleChoice::Constant => "constant",
            ScheduleChoice::Step => "step ×0.1 at ⅓, ⅔",
            ScheduleChoice::Cosine => "cosine to 1%",
        }
    }

    /// The schedule with spans in epochs (the trainer converts them to batches).
    fn schedule_in_epochs(self, epochs: u64) -> Schedule {
        match self {
            ScheduleChoice::Constant => Schedule::Constant,
            ScheduleChoice::Step => Schedule::Step {
                every: (epochs / 3).max(1),
                gamma: 0.1,
            },
            ScheduleChoice::Cosine => Schedule::Cosine {
                total: epochs.max(1),
                min_factor: 0.01,
            },
        }
    }
}

/// Where the next run's weights start.
#[derive(Clone, Debug, PartialEq)]
pub enum StartFrom {
    /// Seeded initialisation: the same seed gives the same start.
    Fresh,
    /// The weights the last run ended with.
    LastRun,
    /// A safetensors file (tensors matched by name and shape).
    File(PathBuf),
}

/// Everything the run setup panel edits.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSetup {
    /// `None`: the embedded hand-digits set.
    pub dataset: Option<PathBuf>,
    pub epochs: u64,
    pub batch_size: usize,
    pub optimizer: OptimizerChoice,
    pub learning_rate: f32,
    pub schedule: ScheduleChoice,
    pub weight_decay: f32,
    pub augment: AugmentConfig,
    pub seed: u64,
    pub start_from: StartFrom,
}

impl Default for RunSetup {
    fn default() -> Self {
        RunSetup {
            dataset: None,
            epochs: 5,
            batch_size: 32,
            optimizer: OptimizerChoice::Adam,
            learning_rate: 1e-3,
            schedule: ScheduleChoice::Constant,
            weight_decay: 0.0,
            augment: AugmentConfig::default(),
            seed: 42,
            start_from: StartFrom::Fresh,
        }
    }
}

impl RunSetup {
    /// The trainer's configuration for this setup: the design, dataset,
    /// optimizer and schedule, training in the background (low priority) and
    /// starting at once. Where weights start from and go is the caller's.
    pub fn train_config(&self, graph: &Graph) -> TrainConfig {
        let data = self
            .dataset
            .clone()
            .unwrap_or_else(crate::data::default_dataset_dir);
        let mut config = TrainConfig::new(graph.clone(), DataSource::Path(data));
        config.epochs = self.epochs;
        config.batch_size = self.batch_size;
        config.seed = self.seed;
        config.augment = self.augment;
        config.autostart = true;
        config.background = true;
        config.optimizer = OptimizerConfig {
            kind: self.optimizer.kind(),
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            schedule: self.schedule.schedule_in_epochs(self.epochs),
        };
        config.schedule_in_epochs = true;
        config
    }

    pub fn dataset_label(&self) -> String {
        match &self.dataset {
            None => "hand-digits (built in)".into(),
            Some(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }

    /// One line describing the run, for its label in overlays.
    pub fn describe(&self) -> String {
        let mut aug = Vec::new();
        let a = &self.augment;
        for (on, name) in [
            (a.mirror, "mirror"),
            (a.crop, "crop"),
            (a.colour_shift, "colour"),
            (a.pca, "PCA"),
            (a.rotate, "rotate"),
            (a.shear, "shear"),
            (a.elastic, "warp"),
        ] {
            if on {
                aug.push(name);
            }
        }
        format!(
            "{} lr {} · batch {} · {} ep{}",
            self.optimizer.label(),
            self.learning_rate,
            self.batch_size,
            self.epochs,
            if aug.is_empty() {
                String::new()
            } else {
                format!(" · aug {}", aug.join("+"))
            }
        )
    }
}

/// How a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// Loading data or caching frozen activations (what, done, total).
    Preparing(String, usize, usize),
    Waiting,
    Running,
    Paused,
    Finished,
    Stopped,
    Failed(String),
}

impl RunStatus {
    pub fn label(&self) -> String {
        match self {
            RunStatus::Preparing(what, done, total) => format!("{what} {done}/{total}"),
            RunStatus::Waiting => "Waiting".into(),
            RunStatus::Running => "Running".into(),
            RunStatus::Paused => "Paused".into(),
            RunStatus::Finished => "Finished".into(),
            RunStatus::Stopped => "Stopped".into(),
            RunStatus::Failed(_) => "Failed".into(),
        }
    }

    pub fn is_over(&self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Stopped | RunStatus::Failed(_)
        )
    }
}

/// Where a run is within its epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub epoch: u64,
    pub epochs: u64,
    pub batch: usize,
    pub batches: usize,
    pub images_per_sec: f64,
    pub eta: Duration,
}

impl Progress {
    /// Fraction of the whole run done.
    pub fn fraction(&self) -> f32 {
        let total = self.epochs.max(1) as f64 * self.batches.max(1) as f64;
        let done = (self.epoch.saturating_sub(1)) as f64 * self.batches as f64 + self.batch as f64;
        (done / total).clamp(0.0, 1.0) as f32
    }
}

/// One training run of this session and everything it reported.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// 1-based, in start order.
    pub id: usize,
    pub design: String,
    /// The design's MACs per image when the run started.
    pub macs: u64,
    /// The design's parameters (Keras convention) when the run started.
    pub params: u64,
    /// The tab and design generation the run was started from.
    pub tab: usize,
    pub generation: u64,
    pub setup: RunSetup,
    pub info: Option<RunInfo>,
    pub status: RunStatus,
    pub progress: Option<Progress>,
    /// (epochs done, loss) per batch; x is fractional epochs.
    pub batch_loss: Vec<[f64; 2]>,
    /// (epochs done, learning rate) per batch.
    pub learning_rate: Vec<[f64; 2]>,
    pub epochs: Vec<EpochStats>,
    pub test: Option<TestResult>,
    pub notices: Vec<String>,
    /// Where the trainer saved the final weights.
    pub weights: Option<PathBuf>,
    /// The final weights, when the trainer could not save them (kept
    /// until the user saves them somewhere), with the reason.
    pub unsaved: Option<(String, Box<UnsavedWeights>)>,
    /// Drawn in the overlays.
    pub visible: bool,
    /// The sweep (its label) and value this run trained, if any.
    pub sweep: Option<(String, f64)>,
    /// The Run setup's time estimate for this design and setup, when it had one.
    pub estimate: Option<estimate::StartEstimate>,
    /// The design the run trains (as it was when the run started).
    pub graph: Option<Arc<Graph>>,
    /// The run's test accuracy with ten views per image, once evaluated.
    pub multi_crop: Option<evaluate::MultiCropResult>,
}

impl RunRecord {
    /// A run about to load its data.
    pub fn new(id: usize, design: String, macs: u64, setup: RunSetup) -> Self {
        RunRecord {
            id,
            design,
            macs,
            params: 0,
            tab: 0,
            generation: 0,
            setup,
            info: None,
            status: RunStatus::Preparing("loading data".into(), 0, 0),
            progress: None,
            batch_loss: Vec::new(),
            learning_rate: Vec::new(),
            epochs: Vec::new(),
            test: None,
            notices: Vec::new(),
            weights: None,
            unsaved: None,
            visible: true,
            sweep: None,
            estimate: None,
            graph: None,
            multi_crop: None,
        }
    }

    pub fn label(&self) -> String {
        format!("#{} {}", self.id, self.design)
    }

    /// Training time so far: the sum of the finished epochs' seconds.
    pub fn seconds(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum()
    }

    /// Time left: from the Run setup's estimate before the first batches,
    /// then blended into the measured time per batch.
    pub fn eta(&self) -> Option<Duration> {
        let epochs = self.info.as_ref().map_or(self.setup.epochs, |i| i.epochs);
        estimate::eta(self.estimate.as_ref(), self.progress.as_ref(), epochs)
    }

    /// The last validation accuracy (the run's position in the trade-off scatter).
    pub fn val_acc(&self) -> Option<f32> {
        self.epochs.iter().rev().find_map(|e| e.val_acc)
    }

    /// Batch losses smoothed by an exponential moving average (weight 0.9 on the past).
    pub fn smoothed_loss(&self) -> Vec<[f64; 2]> {
        let mut avg = None;
        self.batch_loss
            .iter()
            .map(|&[x, y]| {
                let a = match avg {
                    None => y,
                    Some(a) => 0.9 * a + 0.1 * y,
                };
                avg = Some(a);
                [x, a]
            })
            .collect()
    }

    /// Per-epoch metrics as CSV rows (with a header line).
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "run,design,macs,epoch,train_loss,train_acc,val_loss,val_acc,learning_rate,seconds\n",
        );
        let opt = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
        for e in &self.epochs {
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{:.3}\n",
                self.id,
                csv_field(&self.design),
                self.macs,
                e.epoch,
                e.train_loss,
                e.train_acc,
                opt(e.val_loss),
                opt(e.val_acc),
                e.learning_rate,
                e.seconds
            ));
        }
        s
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The feature-map view: which layer and image, and the trainer's answer.
#[derive(Default)]
pub struct Probe {
    pub node: Option<String>,
    pub image: usize,
    /// A request is on its way to the trainer.
    pub pending: bool,
    pub result: Option<Result<FeatureMaps, String>>,
    /// Bumped with every new result (views rebuild their textures then).
    pub version: u64,
}

/// The Grad-CAM overlay of the Predictions gallery: whether it is on, for
/// which class, and the trainer's answer.
#[derive(Default)]
pub struct CamView {
    pub on: bool,
    /// `None`: each image's predicted class.
    pub class: Option<u32>,
    pub pending: bool,
    /// The run (id) the maps were asked of, and the answer.
    pub result: Option<(usize, Result<GradCamMaps, String>)>,
    /// Bumped with every new result (the gallery rebuilds its overlays then).
    pub version: u64,
}

/// The runs of this session and the trainer of the newest one.
pub struct TrainingSession {
    pub setup: RunSetup,
    pub runs: Vec<RunRecord>,
    /// The trainer of the newest run; kept after the run ends so the
    /// feature-map view can still ask it (it lingers until dropped).
    handle: Option<TrainerHandle>,
    /// Per-layer figures of the newest run, by layer name.
    pub live: HashMap<String, LayerLive>,
    /// Ask for activation statistics and gradient norms.
    pub watch: bool,
    pub probe: Probe,
    pub cam: CamView,
    /// Times a few steps of the design for the Run setup's estimate.
    pub step_timer: estimate::StepTimer,
    /// Why the last Train was refused.
    pub refusal: Option<String>,
    /// Where runs save their final weights (a per-process temporary folder).
    runs_dir: PathBuf,
    /// The runs of a sweep still to start, one after another.
    pub sweep: Option<sweep::SweepQueue>,
    /// The Compare view's "Train both": designs still to start and the pair's runs.
    pub pair: Option<pair::PairQueue>,
    /// The run (its id) clicked in the Runs table, drawn highlighted in every plot.
    pub highlighted: Option<usize>,
    /// The runs picked in the Runs table for an ensemble.
    pub picked: BTreeSet<usize>,
    /// The multi-crop or ensemble evaluation in progress.
    pub evaluation: Option<evaluate::EvalJob>,
    /// Ensembles evaluated this session, oldest first.
    pub ensembles: Vec<evaluate::EnsembleResult>,
    /// Why the last evaluation did not finish.
    pub eval_error: Option<String>,
    /// The Run setup's augmentation previews.
    pub previews: augment_preview::AugmentPreviews,
}

impl TrainingSession {
    /// Where runs save their final weights: a folder of this session's
    /// own, so tests can point it somewhere unwritable.
    pub fn set_runs_dir(&mut self, dir: PathBuf) {
        self.runs_dir = dir;
    }
}

/// Sessions created in this process (each gets its own runs folder).
static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Default for TrainingSession {
    fn default() -> Self {
        TrainingSession {
            setup: RunSetup::default(),
            runs: Vec::new(),
            handle: None,
            live: HashMap::new(),
            watch: false,
            probe: Probe::default(),
            cam: CamView::default(),
            step_timer: estimate::StepTimer::default(),
            refusal: None,
            sweep: None,
            pair: None,
            highlighted: None,
            picked: BTreeSet::new(),
            evaluation: None,
            ensembles: Vec::new(),
            eval_error: None,
            previews: Default::default(),
            runs_dir: std::env::temp_dir().join(format!(
                "netloom-runs-{}-{}",
                std::process::id(),
                SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
        }
    }
}

impl Drop for TrainingSession {
    fn drop(&mut self) {
        drop(self.handle.take());
        let _ = std::fs::remove_dir_all(&self.runs_dir);
    }
}

/// Why the training session refused or could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A run is active; the text says what it prevents ("starting another").
    #[error("A run is already in progress: stop it before {0}.")]
    Busy(&'static str),
    /// The design cannot be trained ([`design_problem`] says why).
    #[error("{0}")]
    Design(String),
    /// One design of Train both cannot be trained.
    #[error("{which} ({design}): {why}")]
    PairDesign {
        which: &'static str,
        design: String,
        why: String,
    },
    #[error("Train both needs two designs: pin one as A first.")]
    PairNeedsTwo,
    #[error(
        "Train both starts A and B alike: choose fresh weights or a weights file, not the last run's."
    )]
    PairFromLastRun,
    #[error("No earlier run left weights to continue from: choose fresh weights or load a file.")]
    NoLastRunWeights,
    #[error("Could not create {}: {source}", path.display())]
    RunsFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Could not start the trainer thread: {0}")]
    TrainerThread(#[source] std::io::Error),
    #[error("No run is in progress.")]
    NoActiveRun,
    #[error("The trainer has ended.")]
    TrainerEnded,
    #[error("Train a run first: feature maps come from the trained network.")]
    NothingToProbe,
    #[error("Train a run first: Grad-CAM explains a trained network.")]
    NoRunForGradCam,
    #[error("Grad-CAM maps appear when the newest run has finished and shows its test images.")]
    NoTestImages,
    #[error("The newest run's trainer has ended: train again to see Grad-CAM maps.")]
    GradCamTrainerEnded,
    #[error("No run has finished or stopped yet, so there are no weights to save.")]
    NoWeightsToSave,
    #[error("Could not save weights to {}: {source}", path.display())]
    SaveWeights {
        path: PathBuf,
        #[source]
        source: crate::train::weights::WeightsError,
    },
    #[error("Could not save weights to {}: {source}", path.display())]
    CopyWeights {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A weights file to start from could not be read.
    #[error(transparent)]
    Weights(#[from] crate::train::weights::WeightsError),
    #[error("Could not keep the imported weights: {0}")]
    ImportedWeights(String),
    #[error("Could not write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("No runs yet: there are no metrics to export.")]
    NoRuns,
    #[error("The sweep has no values.")]
    EmptySweep,
    /// One value of a sweep gives a design that cannot be trained.
    #[error("{target} = {value}: {why}")]
    SweepValue {
        target: String,
        value: f64,
        why: String,
    },
    #[error(transparent)]
    SweepEdit(#[from] crate::train::experiment::DesignEditError),
    #[error("batch size {0}: must be a whole number of at least 1")]
    SweepBatchSize(f64),
    #[error("learning rate {0}: must be positive")]
    SweepLearningRate(f64),
    #[error("No sweep yet: there is no sweep table to export.")]
    NoSweep,
    #[error("The sweep of {0} has no finished run yet: there is nothing to export.")]
    SweepUnfinished(String),
    #[error(transparent)]
    Evaluation(#[from] evaluate::EvalJobError),
    #[error(transparent)]
    LrFinder(#[from] lr_finder::LrFinderError),
}

impl TrainingSession {
    /// The newest run, if any.
    pub fn current(&self) -> Option<&RunRecord> {
        self.runs.last()
    }

    /// Whether a run is loading, waiting, running or paused.
    pub fn is_active(&self) -> bool {
        self.handle.is_some() && self.current().is_some_and(|r| !r.status.is_over())
    }

    /// Whether the feature-map view can ask a trained network.
    pub fn can_probe(&self) -> bool {
        self.handle.is_some()
            && self
                .current()
                .is_some_and(|r| !matches!(r.status, RunStatus::Failed(_)))
    }

    /// Starts a run of `graph` with the current setup. Refuses (and says
    /// why) when a run is active or the design has errors.
    pub fn start(
        &mut self,
        graph: &Graph,
        analysis: &Analysis,
        tab: usize,
        generation: u64,
    ) -> Result<(), SessionError> {
        self.refusal = None;
        let refuse = |session: &mut Self, why: SessionError| {
            session.refusal = Some(why.to_string());
            Err(why)
        };
        if self.is_active() {
            return refuse(self, SessionError::Busy("starting another"));
        }
        if let Some(why) = design_problem(graph, analysis) {
            return refuse(self, SessionError::Design(why));
        }
        let init_weights = match &self.setup.start_from {
            StartFrom::Fresh => None,
            StartFrom::LastRun => match self.runs.iter().rev().find_map(|r| r.weights.clone()) {
                Some(p) if p.exists() => Some(p),
                _ => return refuse(self, SessionError::NoLastRunWeights),
            },
            StartFrom::File(p) => Some(p.clone()),
        };
        if let Err(source) = std::fs::create_dir_all(&self.runs_dir) {
            let path = self.runs_dir.clone();
            return refuse(self, SessionError::RunsFolder { path, source });
        }
        let id = self.runs.len() + 1;
        let weights = self.runs_dir.join(format!("run-{id}.safetensors"));
        let setup = self.setup.clone();
        let mut config = setup.train_config(graph);
        config.init_weights = init_weights;
        config.save = Some(weights.clone());
        config.keep_unsaved = true;
        config.linger = true;
        // The previous trainer (lingering for probes) ends here.
        drop(self.handle.take());
        let handle = match Trainer::spawn(config) {
            Ok(h) => h,
            Err(e) => return refuse(self, SessionError::TrainerThread(e)),
        };
        if self.watch {
            handle.send(TrainerCommand::Watch(true));
        }
        self.handle = Some(handle);
        self.live.clear();
        self.probe = Probe {
            node: self.probe.node.take(),
            image: self.probe.image,
            ..Probe::default()
        };
        let macs = analysis.nodes.iter().flatten().map(|n| n.cost.macs).sum();
        let mut run = RunRecord::new(id, graph.name.clone(), macs, setup);
        run.graph = Some(Arc::new(graph.clone()));
        run.params = analysis
            .totals(&crate::infer::Conventions::default())
            .total_params;
        (run.tab, run.generation) = (tab, generation);
        run.estimate = self.start_estimate((tab, generation));
        self.runs.push(run);
        Ok(())
    }

    /// Passes a control command to the active run.
    pub fn control(&mut self, command: TrainerCommand) -> Result<(), SessionError> {
        if !self.is_active() {
            return Err(SessionError::NoActiveRun);
        }
        match &self.handle {
            Some(h) if h.send(command) => Ok(()),
            _ => Err(SessionError::TrainerEnded),
        }
    }

    /// Switches activation statistics on or off (for this and later runs).
    pub fn set_watch(&mut self, on: bool) {
        self.watch = on;
        if let Some(h) = &self.handle {
            h.send(TrainerCommand::Watch(on));
        }
        if !on {
            for l in self.live.values_mut() {
                l.stats = None;
            }
        }
    }

    /// Asks the trainer for `node`'s feature maps on test image `image`.
    pub fn probe(&mut self, node: String, image: usize) -> Result<(), SessionError> {
        self.probe.node = Some(node.clone());
        self.probe.image = image;
        match &self.handle {
            Some(h) if self.can_probe() && h.send(TrainerCommand::Probe { node, image }) => {
                self.probe.pending = true;
                Ok(())
            }
            _ => Err(SessionError::NothingToProbe),
        }
    }

    /// Switches the gallery's Grad-CAM overlay (for `class`, `None`: the
    /// predicted one) and, when on, asks the newest run's trainer for the
    /// maps of the gallery's images.
    pub fn show_grad_cam(&mut self, on: bool, class: Option<u32>) -> Result<(), SessionError> {
        self.cam.on = on;
        self.cam.class = class;
        if !on {
            return Ok(());
        }
        let Some(run) = self.current() else {
            return Err(SessionError::NoRunForGradCam);
        };
        let Some(test) = run.test.as_ref().filter(|t| !t.samples.is_empty()) else {
            return Err(SessionError::NoTestImages);
        };
        let request = GradCamRequest {
            layer: None,
            images: test.samples.iter().map(|s| s.index).collect(),
            class,
        };
        let id = run.id;
        match &self.handle {
            Some(h) if self.can_probe() && h.send(TrainerCommand::GradCam(request)) => {
                self.cam.pending = true;
                self.cam.result = self.cam.result.take().filter(|(r, _)| *r == id);
                Ok(())
            }
            _ => Err(SessionError::GradCamTrainerEnded),
        }
    }

    /// Drops the weights the next run would continue from: it starts from
    /// the seeded initialisation again. Stops an active run.
    pub fn reset_weights(&mut self) {
        if self.is_active() {
            let _ = self.control(TrainerCommand::Stop);
        }
        self.setup.start_from = StartFrom::Fresh;
    }

    /// Takes in everything the trainer reported since the last frame.
    /// Returns messages for the user (failures and notices).
    pub fn poll(&mut self) -> Vec<(String, bool)> {
        let Some(handle) = &self.handle else {
            return Vec::new();
        };
        let events = handle.drain();
        let mut messages = Vec::new();
        for event in events {
            self.take_event(event, &mut messages);
        }
        if self.sweep.is_some()
            && let Some(Err(why)) = self.advance_sweep()
        {
            messages.push((format!("The sweep stopped: {why}"), true));
        }
        if self.pair.is_some()
            && let Some(Err(why)) = self.advance_pair()
        {
            messages.push((format!("Training both designs stopped: {why}"), true));
        }
        messages.extend(self.poll_evaluation());
        messages
    }

    /// Acts on a request of the Runs tab's evaluation controls; `ctx` is
    /// asked for frames while the evaluation thread works.
    pub fn evaluate(
        &mut self,
        request: evaluate::EvalRequest,
        ctx: &egui::Context,
    ) -> Result<(), SessionError> {
        use evaluate::{EvalRequest, EvalTarget};
        let target = match request {
            EvalRequest::Pick { run, on } => {
                if on {
                    self.picked.insert(run);
                } else {
                    self.picked.remove(&run);
                }
                return Ok(());
            }
            EvalRequest::Cancel => {
                if let Some(job) = &self.evaluation {
                    job.cancel();
                }
                return Ok(());
            }
            EvalRequest::MultiCrop(run) => EvalTarget::MultiCrop(run),
            EvalRequest::Ensemble { multi_crop } => EvalTarget::Ensemble {
                runs: self.picked.iter().copied().collect(),
                multi_crop,
            },
        };
        if self.evaluation.is_some() {
            return Err(evaluate::EvalJobError::Busy.into());
        }
        self.eval_error = None;
        match evaluate::start(&self.runs, target, Some(ctx.clone())) {
            Ok(job) => {
                self.evaluation = Some(job);
                Ok(())
            }
            Err(e) => {
                self.eval_error = Some(e.to_string());
                Err(e.into())
            }
        }
    }

    /// Takes the evaluation's answer if it came: the multi-crop figure onto
    /// its run, an ensemble into the list. Returns messages for the user.
    fn poll_evaluation(&mut self) -> Vec<(String, bool)> {
        use evaluate::{EnsembleResult, EvalJobError, EvalTarget, MultiCropResult};
        let Some(answer) = self.evaluation.as_ref().and_then(|j| j.poll()) else {
            return Vec::new();
        };
        let Some(job) = self.evaluation.take() else {
            return Vec::new();
        };
        let answer = match answer {
            Ok(a) => a,
            Err(EvalJobError::Cancelled) => {
                return vec![(
                    format!("Stopped evaluating {}.", job.target.describe()),
                    false,
                )];
            }
            Err(e) => {
                let text = format!("Evaluating {} failed: {e}", job.target.describe());
                self.eval_error = Some(text.clone());
                return vec![(text, true)];
            }
        };
        let single = |id: usize| {
            answer
                .single
                .iter()
                .find(|(r, _)| *r == id)
                .map_or(f32::NAN, |(_, e)| e.accuracy)
        };
        match &job.target {
            EvalTarget::MultiCrop(id) => {
                if let Some(run) = self.runs.iter_mut().find(|r| r.id == *id) {
                    run.multi_crop = Some(MultiCropResult {
                        accuracy: answer.combined.accuracy,
                        single: single(*id),
                        views: answer.combined.views,
                        images: answer.combined.images,
                    });
                }
            }
            EvalTarget::Ensemble { runs, .. } => {
                let design = self
                    .runs
                    .iter()
                    .find(|r| Some(&r.id) == runs.first())
                    .map_or_else(String::new, |r| r.design.clone());
                self.ensembles.push(EnsembleResult {
                    runs: runs.clone(),
                    design,
                    accuracy: answer.combined.accuracy,
                    views: answer.combined.views,
                    images: answer.combined.images,
                    single: runs.iter().map(|&r| (r, single(r))).collect(),
                });
            }
        }
        Vec::new()
    }

    fn take_event(&mut self, event: Event, messages: &mut Vec<(String, bool)>) {
        let Some(run) = self.runs.last_mut() else {
            return;
        };
        let runs_dir = &self.runs_dir;
        match event {
            Event::DataLoading { done, total } => {
                run.status = RunStatus::Preparing("loading data".into(), done, total);
            }
            Event::Caching { done, total } => {
                run.status = RunStatus::Preparing("caching frozen layers".into(), done, total);
            }
            Event::Notice(text) => {
                // The session's own copy of the weights is an internal detail.
                if !text.contains(&*runs_dir.to_string_lossy()) {
                    messages.push((text.clone(), false));
                    run.notices.push(text);
                }
            }
            Event::Started(info) => run.info = Some(info),
            Event::State(state) => {
                run.status = match state {
                    RunState::Waiting => RunStatus::Waiting,
                    RunState::Running => RunStatus::Running,
                    RunState::Paused => RunStatus::Paused,
                };
            }
            Event::Batch {
                epoch,
                batch,
                batches,
                loss,
                lr,
                images_per_sec,
                eta,
            } => {
                let x = (epoch - 1) as f64 + batch as f64 / batches.max(1) as f64;
                run.batch_loss.push([x, loss as f64]);
                run.learning_rate.push([x, lr as f64]);
                run.progress = Some(Progress {
                    epoch,
                    epochs: run.info.as_ref().map_or(run.setup.epochs, |i| i.epochs),
                    batch,
                    batches,
                    images_per_sec,
                    eta,
                });
                if matches!(run.status, RunStatus::Preparing(..) | RunStatus::Waiting) {
                    run.status = RunStatus::Running;
                }
            }
            Event::Epoch(stats) => run.epochs.push(stats),
            Event::Finished(test) => {
                run.status = RunStatus::Finished;
                run.test = Some(test);
                run.weights = weights_file(runs_dir, run.id);
            }
            Event::Stopped { .. } => {
                run.status = RunStatus::Stopped;
                run.weights = weights_file(runs_dir, run.id);
            }
            Event::Failed(why) => {
                messages.push((format!("Training failed: {why}"), true));
                run.status = RunStatus::Failed(why);
                run.weights = weights_file(runs_dir, run.id);
            }
            Event::Layers(layers) => {
                for l in layers {
                    self.live.insert(l.name.clone(), l);
                }
            }
            Event::FeatureMaps(result) => {
                self.probe.pending = false;
                self.probe.result = Some(result.map_err(|e| e.to_string()));
                self.probe.version += 1;
            }
            Event::SaveFailed { message, weights } => {
                messages.push((
                    format!("The weights of {} were not saved: {message}. They are kept in memory: save them with Save As.", run.label()),
                    true,
                ));
                run.unsaved = Some((message, weights));
            }
            Event::GradCam(result) => {
                if let Err(why) = &result {
                    messages.push((format!("Grad-CAM failed: {why}"), true));
                }
                self.cam.pending = false;
                self.cam.result = Some((run.id, result.map_err(|e| e.to_string())));
                self.cam.version += 1;
            }
        }
    }

    /// Saves the newest run's final weights to `path`: the trainer's file,
    /// or the weights kept in memory when the trainer could not save them
    /// (which then count as saved there).
    pub fn save_weights(&mut self, path: &Path) -> Result<(), SessionError> {
        let Some(run) = self
            .runs
            .iter_mut()
            .rev()
            .find(|r| r.unsaved.is_some() || r.weights.is_some())
        else {
            return Err(SessionError::NoWeightsToSave);
        };
        if let Some((_, weights)) = &run.unsaved {
            weights
                .save(path)
                .map_err(|source| SessionError::SaveWeights {
                    path: path.to_path_buf(),
                    source,
                })?;
            run.unsaved = None;
            run.weights = Some(path.to_path_buf());
            return Ok(());
        }
        let from = run.weights.clone().unwrap_or_default();
        std::fs::copy(&from, path)
            .map(|_| ())
            .map_err(|source| SessionError::CopyWeights {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The Run setup's seconds-per-epoch line for the design of tab `tab`
    /// at `generation` (measuring again when it changed).
    pub fn time_estimate(
        &mut self,
        graph: &Graph,
        analysis: &Analysis,
        tab: usize,
        generation: u64,
    ) -> String {
        let training = self.is_active();
        self.step_timer
            .refresh(graph, analysis, (tab, generation), &self.setup, training);
        estimate::estimate_text(&self.step_timer, &self.setup, self.epoch_images())
    }

    /// Training images per epoch of the setup's dataset, as far as known before loading it.
    fn epoch_images(&self) -> Option<usize> {
        let known = self
            .runs
            .iter()
            .rev()
            .filter(|r| r.setup.dataset == self.setup.dataset)
            .find_map(|r| r.info.as_ref().map(|i| i.train_images));
        estimate::epoch_images(&self.setup, known)
    }

    /// The Run setup's estimate for a run of design version `at` with the current setup.
    fn start_estimate(&self, at: (usize, u64)) -> Option<estimate::StartEstimate> {
        let ms_per_step = self.step_timer.measured_for(at, &self.setup)?;
        Some(estimate::StartEstimate {
            ms_per_step,
            batches_per_epoch: self
                .epoch_images()
                .map(|n| n.div_ceil(self.setup.batch_size.max(1))),
        })
    }

    /// Whether run `id` (if any) is over without having finished (a queue of
    /// runs stops there).
    fn ended_unfinished(&self, id: Option<usize>) -> bool {
        id.is_some_and(|id| {
            self.runs
                .iter()
                .any(|r| r.id == id && r.status != RunStatus::Finished)
        })
    }

    /// The newest run whose weights are only in memory, with why they were not saved.
    pub fn unsaved_weights(&self) -> Option<(&RunRecord, &str)> {
        self.runs
            .iter()
            .rev()
            .find_map(|r| r.unsaved.as_ref().map(|(why, _)| (r, why.as_str())))
    }

    /// Uses `path` as the next run's initial weights (checked now, so a bad
    /// file is reported at once rather than when training starts).
    pub fn load_weights(&mut self, path: PathBuf) -> Result<String, SessionError> {
        let file = crate::train::weights::read(&path)?;
        Ok(self.start_from_file(path, file.tensors.len()))
    }

    /// Makes the next run start from `path`, a weights file already read
    /// (with `tensors` tensors); says so.
    pub fn start_from_file(&mut self, path: PathBuf, tensors: usize) -> String {
        let text = format!(
            "The next run starts from {} ({tensors} tensors; matched by layer name and shape).",
            path.display()
        );
        self.setup.start_from = StartFrom::File(path);
        text
    }

    /// Makes the weights of an imported model the next run's starting
    /// point: they are written to this session's runs folder as a weights
    /// file, which the next run starts from (matched by layer name and
    /// shape, as any weights file). Returns what to tell the user (nothing
    /// when the model carries no weights).
    pub fn start_from_import(
        &mut self,
        imported: &crate::interop::onnx::Imported,
    ) -> Result<Option<String>, SessionError> {
        if imported.weights.is_empty() {
            return Ok(None);
        }
        let tensors: Vec<(String, Vec<usize>, &[f32])> = imported
            .weights
            .iter()
            .map(|(name, (shape, data))| (name.clone(), shape.clone(), data.as_slice()))
            .collect();
        std::fs::create_dir_all(&self.runs_dir).map_err(|source| SessionError::RunsFolder {
            path: self.runs_dir.clone(),
            source,
        })?;
        let stem: String = imported
            .graph
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.runs_dir.join(format!("{stem}-imported.safetensors"));
        crate::train::weights::save_tensors(&path, &tensors, None, None)
            .map_err(|e| SessionError::ImportedWeights(e.to_string()))?;
        self.setup.start_from = StartFrom::File(path);
        Ok(Some(format!(
            "The next run starts from its {} imported weight tensors.",
            tensors.len()
        )))
    }

    /// All runs' per-epoch metrics as one CSV file.
    pub fn metrics_csv(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.runs.iter().enumerate() {
            let csv = r.csv();
            if i == 0 {
                out.push_str(&csv);
            } else if let Some((_, rows)) = csv.split_once('\n') {
                out.push_str(rows);
            }
        }
        out
    }

    /// The newest run in a few figures (for `--frame-stats` reports).
    pub fn summary_json(&self) -> serde_json::Value {
        match self.current() {
            None => serde_json::json!(null),
            Some(r) => serde_json::json!({
                "design": r.design,
                "status": r.status.label(),
                "batches": r.batch_loss.len(),
                "epochs_done": r.epochs.len(),
                "images_per_sec": r.progress.map(|p| p.images_per_sec),
                "estimate_ms_per_step": r.estimate.map(|e| e.ms_per_step),
                "estimate_seconds_per_epoch": r.estimate.and_then(|e| {
                    e.batches_per_epoch.map(|b| e.ms_per_step * b as f64 / 1e3)
                }),
                "epoch_seconds": r.epochs.iter().map(|e| e.seconds).collect::<Vec<_>>(),
                "threads": rayon::current_num_threads(),
            }),
        }
    }

    /// Whether the newest run trains an older version of tab `tab`'s design.
    pub fn design_changed_since_run(&self, tab: usize, generation: u64) -> bool {
        self.current()
            .is_some_and(|r| r.tab == tab && r.generation != generation && !r.status.is_over())
    }
}

fn weights_file(dir: &Path, id: usize) -> Option<PathBuf> {
    let p = dir.join(format!("run-{id}.safetensors"));
    p.is_file().then_some(p)
}

/// Why `graph` cannot be trained, if it cannot.
pub fn design_problem(graph: &Graph, analysis: &Analysis) -> Option<String> {
    if let Some(e) = &analysis.design_error {
        return Some(format!("Training needs a design without errors: {e}"));
    }
    let errors = analysis.errors();
    if let Some((id, err)) = errors.first() {
        let name = graph.node(*id).map_or("?", |n| n.name.as_str());
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Some(format!(
            "Training needs a design without errors: `{name}`: {}{more}",
            err.message
        ));
    }
    if graph.is_empty() {
        return Some("Training needs a design: add an Input and some layers.".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;
    use crate::infer::analyze;

    #[test]
    fn smoothing_follows_an_exponential_average() {
        let mut r = record();
        r.batch_loss = vec![[0.1, 1.0], [0.2, 0.0], [0.3, 0.0]];
        let s = r.smoothed_loss();
        assert_eq!(s[0], [0.1, 1.0]);
        assert!((s[1][1] - 0.9).abs() < 1e-12);
        assert!((s[2][1] - 0.81).abs() < 1e-12);
    }

    #[test]
    fn csv_has_a_row_per_epoch_and_quotes_names() {
        let mut r = record();
        r.design = "a,b".into();
        r.epochs = vec![EpochStats {
            epoch: 1,
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss: None,
            val_acc: Some(0.5),
            seconds: 1.25,
            learning_rate: 0.001,
            layer_times: Vec::new(),
        }];
        assert_eq!(
            r.csv(),
            "run,design,macs,epoch,train_loss,train_acc,val_loss,val_acc,learning_rate,seconds\n\
             3,\"a,b\",42,1,0.5,0.75,,0.5,0.001,1.250\n"
        );
    }

    #[test]
    fn designs_with_errors_are_refused_with_the_node_named() {
        // Block 2 without its projection shortcut: the Add sees two shapes.
        let mut g = blocks::resnet_mini();
        for name in ["block2_proj", "block2_proj_bn"] {
            let id = g.find(name).expect(name);
            g.remove_node(id);
        }
        let (from, add) = (g.find("block1_out"), g.find("block2_add"));
        g.connect(from.expect("block1_out"), add.expect("block2_add"), 1)
            .expect("connect");
        let a = analyze(&g);
        let mut s = TrainingSession::default();
        let why = s.start(&g, &a, 0, 0).expect_err("refused");
        assert!(matches!(why, SessionError::Design(_)), "{why:?}");
        let why = why.to_string();
        assert!(
            why.starts_with("Training needs a design without errors"),
            "{why}"
        );
        assert_eq!(s.refusal.as_deref(), Some(why.as_str()));
        assert!(s.runs.is_empty());
        let ok = blocks::resnet_mini();
        assert!(design_problem(&ok, &analyze(&ok)).is_none());
    }

    fn record() -> RunRecord {
        RunRecord::new(3, "d".into(), 42, RunSetup::default())
    }
}
