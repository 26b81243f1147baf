//! `netloom train` and `netloom eval`: the headless front ends of the
//! trainer thread and the evaluator (the binary only parses and dispatches).

use super::CliError;
use crate::data::{self, AugmentConfig, LoadOptions};
use crate::graph::file;
use crate::train::eval::{self, EvalOptions};
use crate::train::memory;
use crate::train::prepare::{input_hwc, layers_through};
use crate::train::trainer::{
    DataSource, EpochStats, Event, RunEnd, RunInfo, TestResult, TrainConfig, Trainer,
};
use crate::train::{OptimizerConfig, OptimizerKind};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adam,
}

/// `netloom train` options.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The design file to train.
    pub design: PathBuf,
    /// Image folder (`<dir>/<split>/<class>/*` or `<dir>/<class>/*`), IDX or CIFAR-10 files
    /// (default: the embedded hand-digits set).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 15)]
    pub epochs: u64,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Learning rate (default 1e-3 for Adam, 1e-2 for SGD with momentum 0.9).
    #[arg(long)]
    pub lr: Option<f32>,
    /// L2 weight decay on conv and dense weights.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Augmentations, comma-separated: mirror,crop,colour,pca,rotate,shear,elastic.
    #[arg(long)]
    pub augment: Option<String>,
    /// Layers to freeze, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub freeze: Vec<String>,
    /// Freeze every layer up to and including this one (topological order).
    #[arg(long)]
    pub freeze_through: Option<String>,
    /// Start from these weights (tensors matched by layer name and shape).
    #[arg(long)]
    pub init_weights: Option<PathBuf>,
    /// Save the final weights (safetensors).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Write a checkpoint (weights + optimizer state) after every epoch.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from a checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of train held out for validation when the data has no validation split.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f32,
    /// Keep the training-time BatchNorm statistics (no precise-BN pass).
    #[arg(long)]
    pub no_precise_bn: bool,
    /// Run the frozen prefix every batch instead of caching its activations.
    #[arg(long)]
    pub no_cache: bool,
    /// One JSON object per epoch and a final one with `test_acc`.
    #[arg(long)]
    pub json: bool,
    /// Memory the plan and the dataset may take, e.g. 6G or 512M (default:
    /// 80% of the memory available).
    #[arg(long, value_parser = parse_memory_limit, value_name = "SIZE")]
    pub memory_limit: Option<u64>,
}

/// `--memory-limit` as bytes.
pub fn parse_memory_limit(text: &str) -> Result<u64, memory::MemoryError> {
    memory::parse_size(text)
}

/// `netloom eval` options.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The design the weights belong to.
    pub design: PathBuf,
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset (default: the embedded hand-digits set); the test split is evaluated.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Average 10 views per image: 4 corners + centre, and their mirrors.
    #[arg(long)]
    pub multi_crop: bool,
    /// Side of each multi-crop window as a fraction of the image (each crop is resized back).
    #[arg(long, default_value_t = 0.875)]
    pub crop_fraction: f32,
    /// More weight files of the same design; their softmax outputs are averaged.
    #[arg(long, value_delimiter = ',')]
    pub ensemble: Vec<PathBuf>,
    /// Use the training-time moving-average BatchNorm statistics (saved beside
    /// the precise-BN ones) instead of recomputing them on training batches.
    #[arg(long)]
    pub no_precise_bn: bool,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long)]
    pub json: bool,
    /// Memory the models and the test data may take, e.g. 6G (default: 80%
    /// of the memory available).
    #[arg(long, value_parser = parse_memory_limit, value_name = "SIZE")]
    pub memory_limit: Option<u64>,
}

fn fmt_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Runs `netloom train`.
pub fn train(args: TrainArgs) -> Result<ExitCode, CliError> {
    if args.epochs == 0 {
        return Err(CliError::Refused(
            "nothing to do: 0 epochs asked for (--epochs 0)".into(),
        ));
    }
    let data_path = args.data.clone().unwrap_or_else(data::default_dataset_dir);
    check_train_outputs(&args, &data_path)?;
    let config = config_from_args(&args, &data_path)?;
    let trainer = Trainer::spawn(config).map_err(CliError::Spawn)?;
    let mut printer = Printer::new(&args, &data_path)?;
    for event in trainer.events() {
        printer.event(event);
    }
    let outcome = trainer.join()?;
    Ok(match outcome.end {
        RunEnd::Finished => ExitCode::SUCCESS,
        RunEnd::Stopped => ExitCode::from(1),
        RunEnd::Failed(_) => ExitCode::from(3),
    })
}

