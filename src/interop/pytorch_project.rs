//! A PyTorch project for training a design beyond one machine:
//! `netloom export DESIGN --pytorch-project DIR [--weights W]` writes
//!
//! - `model.py`: the module of [`super::pytorch::module_source_with`]
//!   (forward returns logits), with the class names and input normalisation
//!   when known, a documented `preprocess` and `load_netloom_weights`;
//! - `netloom.json`: the design's facts, Netloom's run defaults, and the
//!   **layout table**: for every parameter tensor, its Netloom name and
//!   shape, its PyTorch state-dict key and shape, and how one becomes the
//!   other (an axis permutation, then optionally a reordering of the first
//!   axis). The table is derived by sending index tensors through
//!   [`super::pytorch::state_dict`], so layouts have one home;
//! - `netloom_io.py`: safetensors reading and writing (pure Python) and the
//!   conversions between a state dict and Netloom's weights files;
//! - `train.py`: `torchrun` training with DistributedDataParallel;
//! - `README.md`; `initial.safetensors` (a copy of `--weights`) when given.

use super::pytorch::{
    ModuleOptions, WeightsDoc, class_name, final_activation, identifiers, module_source_with,
    normalisation, state_dict,
};
use super::{InteropError, Tensors, param_shapes};
use crate::graph::{Graph, LayerKind};
use crate::infer;
use crate::train::optim::{OptimizerConfig, OptimizerKind};
use crate::train::weights::WeightsMeta;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TRAIN_PY: &str = include_str!("pytorch_project/train.py");
const NETLOOM_IO_PY: &str = include_str!("pytorch_project/netloom_io.py");
const MODEL_TAIL_PY: &str = include_str!("pytorch_project/model_tail.py");
const README_MD: &str = include_str!("pytorch_project/README.md");

/// Netloom's `netloom train` defaults (see `src/cli/train.rs`), which `train.py` uses.
const EPOCHS: u64 = 15;
const BATCH: usize = 32;
const SEED: u64 = 42;
const VAL_FRACTION: f32 = 0.1;
const TEST_FRACTION: f32 = 0.2;
const SGD_LR: f32 = 1e-2;

/// How one Netloom tensor maps to one PyTorch state-dict entry.
///
/// From PyTorch to Netloom: `t.permute(permute)`, then `t[rows]` when
/// `rows` is given (a reordering of the first axis), or, for layouts no
/// permutation describes, `t.reshape(-1)[gather]`; then reshape to
/// `netloom_shape`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorLayout {
    pub netloom: String,
    pub torch: String,
    pub netloom_shape: Vec<usize>,
    pub torch_shape: Vec<usize>,
    pub permute: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gather: Option<Vec<usize>>,
}

impl TensorLayout {
    /// Applies the PyTorch → Netloom conversion to row-major `values` of
    /// `torch_shape` (what `netloom_io.py` does with torch ops).
    pub fn to_netloom(&self, values: &[f32]) -> Vec<f32> {
        self.netloom_sources()
            .into_iter()
            .map(|j| values[j])
            .collect()
    }

    /// For every Netloom element (row-major), the PyTorch element it comes from.
    fn netloom_sources(&self) -> Vec<usize> {
        if let Some(g) = &self.gather {
            return g.clone();
        }
        let strides = strides(&self.torch_shape);
        let pstrides: Vec<usize> = self.permute.iter().map(|&a| strides[a]).collect();
        let n: usize = self.netloom_shape.iter().product();
        let mut out = Vec::with_capacity(n);
        let rank = self.netloom_shape.len();
        let mut idx = vec![0usize; rank];
        for _ in 0..n {
            let mut j = 0;
            for k in 0..rank {
                let i = if k == 0 {
                    self.rows.as_ref().map_or(idx[0], |r| r[idx[0]])
                } else {
                    idx[k]
                };
                j += i * pstrides[k];
            }
            out.push(j);
            for k in (0..rank).rev() {
                idx[k] += 1;
                if idx[k] < self.netloom_shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, n - 1);
            out.push(q);
        }
    }
    out.sort();
    out
}

