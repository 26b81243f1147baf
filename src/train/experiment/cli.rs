//! `netloom lr-find` and `netloom sweep`: the experiments' headless front
//! ends (the binary only parses and dispatches).

use super::{
    ExperimentError, LrFindOptions, SweepRow, SweepRun, SweepSpecError, SweepTarget,
    add_classifier_head, lr_find, sweep, sweep_csv,
};
use crate::cli::train::OptimizerArg;
use crate::data::{self, AugmentConfig};
use crate::graph::{Graph, file};
use crate::infer::compact;
use crate::train::trainer::{DataSource, Event, TrainConfig};
use crate::train::{OptimizerConfig, OptimizerKind};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// What every experiment run trains with (the same meaning as in `netloom train`).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Image folder, IDX or CIFAR-10 files (default: the embedded hand-digits set).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Augmentations, comma-separated: mirror,crop,colour,pca,rotate,shear,elastic.
    #[arg(long)]
    pub augment: Option<String>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Start every run from these weights (read only: never written).
    #[arg(long)]
    pub init_weights: Option<PathBuf>,
    /// Add a 3×3 conv stem from RGB (when the input has other than 3
    /// channels) and a global-average-pool + Dense classifier, so a module
    /// such as an Inception block can be trained on its own.
    #[arg(long)]
    pub head: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why `netloom lr-find` or `netloom sweep` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentCliError {
    #[error("{}: {source}", path.display())]
    Load {
        path: PathBuf,
        source: file::LoadError,
    },
    #[error("--head: {0}")]
    Head(#[source] super::design_edit::DesignEditError),
    #[error(transparent)]
    Augment(#[from] data::DataError),
    #[error(transparent)]
    Spec(#[from] SweepSpecError),
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    #[error("--csv {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RunArgs {
    fn design(&self, path: &std::path::Path) -> Result<Graph, ExperimentCliError> {
        let graph = file::load(path).map_err(|source| ExperimentCliError::Load {
            path: path.to_path_buf(),
            source,
        })?;
        if self.head {
            add_classifier_head(&graph).map_err(ExperimentCliError::Head)
        } else {
            Ok(graph)
        }
    }

    /// The checked settings every run of the experiment shares.
    fn settings(&self, learning_rate: Option<f32>) -> Result<RunSettings, ExperimentCliError> {
        let (kind, default_lr) = match self.optimizer {
            OptimizerArg::Sgd => (OptimizerKind::sgd_momentum(), 1e-2),
            OptimizerArg::Adam => (OptimizerKind::adam(), 1e-3),
        };
        let augment = match &self.augment {
            Some(list) => AugmentConfig::parse(list)?,
            None => AugmentConfig::default(),
        };
        Ok(RunSettings {
            data: self.data.clone().unwrap_or_else(data::default_dataset_dir),
            batch_size: self.batch,
            optimizer: OptimizerConfig {
                kind,
                learning_rate: learning_rate.unwrap_or(default_lr),
                ..OptimizerConfig::default()
            },
            augment,
            seed: self.seed,
            init_weights: self.init_weights.clone(),
        })
    }
}

/// [`RunArgs`] checked once, turned into a configuration per run.
struct RunSettings {
    data: PathBuf,
    batch_size: usize,
    optimizer: OptimizerConfig,
    augment: AugmentConfig,
    seed: u64,
    init_weights: Option<PathBuf>,
}

impl RunSettings {
    fn config(&self, graph: Graph) -> TrainConfig {
        let mut config = TrainConfig::new(graph, DataSource::Path(self.data.clone()));
        config.batch_size = self.batch_size;
        config.optimizer = self.optimizer;
        config.augment = self.augment;
        config.seed = self.seed;
        config.init_weights = self.init_weights.clone();
        config
    }
}

/// `netloom lr-find` options.
#[derive(Debug, clap::Args)]
pub struct LrFindArgs {
    pub design: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
    #[arg(long, default_value_t = 1e-6)]
    pub start_lr: f32,
    #[arg(long, default_value_t = 1.0)]
    pub end_lr: f32,
    /// Batches over which the rate rises.
    #[arg(long, default_value_t = 100)]
    pub batches: usize,
}

/// `netloom sweep` options.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    pub design: PathBuf,
    /// What to vary and its values: `NODE.PARAM=V1,V2,…` (a layer parameter
    /// by its design-file name), `batch=…` or `lr=…`; ranges as `8..64*2`
    /// (×2 steps) or `8..64+8` (+8 steps).
    #[arg(long)]
    pub set: String,
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,
    /// Also write the sweep's table to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Learning rate of every run (default 1e-3 for Adam, 1e-2 for SGD).
    #[arg(long)]
    pub lr: Option<f32>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Parses `V1,V2,…`, `A..B*F` or `A..B+S` into values.
pub fn parse_values(text: &str) -> Result<Vec<f64>, SweepSpecError> {
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| SweepSpecError::NotANumber(s.trim().to_string()))
    };
    let Some((start, rest)) = text.split_once("..") else {
        return text.split(',').map(number).collect();
    };
    let (end, step, geometric) = match (rest.split_once('*'), rest.split_once('+')) {
        (Some((end, f)), _) => (number(end)?, number(f)?, true),
        (_, Some((end, s))) => (number(end)?, number(s)?, false),
        _ => {
            return Err(SweepSpecError::RangeWithoutStep(text.to_string()));
        }
    };
    let start = number(start)?;
    let grows = if geometric {
        step > 1.0 && start > 0.0
    } else {
        step > 0.0
    };
    if !grows || end < start {
        return Err(SweepSpecError::RangeDoesNotGrow {
            text: text.to_string(),
            start,
            end,
        });
    }
    let mut values = vec![start];
    while values.len() < 1000 {
        let last = values[values.len() - 1];
        let next = if geometric { last * step } else { last + step };
        if next > end * (1.0 + 1e-9) {
            break;
        }
        values.push(next);
    }
    Ok(values)
}

/// Runs `netloom lr-find`.
pub fn lr_find_command(args: LrFindArgs) -> Result<ExitCode, ExperimentCliError> {
    let graph = args.run.design(&args.design)?;
    let config = args.run.settings(None)?.config(graph);
    let options = LrFindOptions {
        start_lr: args.start_lr,
        end_lr: args.end_lr,
        batches: args.batches,
        ..LrFindOptions::default()
    };
    let json = args.run.json;
    let curve = lr_find(config, &options, |event| report_progress(event, json))?;
    if json {
        let points: Vec<[f32; 2]> = curve.points.iter().map(|p| [p.lr, p.loss]).collect();
        println!(
            "{}",
            json!({
                "suggested_lr": curve.suggested_lr,
                "diverged": curve.diverged,
                "curve": points,
            })
        );
    } else {
        println!("{:>12}  {:>10}  {:>10}", "lr", "loss", "smoothed");
        for p in &curve.points {
            println!("{:>12.3e}  {:>10.4}  {:>10.4}", p.lr, p.loss, p.smoothed);
        }
        match curve.suggested_lr {
            Some(lr) => println!(
                "suggested learning rate: {lr:.2e} (steepest fall of the smoothed loss{})",
                if curve.diverged {
                    ", before it diverged"
                } else {
                    ""
                }
            ),
            None => println!("no suggestion: the loss never fell over this range"),
        }
    }
    Ok(if curve.suggested_lr.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs `netloom sweep`.
pub fn sweep_command(args: SweepArgs) -> Result<ExitCode, ExperimentCliError> {
    let (target, values) = args
        .set
        .split_once('=')
        .ok_or_else(|| SweepSpecError::NoValues(args.set.clone()))?;
    let target = SweepTarget::parse(target)?;
    let values = parse_values(values)?;
    if target == SweepTarget::BatchSize && values.iter().any(|v| *v < 1.0 || v.fract() != 0.0) {
        return Err(SweepSpecError::BatchSizes.into());
    }
    let graph = args.run.design(&args.design)?;
    let settings = args.run.settings(args.lr)?;
    let json = args.run.json;
    let make = |g: Graph| {
        let mut c = settings.config(g);
        c.epochs = args.epochs;
        c
    };
    let label = target.label();
    let runs = sweep(&graph, &target, &values, make, |value, event| {
        if let Event::Epoch(e) = event
            && !json
        {
            eprintln!(
                "{label} = {value}: epoch {} · loss {:.4} · val acc {}",
                e.epoch,
                e.train_loss,
                e.val_acc
                    .map_or("–".into(), |a| format!("{:.2}%", 100.0 * a))
            );
        }
    })?;
    print_sweep(&label, &runs, json);
    if let Some(path) = &args.csv {
        let csv = sweep_csv(&label, runs.iter().map(SweepRow::from));
        file::write_atomically(path, csv.as_bytes()).map_err(|source| ExperimentCliError::Csv {
            path: path.clone(),
            source,
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sweep(label: &str, runs: &[SweepRun], json: bool) {
    let pct = |v: Option<f32>| v.map_or("–".into(), |a| format!("{:.2}%", 100.0 * a));
    if json {
        for r in runs {
            println!("{}", json!(r));
        }
        let front: Vec<f64> = runs.iter().filter(|r| r.pareto).map(|r| r.value).collect();
        println!(
            "{}",
            json!({ "summary": { "target": label, "runs": runs.len(), "pareto_front": front } })
        );
        return;
    }
    println!(
        "{:>10}  {:>10}  {:>10}  {:>9}  {:>8}  {:>8}  pareto",
        label, "MACs", "params", "ms/step", "val acc", "test acc"
    );
    for r in runs {
        println!(
            "{:>10}  {:>10}  {:>10}  {:>9.1}  {:>8}  {:>8}  {}",
            r.value,
            compact(r.macs),
            compact(r.params),
            r.ms_per_step,
            pct(r.val_acc),
            pct(r.test_acc),
            if r.pareto { "*" } else { "" }
        );
    }
}

/// Progress of a long experiment on standard error (not with `--json`).
fn report_progress(event: &Event, json: bool) {
    if json {
        return;
    }
    match event {
        Event::Notice(msg) => eprintln!("note: {msg}"),
        Event::Batch {
            batch,
            batches,
            epoch,
            loss,
            lr,
            ..
        } if batch % 10 == 0 => {
            eprintln!("epoch {epoch} batch {batch}/{batches}: lr {lr:.2e} loss {loss:.4}")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_values;

    #[test]
    fn values_parse_from_lists_and_ranges() {
        assert_eq!(parse_values("8,16, 32").unwrap(), [8.0, 16.0, 32.0]);
        assert_eq!(parse_values("8..64*2").unwrap(), [8.0, 16.0, 32.0, 64.0]);
        assert_eq!(parse_values("8..32+8").unwrap(), [8.0, 16.0, 24.0, 32.0]);
        assert!(parse_values("8..64").is_err());
        assert!(parse_values("8..64*1").is_err());
        assert!(parse_values("a,b").is_err());
        assert!(parse_values("NaN").is_err());
    }
}
