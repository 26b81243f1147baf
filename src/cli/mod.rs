//! The `netloom` command line: the designer app, or headless cost and
//! training tools. `src/main.rs` only parses [`Cli`] and calls [`run`]; each
//! subcommand is a function here or in a module beside this one.

pub mod bench;
pub mod report;
pub mod train;

use crate::graph::{Graph, file};
use crate::infer::{Analysis, Conventions, OpCount, ParamStyle, Report, analyze};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Why a subcommand stopped; every variant exits with [`CliError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A design file that cannot be read or parsed.
    #[error("{}: {source}", path.display())]
    Load {
        path: PathBuf,
        source: file::LoadError,
    },
    /// An output that cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An output path refused before any work (unwritable, or an input).
    #[error(transparent)]
    Output(#[from] file::OutputError),
    /// A dataset that cannot be read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A design that cannot be prepared for the data (head, freezing, input).
    #[error(transparent)]
    Prepare(#[from] crate::train::prepare::PrepareError),
    /// Trained weights that cannot be loaded for evaluation.
    #[error(transparent)]
    Eval(#[from] crate::train::eval::EvalError),
    /// A weights file that cannot be read or written, or that belongs to
    /// another design.
    #[error(transparent)]
    Weights(#[from] crate::train::weights::WeightsError),
    /// A design or weights that cannot be exported.
    #[error(transparent)]
    Interop(#[from] crate::interop::InteropError),
    /// The trainer thread could not be started.
    #[error("could not start the trainer: {0}")]
    Spawn(#[source] std::io::Error),
    /// The progress bar's template (a bug if it happens).
    #[error("the progress bar: {0}")]
    Template(#[source] indicatif::style::TemplateError),
    /// A result that cannot be written as JSON.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `eval` on a dataset without a test split.
    #[error("{} has no test split", .0.display())]
    NoTestSplit(PathBuf),
    /// `--weights` that do not fit the design they are exported with.
    #[error("--weights {}: {source}", path.display())]
    WeightsDontFit {
        path: PathBuf,
        #[source]
        source: crate::interop::InteropError,
    },
    /// An ONNX model that cannot be read.
    #[error("{}: {source}", path.display())]
    Import {
        path: PathBuf,
        source: crate::interop::InteropError,
    },
    /// A diagram that cannot be drawn.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// A drawn diagram that cannot be encoded as PNG.
    #[error("cannot encode {}: {source}", path.display())]
    EncodePng {
        path: PathBuf,
        source: image::ImageError,
    },
    /// A benchmark that could not run.
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    /// `lr-find` or `sweep` stopped.
    #[error(transparent)]
    Experiment(#[from] crate::train::experiment::cli::ExperimentCliError),
    /// The trainer thread ended without an outcome.
    #[error(transparent)]
    Join(#[from] crate::train::trainer::JoinError),
    /// The designer window could not be opened (the windowing library's words).
    #[error("{0}")]
    Designer(String),
    /// Anything else the command refuses, said in words for the terminal.
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// The process's exit status: 2 for every refusal (1 and 3 are the
    /// outcomes of commands that ran: an invalid design, a stopped or failed run).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(2)
    }
}

/// Runs the parsed command line and turns a refusal into `error: …` on
/// standard error and its exit code.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

#[derive(Parser)]
#[command(
    name = "netloom",
    version,
    about = "Design, cost and train convolutional networks"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A design to open in the designer (default: the resnet-mini preset).
    design: Option<PathBuf>,
    /// Designer: start training the design at once (on the built-in dataset).
    #[arg(long)]
    train: bool,
    /// Designer: epochs of that run.
    #[arg(long, requires = "train")]
    epochs: Option<u64>,
    /// Designer: record frame times (repainting continuously) and write
    /// their percentiles to this JSON file when the window closes.
    #[arg(long, value_name = "FILE")]
    frame_stats: Option<PathBuf>,
    /// Designer: close the window after this many seconds (with --frame-stats).
    #[arg(long, requires = "frame_stats", value_name = "SECONDS")]
    quit_after: Option<f64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ParamsArg {
    /// BatchNorm moving mean/variance counted as non-trainable params.
    Keras,
    /// BatchNorm running statistics not counted.
    Pytorch,
}

#[derive(clap::Args)]
struct CostArgs {
    /// Count FLOPs (2 × multiply-accumulates) instead of MACs.
    #[arg(long)]
    flops: bool,
    /// Which parameters count.
    #[arg(long, value_enum, default_value = "keras")]
    params: ParamsArg,
    /// Print one JSON object per design instead of a table.
    #[arg(long)]
    json: bool,
}

impl CostArgs {
    fn conventions(&self) -> Conventions {
        Conventions {
            ops: if self.flops {
                OpCount::Flops
            } else {
                OpCount::Macs
            },
            params: match self.params {
                ParamsArg::Keras => ParamStyle::Keras,
                ParamsArg::Pytorch => ParamStyle::PyTorch,
            },
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer output shapes, params and multiply counts of a design.
    Summary {
        design: PathBuf,
        #[command(flatten)]
        cost: CostArgs,
    },
    /// Two designs' totals side by side with deltas and ratios.
    Compare {
        a: PathBuf,
        b: PathBuf,
        #[command(flatten)]
        cost: CostArgs,
    },
    /// Reads an ONNX model into a design: shapes, params and MACs of every layer.
    Import {
        model: PathBuf,
        /// Where to write the design (JSON).
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the model's weights (safetensors, Netloom layouts).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Write what could be read even when the design does not compute
        /// what the model does (its name and a note in the file say so);
        /// without it such an import writes nothing and exits 2.
        #[arg(long)]
        allow_partial: bool,
        /// Keep convs with the BatchNorm the exporter folded into them as
        /// the file has them (C biases), instead of restoring the BatchNorm
        /// (same function, PyTorch's parameter count, trainable).
        #[arg(long)]
        keep_folded_batchnorm: bool,
    },
    /// Writes a design as ONNX (opset 13) or as PyTorch code on standard output.
    Export {
        design: PathBuf,
        /// Write an ONNX model here.
        #[arg(long, conflicts_with = "pytorch")]
        onnx: Option<PathBuf>,
        /// Print a PyTorch `nn.Module` with the same layers and wiring (`forward`
        /// returns logits; with `--weights`, the run's class names and normalisation).
        #[arg(long)]
        pytorch: bool,
        /// Trained weights (safetensors): embedded in the ONNX model, or with
        /// `--pytorch` converted to a state dict (see `--state-dict`).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// With `--pytorch --weights`: write the state dict the generated module loads.
        #[arg(long, requires_all = ["pytorch", "weights"])]
        state_dict: Option<PathBuf>,
        /// With `--pytorch`: `forward` returns the design's output (probabilities
        /// after a final softmax or sigmoid) instead of logits.
        #[arg(long, requires = "pytorch")]
        probabilities: bool,
        /// Write a PyTorch project (model.py, train.py for torchrun, README)
        /// into this new or empty folder; `--weights` adds its class names,
        /// normalisation and initial weights.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["onnx", "pytorch"])]
        pytorch_project: Option<PathBuf>,
    },
    /// Times training steps and forward passes of a design on random data.
    Bench {
        /// The design to time (default: the resnet-mini preset).
        design: Option<PathBuf>,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Timed steps after warm-up; the median is reported.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Memory the plan may take, e.g. 6G (default: 80% of the memory available).
        #[arg(long, value_parser = train::parse_memory_limit, value_name = "SIZE")]
        memory_limit: Option<u64>,
    },
    /// Draws the whole design as a diagram (SVG or PNG, by the output's extension).
    Render(RenderArgs),
    /// Trains a design on a dataset (default: the embedded hand-digits set).
    Train(train::TrainArgs),
    /// Evaluates trained weights: accuracy, confusion matrix, multi-crop, ensembles.
    Eval(train::EvalArgs),
    /// Learning-rate range test: trains a copy of the design for ~100 batches
    /// with the rate rising exponentially and suggests a rate (nothing is saved).
    LrFind(crate::train::experiment::cli::LrFindArgs),
    /// Trains one run per value of a parameter and prints MACs, params,
    /// time per step and accuracy per value, with the Pareto front.
    Sweep(crate::train::experiment::cli::SweepArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum OrientationArg {
    /// Top to bottom (the canvas's default).
    Tb,
    /// Left to right.
    Lr,
}

#[derive(clap::Args)]
struct RenderArgs {
    design: PathBuf,
    /// Where to write the diagram: `.svg` or `.png`.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "tb")]
    orientation: OrientationArg,
    /// Draw groups as single nodes.
    #[arg(long)]
    collapsed: bool,
    /// Count FLOPs (2 × multiply-accumulates) instead of MACs.
    #[arg(long)]
    flops: bool,
    /// Draw the stored node positions instead of laying the design out afresh.
    #[arg(long)]
    keep_positions: bool,
    /// PNG only: pixels per scene unit.
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        None => designer(cli),
        Some(Command::Summary { design, cost }) => summary(&design, &cost),
        Some(Command::Compare { a, b, cost }) => compare(&a, &b, &cost),
        Some(Command::Bench {
            design,
            batch,
            steps,
            seed,
            json,
            memory_limit,
        }) => bench_command(design, batch, steps, seed, json, memory_limit),
        Some(Command::Import {
            model,
            output,
            weights,
            allow_partial,
            keep_folded_batchnorm,
        }) => {
            let options = crate::interop::onnx::ImportOptions {
                restore_batchnorm: !keep_folded_batchnorm,
            };
            import(&model, &output, weights.as_deref(), allow_partial, &options)
        }
        Some(Command::Export {
            design,
            weights,
            pytorch_project: Some(dir),
            ..
        }) => pytorch_project(&design, weights.as_deref(), &dir),
        Some(Command::Export {
            design,
            onnx,
            pytorch,
            weights,
            state_dict,
            probabilities,
            pytorch_project: None,
        }) => export(
            &design,
            ExportTo {
                onnx: onnx.as_deref(),
                pytorch: pytorch.then_some(PyTorchForward {
                    logits: !probabilities,
                }),
                state_dict: state_dict.as_deref(),
            },
            weights.as_deref(),
        ),
        Some(Command::Render(args)) => render(args),
        Some(Command::Train(args)) => Ok(train::train(args)?),
        Some(Command::Eval(args)) => Ok(train::evaluate(args)?),
        Some(Command::LrFind(args)) => Ok(crate::train::experiment::cli::lr_find_command(args)?),
        Some(Command::Sweep(args)) => Ok(crate::train::experiment::cli::sweep_command(args)?),
    }
}

/// No subcommand: the designer window.
#[cfg(feature = "gui")]
fn designer(cli: Cli) -> Result<ExitCode, CliError> {
    crate::app::run(crate::app::LaunchOptions {
        design: cli.design,
        train: cli.train,
        epochs: cli.epochs,
        frame_stats: cli.frame_stats,
        quit_after: cli.quit_after,
    })
    .map_err(CliError::Designer)?;
    Ok(ExitCode::SUCCESS)
}

/// No subcommand, built without the designer: the design's cost instead.
#[cfg(not(feature = "gui"))]
fn designer(cli: Cli) -> Result<ExitCode, CliError> {
    let path = cli.design.unwrap_or_else(crate::default_design_path);
    let graph = load(&path)?;
    print!(
        "{}",
        report::summary_table(&graph, &analyze(&graph), &Conventions::default())
    );
    Ok(ExitCode::SUCCESS)
}

/// `netloom summary`: exits 1 when the design has errors.
fn summary(design: &Path, cost: &CostArgs) -> Result<ExitCode, CliError> {
    let graph = load(design)?;
    let conventions = cost.conventions();
    let analysis = analyze(&graph);
    if cost.json {
        println!("{}", json_line(&graph, &analysis, &conventions)?);
    } else {
        print!("{}", report::summary_table(&graph, &analysis, &conventions));
    }
    Ok(if analysis.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `netloom compare`.
fn compare(a: &Path, b: &Path, cost: &CostArgs) -> Result<ExitCode, CliError> {
    let (ga, gb) = (load(a)?, load(b)?);
    let conventions = cost.conventions();
    if cost.json {
        println!("{}", json_line(&ga, &analyze(&ga), &conventions)?);
        println!("{}", json_line(&gb, &analyze(&gb), &conventions)?);
    } else {
        let (aa, ab) = (analyze(&ga), analyze(&gb));
        print!(
            "{}",
            report::compare_table((&ga, &aa), (&gb, &ab), &conventions)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `netloom bench`: checks the memory budget, times, prints.
fn bench_command(
    design: Option<PathBuf>,
    batch: usize,
    steps: usize,
    seed: u64,
    json: bool,
    memory_limit: Option<u64>,
) -> Result<ExitCode, CliError> {
    let path = design.unwrap_or_else(crate::default_design_path);
    let graph = load(&path)?;
    let estimate = bench::check_memory(&graph, batch, memory_limit)?;
    if !json {
        eprintln!(
            "timing {} at batch {batch}: 3 warm-up steps, then {steps} training steps and {steps} forward passes…",
            graph.name
        );
    }
    let r = bench::run(&graph, batch, steps.max(1), seed)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print_bench(&r, estimate);
    }
    Ok(ExitCode::SUCCESS)
}

/// `netloom bench`'s table for the terminal.
fn print_bench(r: &bench::BenchReport, estimate: u64) {
    println!(
        "design            {} (batch {}, {} threads, {} kernels)",
        r.design, r.batch, r.threads, r.kernels
    );
    println!(
        "train step        {:.1} ms median ({:.1} min) · {:.1} GFLOP/s",
        r.train_step_ms, r.train_step_ms_min, r.train_gflops
    );
    println!(
        "forward           {:.1} ms median ({:.1} min) · {:.1} GFLOP/s",
        r.forward_ms, r.forward_ms_min, r.forward_gflops
    );
    println!(
        "FMA peak          {:.1} GFLOP/s ({} threads, {}); training at {:.0}%, forward at {:.0}% of peak",
        r.peak_gflops,
        r.threads,
        r.peak_kernels,
        100.0 * r.train_efficiency,
        100.0 * r.forward_efficiency
    );
    println!(
        "peak RSS          {:.0} MB (estimated {:.0} MB before compiling)",
        r.peak_rss_mb,
        estimate as f64 / 1e6
    );
    println!("slowest layers (ms per training step):");
    for l in r.layers.iter().take(8) {
        println!("  {:<24}{:>8.2}{}", l.name, l.ms, layer_rate(l.gflops));
    }
    println!("slowest layers (ms per evaluation forward pass):");
    for l in r.forward_layers.iter().take(12) {
        println!("  {:<24}{:>8.2}{}", l.name, l.ms, layer_rate(l.gflops));
    }
}

/// `netloom import`: an ONNX model to a design (and its weights). Written
/// only when the design computes what the model does and has no errors,
/// unless `allow_partial`, which writes it marked as partial.
fn import(
    model: &Path,
    output: &Path,
    weights: Option<&Path>,
    allow_partial: bool,
    options: &crate::interop::onnx::ImportOptions,
) -> Result<ExitCode, CliError> {
    let mut outputs = vec![("-o", output)];
    outputs.extend(weights.map(|w| ("--weights", w)));
    file::check_outputs(&outputs, &[("the model", model)])?;
    let mut imported =
        crate::interop::onnx::import_with_options(model, options).map_err(|source| {
            CliError::Import {
                path: model.to_path_buf(),
                source,
            }
        })?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    let analysis = analyze(&imported.graph);
    let faithful = imported.is_faithful();
    if !allow_partial {
        if !faithful {
            return Err(CliError::Refused(format!(
                "{}: the design would not compute what the model does, so {} was not written:\n{}\n(--allow-partial writes what could be read, marked as partial)",
                model.display(),
                output.display(),
                imported.deviation_list(usize::MAX)
            )));
        }
        if !analysis.is_valid() {
            return Err(CliError::Refused(format!(
                "{}: the imported design has errors, so {} was not written: {}",
                model.display(),
                output.display(),
                analysis.error_summary(&imported.graph, 5)
            )));
        }
    }
    let text = if faithful {
        file::to_json(&imported.graph)
    } else {
        imported.mark_partial();
        with_note(&file::to_json(&imported.graph), &imported.partial_note())
    };
    file::write_atomically(output, text.as_bytes()).map_err(|source| CliError::Write {
        path: output.to_path_buf(),
        source,
    })?;
    if let Some(path) = weights {
        if imported.weights.is_empty() {
            eprintln!(
                "the model carries no weights; {} not written",
                path.display()
            );
        } else {
            let count = write_tensors(path, &imported.weights, None)?;
            eprintln!("{count} weight tensors → {}", path.display());
        }
    }
    let totals = analysis.totals(&Conventions::default());
    println!(
        "{} layers, {} params, {} MACs → {}",
        imported.graph.len(),
        crate::infer::thousands(totals.total_params),
        crate::infer::thousands(totals.macs),
        output.display()
    );
    if !faithful {
        eprintln!(
            "PARTIAL import: {} does not compute what the model does:\n{}",
            output.display(),
            imported.deviation_list(usize::MAX)
        );
        if !analysis.is_valid() {
            eprintln!(
                "the design has errors: {}",
                analysis.error_summary(&imported.graph, 5)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Design JSON with a top-level `note` after its `version` (the loader
/// ignores keys it does not know, so the file stays a valid design).
fn with_note(json: &str, note: &str) -> String {
    let quoted = serde_json::to_string(note).unwrap_or_else(|_| "\"partial import\"".into());
    let mut out = String::with_capacity(json.len() + quoted.len() + 16);
    for (i, line) in json.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if i == 2 {
            out.push_str(&format!("  \"note\": {quoted},\n"));
        }
    }
    out
}

/// Writes named tensors as safetensors (with `meta` in the header when
/// given); returns how many.
fn write_tensors(
    path: &Path,
    tensors: &crate::interop::Tensors,
    meta: Option<&crate::train::weights::WeightsMeta>,
) -> Result<usize, CliError> {
    let list: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(name, (shape, data))| (name.clone(), shape.clone(), data.as_slice()))
        .collect();
    crate::train::weights::save_tensors(path, &list, meta, None)?;
    Ok(list.len())
}

/// What `netloom export` writes (besides `--pytorch-project`).
struct ExportTo<'a> {
    onnx: Option<&'a Path>,
    pytorch: Option<PyTorchForward>,
    state_dict: Option<&'a Path>,
}

/// What the printed PyTorch module's `forward` returns.
#[derive(Clone, Copy)]
struct PyTorchForward {
    logits: bool,
}

/// `netloom export`: ONNX to a file, or PyTorch source on standard output
/// (and its state dict with `--state-dict`). With `--weights`, the design
/// is the one the weights were trained as (see [`design_for_weights`]).
fn export(design: &Path, to: ExportTo, weights: Option<&Path>) -> Result<ExitCode, CliError> {
    let mut outputs: Vec<(&str, &Path)> = Vec::new();
    outputs.extend(to.onnx.map(|p| ("--onnx", p)));
    outputs.extend(to.state_dict.map(|p| ("--state-dict", p)));
    let mut inputs = vec![("the design", design)];
    inputs.extend(weights.map(|w| ("--weights", w)));
    file::check_outputs(&outputs, &inputs)?;
    if to.onnx.is_none() && to.pytorch.is_none() {
        return Err(CliError::Refused(
            "say what to export: --onnx FILE, --pytorch or --pytorch-project DIR".into(),
        ));
    }
    let mut graph = load(design)?;
    let (tensors, meta) = match weights {
        Some(w) => {
            graph = design_for_weights(&graph, w)?;
            let file = crate::train::weights::read(w)?;
            let tensors: crate::interop::Tensors = file
                .tensors
                .into_iter()
                .map(|(name, shape, data)| (name, (shape, data)))
                .collect();
            (Some(tensors), file.meta)
        }
        None => (None, None),
    };
    if let (Some(out), Some(tensors)) = (to.state_dict, &tensors) {
        let dict = crate::interop::pytorch::state_dict(&graph, tensors)?;
        let count = write_tensors(out, &dict, meta.as_ref())?;
        eprintln!("{count} tensors (PyTorch layouts) → {}", out.display());
    }
    if let Some(path) = to.onnx {
        match &tensors {
            Some(t) => crate::interop::onnx::export_with_meta(&graph, t, meta.as_ref(), path)?,
            None => crate::interop::onnx::export(&graph, None, path)?,
        }
        eprintln!("wrote {} (ONNX opset 13)", path.display());
    } else if let Some(forward) = to.pytorch {
        use crate::interop::pytorch::{ModuleOptions, module_source_with};
        let options = ModuleOptions {
            logits: forward.logits,
            meta: meta.as_ref(),
            ..ModuleOptions::default()
        };
        print!("{}", module_source_with(&graph, &options)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `netloom export --pytorch-project DIR`: see [`crate::interop::pytorch_project`].
fn pytorch_project(
    design: &Path,
    weights: Option<&Path>,
    dir: &Path,
) -> Result<ExitCode, CliError> {
    use crate::interop::pytorch_project::{InitialWeights, write_project};
    let mut graph = load(design)?;
    let initial = match weights {
        Some(w) => {
            graph = design_for_weights(&graph, w)?;
            let bytes =
                std::fs::read(w).map_err(|source| crate::train::weights::WeightsError::Io {
                    path: w.to_path_buf(),
                    source,
                })?;
            let file = crate::train::weights::from_safetensors(&bytes, w)?;
            // The weights must fit the design before the project carries them.
            let tensors: crate::interop::Tensors = file
                .tensors
                .into_iter()
                .map(|(name, shape, data)| (name, (shape, data)))
                .collect();
            crate::interop::pytorch::state_dict(&graph, &tensors).map_err(|source| {
                CliError::WeightsDontFit {
                    path: w.to_path_buf(),
                    source,
                }
            })?;
            Some((bytes, file.meta))
        }
        None => None,
    };
    let initial = initial.as_ref().map(|(bytes, meta)| InitialWeights {
        bytes,
        meta: meta.as_ref(),
    });
    let written = write_project(&graph, initial.as_ref(), dir)?;
    eprintln!(
        "wrote {} files into {}: torchrun --nproc_per_node=N {}/train.py --data FOLDER",
        written.len(),
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The design `weights` was trained as, from the design file named beside
/// it (see [`crate::train::weights::design_for`]); what changed is said on
/// standard error.
pub(crate) fn design_for_weights(graph: &Graph, weights: &Path) -> Result<Graph, CliError> {
    let fitted = crate::train::weights::design_for(graph, weights)?;
    if let Some(notice) = &fitted.notice {
        eprintln!("note: {notice}");
    }
    Ok(fitted.graph)
}

/// `netloom render`: the whole design as SVG or PNG.
fn render(args: RenderArgs) -> Result<ExitCode, CliError> {
    use crate::render::{Diagram, RenderOptions};
    if !(args.scale.is_finite() && args.scale > 0.0 && args.scale <= 8.0) {
        return Err(CliError::Refused(format!(
            "--scale {} must be in (0, 8]",
            args.scale
        )));
    }
    let graph = load(&args.design)?;
    if args.collapsed && graph.groups().is_empty() {
        eprintln!(
            "--collapsed: {} has no groups; every layer is drawn",
            args.design.display()
        );
    }
    let analysis = analyze(&graph);
    let options = RenderOptions {
        orientation: match args.orientation {
            OrientationArg::Tb => crate::graph::layout::Orientation::TopToBottom,
            OrientationArg::Lr => crate::graph::layout::Orientation::LeftToRight,
        },
        conventions: Conventions {
            ops: if args.flops {
                OpCount::Flops
            } else {
                OpCount::Macs
            },
            ..Conventions::default()
        },
        relayout: !args.keep_positions,
        collapsed: args.collapsed,
    };
    let diagram = Diagram::build(&graph, &analysis, &options);
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let out = args.output.display();
    let write_error = |source| CliError::Write {
        path: args.output.clone(),
        source,
    };
    match ext.as_deref() {
        Some("svg") => {
            file::write_atomically(&args.output, crate::render::svg(&diagram).as_bytes())
                .map_err(write_error)?
        }
        Some("png") => {
            let (image, scale) = crate::render::png(&diagram, args.scale)?;
            if scale < args.scale {
                eprintln!("scaled to {scale:.2} pixels per unit to stay within the PNG size limit");
            }
            let mut bytes = Vec::new();
            image
                .write_to(
                    &mut std::io::Cursor::new(&mut bytes),
                    image::ImageFormat::Png,
                )
                .map_err(|source| CliError::EncodePng {
                    path: args.output.clone(),
                    source,
                })?;
            file::write_atomically(&args.output, &bytes).map_err(write_error)?;
        }
        _ => {
            return Err(CliError::Refused(format!(
                "{out}: the output must end in .svg or .png"
            )));
        }
    }
    let [w, h] = diagram.size();
    eprintln!(
        "{} layers, {} wires, {w:.0}×{h:.0} → {out}",
        diagram.nodes.len(),
        diagram.routes.wires.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads a design, saying on stderr what the reader repaired to open it.
pub(crate) fn load(path: &Path) -> Result<Graph, CliError> {
    let loaded = file::load_with_repairs(path).map_err(|source| CliError::Load {
        path: path.to_path_buf(),
        source,
    })?;
    for repair in &loaded.ungrouped {
        eprintln!("warning: {}: {repair}", path.display());
    }
    Ok(loaded.graph)
}

/// The design's report as one JSON line, from its analysis.
fn json_line(
    graph: &Graph,
    analysis: &Analysis,
    conventions: &Conventions,
) -> Result<String, CliError> {
    Ok(serde_json::to_string(&Report::new(
        graph,
        analysis,
        conventions,
    ))?)
}

/// A conv/dense layer's GFLOP/s after its time in `bench`'s table (blank for other layers).
fn layer_rate(gflops: f64) -> String {
    if gflops > 0.0 {
        format!("  {gflops:>6.0} GFLOP/s")
    } else {
        String::new()
    }
}