/// The most compact description of `sources` (Netloom element → PyTorch element).
fn describe(
    netloom: String,
    torch: String,
    netloom_shape: Vec<usize>,
    torch_shape: Vec<usize>,
    sources: &[usize],
) -> TensorLayout {
    let mut layout = TensorLayout {
        netloom,
        torch,
        netloom_shape,
        torch_shape,
        permute: Vec::new(),
        rows: None,
        gather: None,
    };
    let rank = layout.torch_shape.len();
    if rank <= 4 {
        let strides = strides(&layout.torch_shape);
        for p in permutations(rank) {
            let permuted: Vec<usize> = p.iter().map(|&a| layout.torch_shape[a]).collect();
            if permuted != layout.netloom_shape {
                continue;
            }
            let rows = if rank == 0 {
                Vec::new()
            } else {
                let first = strides[p[0]];
                let row_len: usize = layout.netloom_shape[1..].iter().product();
                let Some(rows) = (0..layout.netloom_shape[0])
                    .map(|r| sources.get(r * row_len).map(|s| s / first))
                    .collect::<Option<Vec<usize>>>()
                else {
                    continue;
                };
                rows
            };
            let identity = rows.iter().enumerate().all(|(i, &r)| i == r);
            layout.permute = p;
            layout.rows = (!identity).then_some(rows);
            if layout.netloom_sources() == sources {
                return layout;
            }
        }
    }
    layout.permute = (0..rank).collect();
    layout.rows = None;
    layout.gather = Some(sources.to_vec());
    layout
}

/// The layout table of `graph`: one entry per Netloom parameter tensor, in
/// the design's node order, derived from [`state_dict`] on index tensors.
pub fn layout_table(graph: &Graph) -> Result<Vec<TensorLayout>, InteropError> {
    let analysis = infer::analyze(graph);
    if let Some(errors) = super::design_errors(graph, &analysis) {
        return Err(InteropError::Design(errors));
    }
    // Three passes keep every value an exact f32 integer: the tensor's
    // number, and the low and high 16 bits of each element's index.
    let mut names = Vec::new();
    let mut passes: [Tensors; 3] = Default::default();
    for (id, node) in graph.nodes() {
        let input = analysis
            .node(id)
            .and_then(|i| i.input_shapes.first().copied().flatten());
        for (key, shape) in param_shapes(&node.kind, input) {
            let name = format!("{}.{key}", node.name);
            let n: usize = shape.iter().product();
            let k = names.len() as f32;
            passes[0].insert(name.clone(), (shape.clone(), vec![k; n]));
            passes[1].insert(
                name.clone(),
                (shape.clone(), (0..n).map(|i| (i & 0xFFFF) as f32).collect()),
            );
            passes[2].insert(
                name.clone(),
                (shape.clone(), (0..n).map(|i| (i >> 16) as f32).collect()),
            );
            names.push((name, shape));
        }
    }
    let [which, lo, hi] = passes.map(|p| state_dict(graph, &p));
    let (which, lo, hi) = (which?, lo?, hi?);
    let mut found: Vec<Option<TensorLayout>> = vec![None; names.len()];
    for (torch_key, (dims, tags)) in &which {
        let Some(&first) = tags.first() else { continue };
        let k = first as usize;
        // BatchNorm's `num_batches_tracked` has no Netloom tensor.
        if torch_key.ends_with(".num_batches_tracked") || k >= names.len() {
            continue;
        }
        let (name, shape) = &names[k];
        let (lo, hi) = (&lo[torch_key].1, &hi[torch_key].1);
        let mut sources = vec![0usize; tags.len()];
        for (j, (l, h)) in lo.iter().zip(hi).enumerate() {
            let i = (*l as usize) | ((*h as usize) << 16);
            sources[i] = j;
        }
        found[k] = Some(describe(
            name.clone(),
            torch_key.clone(),
            shape.clone(),
            dims.clone(),
            &sources,
        ));
    }
    found
        .into_iter()
        .zip(&names)
        .map(|(l, (name, _))| {
            l.ok_or_else(|| {
                InteropError::Design(format!("`{name}` has no entry in the PyTorch state dict"))
            })
        })
        .collect()
}

