//! The `netloom` command: the designer app, or headless cost and training tools.

use clap::{Parser, Subcommand, ValueEnum};
use netloom::graph::{Graph, file};
use netloom::infer::{Conventions, OpCount, ParamStyle, Report, analyze};
use netloom::report;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "netloom",
    version,
    about = "Design, cost and train convolutional networks"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
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
    },
    /// Writes a design as ONNX (opset 13) or as PyTorch code on standard output.
    Export {
        design: PathBuf,
        /// Write an ONNX model here.
        #[arg(long, conflicts_with = "pytorch")]
        onnx: Option<PathBuf>,
        /// Print a PyTorch `nn.Module` with the same layers and wiring.
        #[arg(long)]
        pytorch: bool,
        /// Trained weights (safetensors): embedded in the ONNX model, or with
        /// `--pytorch` converted to a state dict (see `--state-dict`).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// With `--pytorch --weights`: write the state dict the generated module loads.
        #[arg(long, requires_all = ["pytorch", "weights"])]
        state_dict: Option<PathBuf>,
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
        #[arg(long, value_parser = netloom::train::cli::parse_memory_limit, value_name = "SIZE")]
        memory_limit: Option<u64>,
    },
    /// Draws the whole design as a diagram (SVG or PNG, by the output's extension).
    Render(RenderArgs),
    /// Trains a design on a dataset (default: the embedded hand-digits set).
    Train(netloom::train::cli::TrainArgs),
    /// Evaluates trained weights: accuracy, confusion matrix, multi-crop, ensembles.
    Eval(netloom::train::cli::EvalArgs),
    /// Learning-rate range test: trains a copy of the design for ~100 batches
    /// with the rate rising exponentially and suggests a rate (nothing is saved).
    LrFind(netloom::train::experiment::cli::LrFindArgs),
    /// Trains one run per value of a parameter and prints MACs, params,
    /// time per step and accuracy per value, with the Pareto front.
    Sweep(netloom::train::experiment::cli::SweepArgs),
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

