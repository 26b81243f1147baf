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
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
}

fn load(path: &Path) -> Result<Graph, String> {
    file::load(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn json_line(graph: &Graph, conventions: &Conventions) -> Result<String, String> {
    let analysis = analyze(graph);
    serde_json::to_string(&Report::new(graph, &analysis, conventions)).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        None => {
            let path = netloom::default_design_path();
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