#[derive(Serialize)]
struct Defaults {
    epochs: u64,
    batch: usize,
    optimizer: &'static str,
    lr_adam: f32,
    lr_sgd: f32,
    momentum: f32,
    nesterov: bool,
    adam_betas: [f32; 2],
    adam_eps: f32,
    weight_decay: f32,
    schedule: &'static str,
    seed: u64,
    val_fraction: f32,
    test_fraction: f32,
}

fn defaults() -> Defaults {
    let opt = OptimizerConfig::default();
    let (adam_betas, adam_eps) = match OptimizerKind::adam() {
        OptimizerKind::Adam {
            beta1,
            beta2,
            epsilon,
        } => ([beta1, beta2], epsilon),
        OptimizerKind::Sgd { .. } => ([0.9, 0.999], 1e-7),
    };
    let (momentum, nesterov) = match OptimizerKind::sgd_momentum() {
        OptimizerKind::Sgd { momentum, nesterov } => (momentum, nesterov),
        OptimizerKind::Adam { .. } => (0.9, false),
    };
    Defaults {
        epochs: EPOCHS,
        batch: BATCH,
        optimizer: "adam",
        lr_adam: opt.learning_rate,
        lr_sgd: SGD_LR,
        momentum,
        nesterov,
        adam_betas,
        adam_eps,
        weight_decay: opt.weight_decay,
        schedule: "constant",
        seed: SEED,
        val_fraction: VAL_FRACTION,
        test_fraction: TEST_FRACTION,
    }
}

#[derive(Serialize)]
struct Input {
    name: String,
    channels: u32,
    height: u32,
    width: u32,
}

#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    version: u32,
    design: &'a str,
    module_class: String,
    input: Input,
    outputs: u64,
    final_activation: Option<&'static str>,
    classes: Option<&'a [String]>,
    mean: Option<&'a [f32]>,
    std: Option<&'a [f32]>,
    seed: Option<u64>,
    val_fraction: Option<f32>,
    initial_weights: Option<&'static str>,
    decayed: Vec<String>,
    defaults: Defaults,
    tensors: &'a [TensorLayout],
    /// The design as a design file, stored by `train.py` in the header of
    /// the weights it writes (under `design_key`), as Netloom's own runs
    /// store the design they trained: `netloom eval`/`export` then take the
    /// weights as they are.
    design_file: String,
    design_key: &'static str,
}

/// What `--weights` contributes to a project.
pub struct InitialWeights<'a> {
    /// The file's bytes (copied as `initial.safetensors`).
    pub bytes: &'a [u8],
    pub meta: Option<&'a WeightsMeta>,
}