/// The run's settings from the command line (the design loaded, the
/// layers to freeze resolved).
fn config_from_args(args: &TrainArgs, data_path: &Path) -> Result<TrainConfig, CliError> {
    let graph = super::load(&args.design)?;
    let mut config = TrainConfig::new(graph, DataSource::Path(data_path.to_path_buf()));
    config.epochs = args.epochs;
    config.batch_size = args.batch;
    let kind = match args.optimizer {
        OptimizerArg::Sgd => OptimizerKind::sgd_momentum(),
        OptimizerArg::Adam => OptimizerKind::adam(),
    };
    config.optimizer = OptimizerConfig {
        kind,
        learning_rate: args.lr.unwrap_or(match args.optimizer {
            OptimizerArg::Sgd => 1e-2,
            OptimizerArg::Adam => 1e-3,
        }),
        weight_decay: args.weight_decay,
        ..OptimizerConfig::default()
    };
    if let Some(list) = &args.augment {
        config.augment = AugmentConfig::parse(list)?;
    }
    config.freeze = args
        .freeze
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(last) = &args.freeze_through {
        config.freeze.extend(layers_through(&config.graph, last)?);
    }
    config.init_weights = args.init_weights.clone();
    config.save = args.save.clone();
    config.checkpoint = args.checkpoint.clone();
    config.resume = args.resume.clone();
    config.seed = args.seed;
    config.val_fraction = args.val_fraction;
    config.precise_bn = !args.no_precise_bn;
    config.activation_cache = !args.no_cache;
    config.memory_limit = args.memory_limit;
    config.autostart = true;
    Ok(config)
}

/// Shows the trainer's events on the terminal: a progress bar and lines,
/// or JSON lines with `--json`.
struct Printer<'a> {
    bar: ProgressBar,
    json: bool,
    batch: usize,
    data_path: &'a Path,
    epochs: u64,
    last_layers: Vec<crate::train::trainer::LayerTime>,
}