/// `netloom render`: the whole design as SVG or PNG.
fn render(args: RenderArgs) -> Result<ExitCode, String> {
    use netloom::render::{Diagram, RenderOptions};
    if !(args.scale.is_finite() && args.scale > 0.0 && args.scale <= 8.0) {
        return Err(format!("--scale {} must be in (0, 8]", args.scale));
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
            OrientationArg::Tb => netloom::graph::layout::Orientation::TopToBottom,
            OrientationArg::Lr => netloom::graph::layout::Orientation::LeftToRight,
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
    match ext.as_deref() {
        Some("svg") => {
            file::write_atomically(&args.output, netloom::render::svg(&diagram).as_bytes())
                .map_err(|e| format!("cannot write {out}: {e}"))?
        }
        Some("png") => {
            let (image, scale) =
                netloom::render::png(&diagram, args.scale).map_err(|e| e.to_string())?;
            if scale < args.scale {
                eprintln!("scaled to {scale:.2} pixels per unit to stay within the PNG size limit");
            }
            let mut bytes = Vec::new();
            image
                .write_to(
                    &mut std::io::Cursor::new(&mut bytes),
                    image::ImageFormat::Png,
                )
                .map_err(|e| format!("cannot encode {out}: {e}"))?;
            file::write_atomically(&args.output, &bytes)
                .map_err(|e| format!("cannot write {out}: {e}"))?;
        }
        _ => return Err(format!("{out}: the output must end in .svg or .png")),
    }
    let [w, h] = diagram.size();
    eprintln!(
        "{} layers, {} wires, {w:.0}×{h:.0} → {out}",
        diagram.nodes.len(),
        diagram.routes.wires.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn load(path: &Path) -> Result<Graph, String> {
    file::load(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn json_line(graph: &Graph, conventions: &Conventions) -> Result<String, String> {
    let analysis = analyze(graph);
    serde_json::to_string(&Report::new(graph, &analysis, conventions)).map_err(|e| e.to_string())
}

/// Refuses a benchmark whose plan would not fit the memory budget (or whose
/// design has errors, naming the layer).
fn check_bench_memory(graph: &Graph, batch: usize, limit: Option<u64>) -> Result<u64, String> {
    use netloom::train::memory::{Budget, Purpose, estimate};
    let analysis = analyze(graph);
    if !analysis.is_valid() {
        return Err(format!(
            "the design has errors: {}",
            analysis.error_summary(graph, 3)
        ));
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
        .map_err(|e| format!("benchmarking `{}` {e}", graph.name))?;
    Ok(e.total())
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        #[cfg(feature = "gui")]
        None => {
            netloom::app::run(netloom::app::LaunchOptions {
                design: cli.design,
                train: cli.train,
                epochs: cli.epochs,
                frame_stats: cli.frame_stats,
                quit_after: cli.quit_after,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "gui"))]
        None => {
            // Built without the designer: show the design's cost instead.
            let path = cli.design.unwrap_or_else(netloom::default_design_path);
            let graph = load(&path)?;
            print!(
                "{}",
                report::summary_table(&graph, &analyze(&graph), &Conventions::default())
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Summary { design, cost }) => {
            let graph = load(&design)?;
            let conventions = cost.conventions();
            let analysis = analyze(&graph);
            if cost.json {
                println!("{}", json_line(&graph, &conventions)?);
            } else {
                print!("{}", report::summary_table(&graph, &analysis, &conventions));
            }
            Ok(if analysis.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(Command::Bench {
            design,
            batch,
            steps,
            seed,
            json,
            memory_limit,
        }) => {
            let path = design.unwrap_or_else(netloom::default_design_path);
            let graph = load(&path)?;
            let estimate = check_bench_memory(&graph, batch, memory_limit)?;
            if !json {
                eprintln!(
                    "timing {} at batch {batch}: 3 warm-up steps, then {steps} training steps and {steps} forward passes…",
                    graph.name
                );
            }
            let r = netloom::bench::run(&graph, batch, steps.max(1), seed)?;
            if json {
                println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            } else {
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
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Import {
            model,
            output,
            weights,
        }) => {
            let mut outputs = vec![("-o", output.as_path())];
            outputs.extend(weights.as_deref().map(|w| ("--weights", w)));
            file::check_outputs(&outputs, &[("the model", &model)]).map_err(|e| e.to_string())?;
            let imported = netloom::interop::onnx::import(&model)
                .map_err(|e| format!("{}: {e}", model.display()))?;
            for (op, count) in &imported.unsupported {
                eprintln!("unsupported operator {op} ×{count} (left out)");
            }
            for warning in &imported.warnings {
                eprintln!("warning: {warning}");
            }
            let analysis = analyze(&imported.graph);
            if !analysis.is_valid() {
                return Err(format!(
                    "{}: the imported design has errors, so {} was not written: {}",
                    model.display(),
                    output.display(),
                    analysis.error_summary(&imported.graph, 5)
                ));
            }
            file::save(&imported.graph, &output)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            if let Some(path) = weights {
                if imported.weights.is_empty() {
                    eprintln!(
                        "the model carries no weights; {} not written",
                        path.display()
                    );
                } else {
                    let tensors: Vec<(String, Vec<usize>, &[f32])> = imported
                        .weights
                        .iter()
                        .map(|(name, (shape, data))| (name.clone(), shape.clone(), data.as_slice()))
                        .collect();
                    let bytes = netloom::train::weights::to_safetensors(&tensors, None)?;
                    file::write_atomically(&path, &bytes)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    eprintln!("{} weight tensors → {}", tensors.len(), path.display());
                }
            }
            let totals = analysis.totals(&Conventions::default());
            println!(
                "{} layers, {} params, {} MACs → {}",
                imported.graph.len(),
                netloom::infer::thousands(totals.total_params),
                netloom::infer::thousands(totals.macs),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Export {
            design,
            onnx,
            pytorch,
            weights,
            state_dict,
        }) => {
            let mut outputs: Vec<(&str, &Path)> = Vec::new();
            outputs.extend(onnx.as_deref().map(|p| ("--onnx", p)));
            outputs.extend(state_dict.as_deref().map(|p| ("--state-dict", p)));
            let mut inputs = vec![("the design", design.as_path())];
            inputs.extend(weights.as_deref().map(|w| ("--weights", w)));
            file::check_outputs(&outputs, &inputs).map_err(|e| e.to_string())?;
            let graph = load(&design)?;
            let tensors = match weights {
                Some(w) => {
                    let file = netloom::train::weights::read(&w).map_err(|e| e.to_string())?;
                    Some(
                        file.tensors
                            .into_iter()
                            .map(|(name, shape, data)| (name, (shape, data)))
                            .collect::<netloom::interop::Tensors>(),
                    )
                }
                None => None,
            };
            if let (Some(out), Some(tensors)) = (&state_dict, &tensors) {
                let dict = netloom::interop::pytorch::state_dict(&graph, tensors)
                    .map_err(|e| e.to_string())?;
                let list: Vec<(String, Vec<usize>, &[f32])> = dict
                    .iter()
                    .map(|(name, (shape, data))| (name.clone(), shape.clone(), data.as_slice()))
                    .collect();
                let bytes = netloom::train::weights::to_safetensors(&list, None)?;
                file::write_atomically(out, &bytes)
                    .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
                eprintln!(
                    "{} tensors (PyTorch layouts) → {}",
                    list.len(),
                    out.display()
                );
            }
            if let Some(path) = onnx {
                netloom::interop::onnx::export(&graph, tensors.as_ref(), &path)
                    .map_err(|e| e.to_string())?;
                eprintln!("wrote {} (ONNX opset 13)", path.display());
            } else if pytorch {
                print!(
                    "{}",
                    netloom::interop::pytorch::module_source(&graph).map_err(|e| e.to_string())?
                );
            } else {
                return Err("say what to export: --onnx FILE or --pytorch".into());
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Render(args)) => render(args),
        Some(Command::Train(args)) => netloom::train::cli::train(args),
        Some(Command::Eval(args)) => netloom::train::cli::evaluate(args),
        Some(Command::LrFind(args)) => netloom::train::experiment::cli::lr_find_command(args),
        Some(Command::Sweep(args)) => netloom::train::experiment::cli::sweep_command(args),
        Some(Command::Compare { a, b, cost }) => {
            let (ga, gb) = (load(&a)?, load(&b)?);
            let conventions = cost.conventions();
            if cost.json {
                println!("{}", json_line(&ga, &conventions)?);
                println!("{}", json_line(&gb, &conventions)?);
            } else {
                let (aa, ab) = (analyze(&ga), analyze(&gb));
                print!(
                    "{}",
                    report::compare_table((&ga, &aa), (&gb, &ab), &conventions)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// A conv/dense layer's GFLOP/s after its time in `bench`'s table (blank for other layers).
fn layer_rate(gflops: f64) -> String {
    if gflops > 0.0 {
        format!("  {gflops:>6.0} GFLOP/s")
    } else {
        String::new()
    }
}