/// The project's files, name → contents.
pub fn project_files(
    graph: &Graph,
    initial: Option<&InitialWeights>,
) -> Result<BTreeMap<String, Vec<u8>>, InteropError> {
    let analysis = infer::analyze(graph);
    if let Some(errors) = super::design_errors(graph, &analysis) {
        return Err(InteropError::Design(errors));
    }
    let inputs = graph.input_nodes();
    let outputs = graph.outputs();
    let ([input_id], [output_id]) = (&inputs[..], &outputs[..]) else {
        return Err(InteropError::Design(format!(
            "a PyTorch project trains a classifier with one input and one output; this design has {} inputs and {} outputs",
            inputs.len(),
            outputs.len()
        )));
    };
    let Some(LayerKind::Input {
        height,
        width,
        channels,
    }) = graph.node(*input_id).map(|n| n.kind.clone())
    else {
        return Err(InteropError::Design(
            "the design's input is not an Input layer".into(),
        ));
    };
    let out_units = analysis
        .node(*output_id)
        .and_then(|i| i.output_shape)
        .map_or(0, |s| s.elements());
    let tensors = layout_table(graph)?;
    let ids = identifiers(graph);
    let decayed: Vec<String> = graph
        .nodes()
        .filter(|(_, n)| matches!(n.kind, LayerKind::Conv2d { .. } | LayerKind::Dense { .. }))
        .filter_map(|(id, _)| ids.get(&id).map(|i| format!("{i}.weight")))
        .collect();
    let meta = initial.and_then(|w| w.meta);
    let stats = normalisation(meta, channels);
    let (mean, std) = (stats.map(|(m, _)| m), stats.map(|(_, s)| s));
    let classes = meta.map(|m| m.classes.as_slice()).filter(|c| !c.is_empty());
    let final_act = final_activation(graph).map(|(_, e)| {
        if e.contains("softmax") {
            "softmax"
        } else {
            "sigmoid"
        }
    });
    let class = class_name(&graph.name);
    let manifest = Manifest {
        format: "netloom-pytorch-project",
        version: 1,
        design: &graph.name,
        module_class: class.clone(),
        input: Input {
            name: graph.name_of(*input_id).to_string(),
            channels,
            height,
            width,
        },
        outputs: out_units,
        final_activation: final_act,
        classes,
        mean,
        std,
        seed: meta.map(|m| m.seed),
        val_fraction: meta.map(|m| m.val_fraction),
        initial_weights: initial.map(|_| "initial.safetensors"),
        decayed,
        defaults: defaults(),
        tensors: &tensors,
        design_file: crate::graph::file::to_json(graph),
        design_key: crate::train::weights::DESIGN_KEY,
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| InteropError::Design(format!("cannot describe the project: {e}")))?;
    // In a project Netloom's own weights files load, through the loader
    // placed after `preprocess`.
    let loader = MODEL_TAIL_PY.replace("@CLASS@", &class);
    let model = module_source_with(
        graph,
        &ModuleOptions {
            logits: true,
            meta,
            weights_doc: WeightsDoc::NetloomFile,
            helpers: &loader,
        },
    )?;
    let readme = README_MD
        .replace("@DESIGN@", &graph.name)
        .replace("@CLASS@", &class)
        .replace("@TENSORS@", &tensors.len().to_string())
        .replace(
            "@INPUT@",
            &format!("{channels}×{height}×{width} (channels × height × width)"),
        );
    let mut files = BTreeMap::new();
    files.insert("model.py".to_string(), model.into_bytes());
    files.insert("train.py".to_string(), TRAIN_PY.as_bytes().to_vec());
    files.insert(
        "netloom_io.py".to_string(),
        NETLOOM_IO_PY.as_bytes().to_vec(),
    );
    files.insert("netloom.json".to_string(), json.into_bytes());
    files.insert("README.md".to_string(), readme.into_bytes());
    if let Some(w) = initial {
        files.insert("initial.safetensors".to_string(), w.bytes.to_vec());
    }
    Ok(files)
}

/// Writes [`project_files`] into `dir` (created when missing), refusing a
/// `dir` that is not an empty folder. Returns the paths written.
pub fn write_project(
    graph: &Graph,
    initial: Option<&InitialWeights>,
    dir: &Path,
) -> Result<Vec<PathBuf>, InteropError> {
    let io = |source| InteropError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(InteropError::Design(format!(
                "{} exists and is not a folder; give a new or empty folder",
                dir.display()
            )));
        }
        let mut entries = std::fs::read_dir(dir).map_err(io)?;
        if entries.next().is_some() {
            return Err(InteropError::Design(format!(
                "{} is not empty; refusing to overwrite it (give a new or empty folder)",
                dir.display()
            )));
        }
    }
    // Everything is generated before anything is written.
    let files = project_files(graph, initial)?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        crate::graph::file::write_atomically(&path, &bytes).map_err(|source| InteropError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_of_three() {
        let p = permutations(3);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], vec![0, 1, 2]);
    }

    #[test]
    fn a_transpose_is_described_as_a_permutation() {
        // torch [2, 3] → netloom [3, 2] (its transpose).
        let sources: Vec<usize> = (0..3)
            .flat_map(|r| (0..2).map(move |c| c * 3 + r))
            .collect();
        let l = describe("a".into(), "b".into(), vec![3, 2], vec![2, 3], &sources);
        assert_eq!(l.permute, vec![1, 0]);
        assert!(l.rows.is_none() && l.gather.is_none());
        assert_eq!(
            l.to_netloom(&[0., 1., 2., 3., 4., 5.]),
            [0., 3., 1., 4., 2., 5.]
        );
    }
}