impl<'a> Printer<'a> {
    fn new(args: &TrainArgs, data_path: &'a Path) -> Result<Self, CliError> {
        let bar = if args.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0).with_style(
                ProgressStyle::default_bar()
                    .template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                    .map_err(CliError::Template)?
                    .progress_chars("=> "),
            )
        };
        Ok(Printer {
            bar,
            json: args.json,
            batch: args.batch,
            data_path,
            epochs: 0,
            last_layers: Vec::new(),
        })
    }

    /// A line for the user on stderr (through the bar when it is shown:
    /// a hidden bar, with JSON or stderr not a terminal, prints nothing).
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// A result line on stdout (through the bar when it is shown).
    fn say_out(&self, line: String) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn event(&mut self, event: Event) {
        let bar = &self.bar;
        match event {
            Event::DataLoading { done, total } => {
                bar.set_prefix("loading");
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            Event::Caching { done, total } => {
                bar.set_prefix("caching");
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            Event::Notice(msg) => self.say(format!("note: {msg}")),
            Event::Started(info) => self.started(&info),
            Event::State(_) | Event::Layers(_) | Event::FeatureMaps(_) | Event::GradCam(_) => {}
            Event::Batch {
                epoch,
                batch,
                batches,
                loss,
                images_per_sec,
                eta,
                ..
            } => {
                bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
                bar.set_length(batches as u64);
                bar.set_position(batch as u64);
                bar.set_message(format!(
                    "loss {loss:.4} · {images_per_sec:.0} img/s · ETA {}",
                    fmt_duration(eta)
                ));
            }
            Event::Epoch(e) => self.epoch(&e),
            Event::Finished(t) => self.finished(&t),
            Event::Stopped { epoch, batch } => {
                bar.finish_and_clear();
                self.say(format!("stopped in epoch {epoch} after batch {batch}"));
            }
            Event::Failed(msg) => {
                bar.finish_and_clear();
                eprintln!("error: {msg}");
            }
            Event::SaveFailed { message, .. } => eprintln!("error: {message}"),
        }
    }

    fn started(&mut self, info: &RunInfo) {
        self.epochs = info.epochs;
        self.say(format!(
            "training {} on {} ({} classes): {} train / {} val / {} test images, {} batches of {} per epoch, {} trainable of {} parameters",
            info.design,
            self.data_path.display(),
            info.classes.len(),
            info.train_images,
            info.val_images,
            info.test_images,
            info.batches_per_epoch,
            self.batch,
            info.trainable_params,
            info.total_params
        ));
        self.bar.set_length(info.batches_per_epoch as u64);
        self.bar.set_position(0);
    }

    fn epoch(&mut self, e: &EpochStats) {
        self.last_layers.clone_from(&e.layer_times);
        if self.json {
            println!(
                "{}",
                json!({
                    "epoch": e.epoch,
                    "train_loss": e.train_loss,
                    "train_acc": e.train_acc,
                    "val_loss": e.val_loss,
                    "val_acc": e.val_acc,
                    "seconds": e.seconds,
                })
            );
        } else {
            let val = match (e.val_loss, e.val_acc) {
                (Some(l), Some(a)) => format!(" · val loss {l:.4} acc {:.2}%", 100.0 * a),
                _ => String::new(),
            };
            self.say_out(format!(
                "epoch {:>3}/{} · train loss {:.4} acc {:.2}%{val} · {:.1} s",
                e.epoch,
                self.epochs,
                e.train_loss,
                100.0 * e.train_acc,
                e.seconds
            ));
        }
        self.bar.set_position(0);
    }

    fn finished(&self, t: &TestResult) {
        self.bar.finish_and_clear();
        if !self.json && !self.last_layers.is_empty() {
            let top: Vec<String> = self
                .last_layers
                .iter()
                .take(5)
                .map(|l| format!("{} {:.1}", l.name, l.ms_per_batch))
                .collect();
            eprintln!(
                "slowest layers (ms per batch, last epoch): {}",
                top.join(", ")
            );
        }
        if self.json {
            println!(
                "{}",
                json!({
                    "test_acc": t.test_acc,
                    "test_loss": t.test_loss,
                    "test_acc_without_precise_bn": t.test_acc_without_precise_bn,
                    "epochs": self.epochs,
                })
            );
        } else if t.test_acc.is_finite() {
            let without = t
                .test_acc_without_precise_bn
                .map(|a| format!(" (without precise BN {:.2}%)", 100.0 * a))
                .unwrap_or_default();
            println!(
                "test accuracy {:.2}%{without} · test loss {:.4}",
                100.0 * t.test_acc,
                t.test_loss
            );
        } else {
            println!("no test split; done");
        }
    }
}

/// Refuses, before anything is loaded, a `--save` or `--checkpoint` that
/// cannot be written or that would overwrite an input (a checkpoint may be
/// the `--resume` file: continuing a run rewrites it).
fn check_train_outputs(args: &TrainArgs, data_path: &Path) -> Result<(), CliError> {
    let mut outputs: Vec<(&str, &Path)> = Vec::new();
    outputs.extend(args.save.as_deref().map(|p| ("--save", p)));
    outputs.extend(args.checkpoint.as_deref().map(|p| ("--checkpoint", p)));
    let mut inputs = vec![("the design", args.design.as_path()), ("--data", data_path)];
    inputs.extend(args.init_weights.as_deref().map(|p| ("--init-weights", p)));
    Ok(file::check_outputs(&outputs, &inputs)?)
}

/// Runs `netloom eval`.
pub fn evaluate(args: EvalArgs) -> Result<ExitCode, CliError> {
    let graph = super::load(&args.design)?;
    let mut paths: Vec<&Path> = vec![args.weights.as_path()];
    paths.extend(args.ensemble.iter().map(PathBuf::as_path));
    let budget = memory::Budget::new(args.memory_limit);
    let mut models = Vec::with_capacity(paths.len());
    for path in paths {
        let trained = crate::train::weights::design_for(&graph, path)?;
        if let Some(n) = &trained.notice
            && !args.json
        {
            eprintln!("note: {n}");
        }
        models.push(eval::load_model_within(
            &trained.graph,
            path,
            args.batch.max(1),
            &budget,
        )?);
    }
    let meta = models[0].meta.clone();
    if let Some(n) = &models[0].notice
        && !args.json
    {
        eprintln!("note: {n}");
    }
    let (h, w, c) = input_hwc(&graph)?;
    let data_path = args.data.clone().unwrap_or_else(data::default_dataset_dir);
    let opts = LoadOptions {
        val_fraction: meta.val_fraction,
        seed: meta.seed,
        memory_budget: Some(budget.bytes),
        ..LoadOptions::for_input(h, w, c)
    };
    let splits = data::load(&data_path, &opts, &mut |_, _| {})?;
    if !args.json {
        for notice in &splits.notices {
            eprintln!("note: {notice}");
        }
    }
    if !meta.classes.is_empty() && meta.classes != splits.class_names() {
        return Err(CliError::Refused(format!(
            "{} was trained on classes {:?}, but {} has {:?}",
            args.weights.display(),
            meta.classes,
            data_path.display(),
            splits.class_names()
        )));
    }
    let stats = meta.stats().unwrap_or_else(|| splits.train.channel_stats());
    let test = splits
        .test
        .clone()
        .ok_or_else(|| CliError::NoTestSplit(data_path.clone()))?;
    if args.no_precise_bn {
        for m in &mut models {
            m.use_ema_stats();
        }
    } else {
        let train = Arc::new(splits.train.clone());
        for m in &mut models {
            eval::precise_bn(
                &mut m.plan,
                Arc::clone(&train),
                &stats,
                1024,
                meta.seed ^ 0xF1,
            );
        }
    }
    let mut plans: Vec<_> = models.into_iter().map(|m| m.plan).collect();
    let e = eval::evaluate(
        &mut plans,
        &test,
        &stats,
        &EvalOptions {
            multi_crop: args.multi_crop,
            crop_fraction: args.crop_fraction.clamp(0.05, 1.0),
        },
    );
    if args.json {
        println!("{}", serde_json::to_string(&e)?);
    } else {
        println!(
            "{} test images · accuracy {:.2}% · loss {:.4} ({} model{}, {} view{} per image)",
            e.images,
            100.0 * e.accuracy,
            e.loss,
            e.models,
            if e.models == 1 { "" } else { "s" },
            e.views,
            if e.views == 1 { "" } else { "s" }
        );
        print!("{}", e.confusion_table());
    }
    Ok(ExitCode::SUCCESS)
}
