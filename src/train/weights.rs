//! Weights files: [safetensors](https://huggingface.co/docs/safetensors),
//! one f32 tensor per parameter keyed `{layer}.{role}` (`fc.weight`,
//! `stem_bn.running_var`, …) in Netloom layouts (conv HWIO, dense
//! `[in, out]`). Training facts the evaluator needs (class names, input
//! normalisation, split seed) travel in the header's metadata under
//! `netloom`; the final weights of a run also carry the design as trained
//! (its head resized to the dataset's classes) under `netloom.design`, so a
//! run's output works with the design file it started from
//! ([`design_for`]). Checkpoints add the optimizer state as
//! `optimizer.{name}.m|v`.

use super::plan::ParamTensor;
use super::prepare::fit_output;
use crate::data::ChannelStats;
use crate::graph::{Graph, NodeId, file};
use crate::infer::{Shape, analyze};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Metadata key holding [`WeightsMeta`] as JSON.
pub const META_KEY: &str = "netloom";
/// Metadata key holding the design as trained (design-file JSON).
pub const DESIGN_KEY: &str = "netloom.design";
/// The largest header safetensors accepts (its own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Prefix of optimizer-state tensors in checkpoints.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";
/// Prefix of the moving-average BatchNorm statistics kept beside precise-BN ones.
pub const EMA_PREFIX: &str = "ema.";

#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable safetensors file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: not a readable safetensors file: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: Box<safetensors::SafeTensorError>,
    },
    #[error("{}: tensor `{name}` is {dtype}; Netloom reads F32 tensors only", path.display())]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{}: tensor `{name}` holds {value} at index {index}; weights must be finite numbers", path.display())]
    NonFinite {
        path: PathBuf,
        name: String,
        index: usize,
        value: f32,
    },
    #[error("{}: the `{META_KEY}` metadata is unusable: {message}", path.display())]
    BadMeta { path: PathBuf, message: String },
    #[error("{}: cannot encode the weights: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: Box<EncodeError>,
    },
    #[error("{}: the design stored with the weights is unreadable: {source}", path.display())]
    BadDesign {
        path: PathBuf,
        #[source]
        source: Box<file::LoadError>,
    },
    /// The weights were trained as a design that differs from the one given
    /// in more than the head fitted to the dataset's classes.
    #[error(
        "{} was trained as a different design than `{design}`: {}; give the design file the run started from",
        path.display(),
        differences.join("; ")
    )]
    DesignDiffers {
        path: PathBuf,
        design: String,
        differences: Vec<String>,
    },
}

/// Why tensors could not be encoded as safetensors.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("tensor `{name}`: {source}")]
    Tensor {
        name: String,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("the `{META_KEY}` metadata: {0}")]
    Meta(#[from] serde_json::Error),
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
}

/// What a weights file knows about the run that wrote it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightsMeta {
    /// Design name.
    pub design: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Per-channel input normalisation used in training.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Split seed and validation fraction (so `eval` holds out the same images).
    pub seed: u64,
    pub val_fraction: f32,
    /// Epochs completed when the file was written.
    pub epoch: u64,
    /// Optimizer steps taken (checkpoints).
    pub optimizer_step: u64,
    /// Running BN statistics were recomputed with precise BN.
    pub precise_bn: bool,
}

impl WeightsMeta {
    /// Why the normalisation statistics cannot be used, if they cannot:
    /// a mean that is not finite, or a standard deviation that is not a
    /// positive finite number (dividing by it would make every input NaN
    /// or infinite).
    pub fn stats_problem(&self) -> Option<String> {
        if self.mean.len() != self.std.len() {
            return Some(format!(
                "{} channel means but {} standard deviations",
                self.mean.len(),
                self.std.len()
            ));
        }
        if let Some((k, m)) = self.mean.iter().enumerate().find(|(_, m)| !m.is_finite()) {
            return Some(format!("the mean of channel {k} is {m}"));
        }
        self.std
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
            .map(|(k, s)| {
                format!("the standard deviation of channel {k} is {s}; it must be positive")
            })
    }

    pub fn stats(&self) -> Option<ChannelStats> {
        (!self.mean.is_empty() && self.mean.len() == self.std.len()).then(|| ChannelStats {
            mean: self.mean.clone(),
            std: self.std.clone(),
        })
    }
}

/// A weights file read into memory.
#[derive(Clone, Debug, Default)]
pub struct WeightsFile {
    /// `(name, shape, values)` in file order (sorted by name).
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub meta: Option<WeightsMeta>,
    /// The design as trained (design-file JSON), when the file carries it.
    pub design: Option<String>,
}

impl WeightsFile {
    pub fn get(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, d)| (s.as_slice(), d.as_slice()))
    }
}

/// One tensor whose shape in the file differs from the design's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub file: Vec<usize>,
    pub design: Vec<usize>,
}

/// Which of the design's tensors a weights file filled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Loaded: same name and shape.
    pub matched: Vec<String>,
    /// In the design but not in the file (left as they were).
    pub missing: Vec<String>,
    /// In the file but not in the design (ignored).
    pub unused: Vec<String>,
    /// Same name, different shape (left as they were).
    pub mismatched: Vec<ShapeMismatch>,
}

impl LoadReport {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tensors matched", self.matched.len())?;
        if !self.mismatched.is_empty() {
            let list: Vec<String> = self
                .mismatched
                .iter()
                .map(|m| format!("{} (file {:?}, design {:?})", m.name, m.file, m.design))
                .collect();
            write!(
                f,
                "; {} shape mismatches kept their initial values: {}",
                list.len(),
                list.join(", ")
            )?;
        }
        if !self.missing.is_empty() {
            write!(
                f,
                "; {} not in the file: {}",
                self.missing.len(),
                self.missing.join(", ")
            )?;
        }
        if !self.unused.is_empty() {
            write!(
                f,
                "; {} file tensors match no layer: {}",
                self.unused.len(),
                self.unused.join(", ")
            )?;
        }
        Ok(())
    }
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Serialises named f32 tensors plus metadata to safetensors bytes.
pub fn to_safetensors(
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: Option<&WeightsMeta>,
) -> Result<Vec<u8>, EncodeError> {
    encode(tensors, meta, None)
}

/// Safetensors bytes of `tensors` with `meta` and the design (as JSON) in
/// the header's metadata.
fn encode(
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: Option<&WeightsMeta>,
    design: Option<&Graph>,
) -> Result<Vec<u8>, EncodeError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| to_bytes(d)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|source| EncodeError::Tensor {
                    name: name.clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, EncodeError>>()?;
    let mut info = HashMap::new();
    if let Some(m) = meta {
        info.insert(META_KEY.to_string(), serde_json::to_string(m)?);
    }
    if let Some(g) = design {
        info.insert(DESIGN_KEY.to_string(), file::to_json(g));
    }
    Ok(safetensors::serialize(
        views,
        (!info.is_empty()).then_some(info),
    )?)
}

/// Saves `params` (every tensor, running statistics included) atomically.
pub fn save(path: &Path, params: &[ParamTensor], meta: &WeightsMeta) -> Result<(), WeightsError> {
    save_with_extra(path, params, &[], meta)
}

/// Saves `params` and `extra` tensors (e.g. optimizer state) atomically.
pub fn save_with_extra(
    path: &Path,
    params: &[ParamTensor],
    extra: &[(String, Vec<usize>, &[f32])],
    meta: &WeightsMeta,
) -> Result<(), WeightsError> {
    write(path, params, extra, meta, None)
}

/// A run's final weights: [`save_with_extra`], with `design` (the design as
/// trained) stored beside the metadata for [`design_for`].
pub fn save_trained(
    path: &Path,
    params: &[ParamTensor],
    extra: &[(String, Vec<usize>, &[f32])],
    meta: &WeightsMeta,
    design: &Graph,
) -> Result<(), WeightsError> {
    write(path, params, extra, meta, Some(design))
}

fn write(
    path: &Path,
    params: &[ParamTensor],
    extra: &[(String, Vec<usize>, &[f32])],
    meta: &WeightsMeta,
    design: Option<&Graph>,
) -> Result<(), WeightsError> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone(), p.data.as_slice()))
        .collect();
    tensors.extend(extra.iter().map(|(n, s, d)| (n.clone(), s.clone(), *d)));
    save_tensors(path, &tensors, Some(meta), design)
}

/// Writes named tensors (Netloom layouts) as a weights file, atomically,
/// with `meta` and `design` in its header when given: the one place a
/// weights file is written ([`save_with_extra`], [`save_trained`], and
/// weights that come from elsewhere, such as an imported model's).
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: Option<&WeightsMeta>,
    design: Option<&Graph>,
) -> Result<(), WeightsError> {
    let bytes = encode(tensors, meta, design).map_err(|source| WeightsError::Encode {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    file::write_atomically(path, &bytes).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses safetensors bytes (F32 tensors only).
pub fn from_safetensors(bytes: &[u8], path: &Path) -> Result<WeightsFile, WeightsError> {
    let format = |source| WeightsError::Safetensors {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(format)?;
    let Header { meta, design } = Header::from_metadata(header.metadata().as_ref(), path)?;
    let st = SafeTensors::deserialize(bytes).map_err(format)?;
    let mut tensors = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).map_err(format)?;
        if view.dtype() != Dtype::F32 {
            return Err(WeightsError::Dtype {
                path: path.to_path_buf(),
                name,
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(WeightsError::NonFinite {
                path: path.to_path_buf(),
                name,
                index,
                value,
            });
        }
        tensors.push((name, view.shape().to_vec(), data));
    }
    Ok(WeightsFile {
        tensors,
        meta,
        design,
    })
}

/// What a weights file's header says beside its tensors.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub meta: Option<WeightsMeta>,
    /// The design as trained (design-file JSON).
    pub design: Option<String>,
}

impl Header {
    fn from_metadata(
        metadata: Option<&HashMap<String, String>>,
        path: &Path,
    ) -> Result<Header, WeightsError> {
        let meta = match metadata.and_then(|m| m.get(META_KEY)) {
            Some(json) => Some(serde_json::from_str::<WeightsMeta>(json).map_err(|e| {
                WeightsError::Format {
                    path: path.to_path_buf(),
                    message: format!("bad `{META_KEY}` metadata: {e}"),
                }
            })?),
            None => None,
        };
        if let Some(message) = meta.as_ref().and_then(WeightsMeta::stats_problem) {
            return Err(WeightsError::BadMeta {
                path: path.to_path_buf(),
                message,
            });
        }
        let design = metadata.and_then(|m| m.get(DESIGN_KEY)).cloned();
        Ok(Header { meta, design })
    }

    /// The stored design, parsed.
    pub fn design(&self, path: &Path) -> Result<Option<Graph>, WeightsError> {
        self.design
            .as_deref()
            .map(file::from_json)
            .transpose()
            .map_err(|source| WeightsError::BadDesign {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
    }
}

/// Reads only the header of a weights file: its metadata and stored design,
/// without the tensors.
pub fn read_header(path: &Path) -> Result<Header, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = |message: String| WeightsError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| format(format!("no header length ({e})")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return Err(format(format!(
            "the header claims {n} bytes (at most {MAX_HEADER_BYTES})"
        )));
    }
    let mut text = Vec::new();
    f.take(n).read_to_end(&mut text).map_err(io)?;
    if text.len() as u64 != n {
        return Err(format(format!(
            "the header claims {n} bytes but the file holds {}",
            text.len()
        )));
    }
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "__metadata__", default)]
        metadata: Option<HashMap<String, String>>,
    }
    let raw: Raw = serde_json::from_slice(&text).map_err(|e| format(format!("bad header: {e}")))?;
    Header::from_metadata(raw.metadata.as_ref(), path)
}

/// The design a run trained, as stored in its weights file (`None` for
/// files written before designs were stored, and for imported weights).
pub fn trained_design(path: &Path) -> Result<Option<Graph>, WeightsError> {
    read_header(path)?.design(path)
}

/// The design to use with a weights file, and what was changed to get it.
#[derive(Clone, Debug)]
pub struct DesignForWeights {
    /// The given design, with its head fitted as the weights were trained.
    pub graph: Graph,
    /// A sentence for the user when the design differs from the one given.
    pub notice: Option<String>,
}

/// The design `weights` fits, starting from `given` (the design file the
/// user names beside the weights): when the file stores the design it was
/// trained as and that differs from `given` only in the head `fit_output`
/// resized to the dataset's classes, `given` with that head; the same
/// design when they agree. Any other difference (layers, kinds, parameters,
/// wiring) is refused with [`WeightsError::DesignDiffers`]. Positions,
/// groups and frozen flags do not count. Files without a stored design
/// (older runs) get the head fitted to their metadata's class count.
///
/// This is what `export`, `eval` and the designer's weight loading call
/// before compiling the design for the weights.
pub fn design_for(given: &Graph, path: &Path) -> Result<DesignForWeights, WeightsError> {
    let header = read_header(path)?;
    let classes = header.meta.as_ref().map_or(0, |m| m.classes.len());
    let Some(stored) = header.design(path)? else {
        let mut graph = given.clone();
        let notice = match classes {
            0 => None,
            n => fit_output(&mut graph, n).ok().flatten().map(|what| {
                format!(
                    "{} was trained on {n} classes and stores no design: {what}",
                    path.display()
                )
            }),
        };
        return Ok(DesignForWeights { graph, notice });
    };
    let differences = design_differences(given, &stored);
    if differences.is_empty() {
        return Ok(DesignForWeights {
            graph: given.clone(),
            notice: None,
        });
    }
    let classes = output_units(&stored).unwrap_or(classes);
    let mut fitted = given.clone();
    if let Ok(Some(what)) = fit_output(&mut fitted, classes)
        && design_differences(&fitted, &stored).is_empty()
    {
        return Ok(DesignForWeights {
            graph: fitted,
            notice: Some(format!(
                "using the design {} was trained as: {what}",
                path.display()
            )),
        });
    }
    Err(WeightsError::DesignDiffers {
        path: path.to_path_buf(),
        design: given.name.clone(),
        differences,
    })
}

/// The size of a design's only output vector.
fn output_units(graph: &Graph) -> Option<usize> {
    let [out] = graph.outputs()[..] else {
        return None;
    };
    match analyze(graph).node(out)?.output_shape? {
        Shape::Vector(n) => Some(n as usize),
        Shape::Volume { .. } => None,
    }
}

/// How `stored` differs from `given` as a function: layers present in one
/// only, a layer's kind or parameters, a layer's inputs (by name). At most
/// a handful are listed.
fn design_differences(given: &Graph, stored: &Graph) -> Vec<String> {
    const SHOWN: usize = 6;
    let inputs = |g: &Graph, id: NodeId| -> Vec<String> {
        g.inputs_of(id)
            .into_iter()
            .map(|i| i.map_or_else(|| "(nothing)".to_string(), |i| g.name_of(i).to_string()))
            .collect()
    };
    let mut out = Vec::new();
    for (id, node) in given.nodes() {
        let Some(other_id) = stored.find(&node.name) else {
            out.push(format!("the weights' design has no layer `{}`", node.name));
            continue;
        };
        let Some(other) = stored.node(other_id) else {
            continue;
        };
        if other.kind != node.kind {
            let describe = |kind: &crate::graph::LayerKind, exact: bool| {
                let text = if exact {
                    format!("{kind:?}")
                } else {
                    format!("{} {}", kind.display_name(), kind.summary())
                };
                text.trim_end().to_string()
            };
            let exact = node.kind.summary() == other.kind.summary()
                && node.kind.display_name() == other.kind.display_name();
            out.push(format!(
                "`{}` is {} here but {} in the weights' design",
                node.name,
                describe(&node.kind, exact),
                describe(&other.kind, exact)
            ));
        }
        let (mine, theirs) = (inputs(given, id), inputs(stored, other_id));
        if mine != theirs {
            out.push(format!(
                "`{}` takes [{}] here but [{}] in the weights' design",
                node.name,
                mine.join(", "),
                theirs.join(", ")
            ));
        }
    }
    for (_, node) in stored.nodes() {
        if given.find(&node.name).is_none() {
            out.push(format!(
                "the weights' design has a layer `{}` ({}) this one lacks",
                node.name,
                node.kind.display_name()
            ));
        }
    }
    if out.len() > SHOWN {
        let more = out.len() - SHOWN;
        out.truncate(SHOWN);
        out.push(format!("{more} more"));
    }
    out
}

/// Reads a weights file.
pub fn read(path: &Path) -> Result<WeightsFile, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_safetensors(&bytes, path)
}

/// Copies every tensor of `file` whose name and shape match into `params`.
/// Optimizer-state and `ema.` tensors are neither used nor reported.
pub fn apply(file: &WeightsFile, params: &mut [ParamTensor]) -> LoadReport {
    let mut report = LoadReport::default();
    for p in params.iter_mut() {
        match file.get(&p.name) {
            Some((shape, data)) if shape == p.shape.as_slice() => {
                p.data.copy_from_slice(data);
                report.matched.push(p.name.clone());
            }
            Some((shape, _)) => report.mismatched.push(ShapeMismatch {
                name: p.name.clone(),
                file: shape.to_vec(),
                design: p.shape.clone(),
            }),
            None => report.missing.push(p.name.clone()),
        }
    }
    for (name, _, _) in &file.tensors {
        if !name.starts_with(OPTIMIZER_PREFIX)
            && !name.starts_with(EMA_PREFIX)
            && !params.iter().any(|p| &p.name == name)
        {
            report.unused.push(name.clone());
        }
    }
    report
}

/// Reads `path` and loads what matches into `params`.
pub fn load_into(
    path: &Path,
    params: &mut [ParamTensor],
) -> Result<(LoadReport, Option<WeightsMeta>), WeightsError> {
    let file = read(path)?;
    Ok((apply(&file, params), file.meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ParamRole;

    fn tensor(name: &str, shape: Vec<usize>, start: f32) -> ParamTensor {
        let n = shape.iter().product();
        ParamTensor {
            name: name.into(),
            layer: name.split('.').next().unwrap_or_default().into(),
            role: ParamRole::Weight,
            shape,
            data: (0..n).map(|i| start + i as f32 * 0.5).collect(),
            grad: Vec::new(),
            frozen: false,
        }
    }

    #[test]
    fn bytes_round_trip_with_metadata() {
        let params = [
            tensor("a.weight", vec![2, 3], 1.0),
            tensor("b.bias", vec![4], -2.0),
        ];
        let meta = WeightsMeta {
            design: "d".into(),
            classes: vec!["x".into(), "y".into()],
            mean: vec![0.5],
            std: vec![0.25],
            ..Default::default()
        };
        let list: Vec<(String, Vec<usize>, &[f32])> = params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone(), p.data.as_slice()))
            .collect();
        let bytes = to_safetensors(&list, Some(&meta)).expect("serialises");
        let file = from_safetensors(&bytes, Path::new("mem")).expect("parses");
        assert_eq!(file.meta.as_ref(), Some(&meta));
        let mut other = vec![
            tensor("a.weight", vec![2, 3], 0.0),
            tensor("b.bias", vec![5], 0.0),
            tensor("c.weight", vec![1], 0.0),
        ];
        let report = apply(&file, &mut other);
        assert_eq!(report.matched, vec!["a.weight"]);
        assert_eq!(report.missing, vec!["c.weight"]);
        assert_eq!(report.mismatched.len(), 1);
        assert!(report.unused.is_empty());
        assert_eq!(other[0].data, params[0].data);
        assert!(report.to_string().contains("b.bias (file [4], design [5])"));
    }

    #[test]
    fn non_finite_weights_and_zero_std_are_refused_by_name() {
        let mut t = tensor("conv.weight", vec![3], 1.0);
        t.data[2] = f32::NAN;
        let list = vec![(t.name.clone(), t.shape.clone(), t.data.as_slice())];
        let bytes = to_safetensors(&list, None).unwrap();
        let err = from_safetensors(&bytes, Path::new("w"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "w: tensor `conv.weight` holds NaN at index 2; weights must be finite numbers"
        );
        let ok = tensor("conv.weight", vec![3], 1.0);
        let list = vec![(ok.name.clone(), ok.shape.clone(), ok.data.as_slice())];
        let meta = WeightsMeta {
            mean: vec![0.5, 0.5],
            std: vec![0.2, 0.0],
            ..Default::default()
        };
        let bytes = to_safetensors(&list, Some(&meta)).unwrap();
        let err = from_safetensors(&bytes, Path::new("w"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("standard deviation of channel 1 is 0"),
            "{err}"
        );
    }

    /// Writes a weights file with no tensors, `classes` in its metadata and
    /// `design` stored.
    fn header_file(dir: &Path, name: &str, classes: usize, design: Option<&Graph>) -> PathBuf {
        let meta = WeightsMeta {
            classes: (0..classes).map(|k| format!("c{k}")).collect(),
            ..Default::default()
        };
        let path = dir.join(name);
        write(&path, &[], &[], &meta, design).expect("writes");
        path
    }

    fn units(graph: &Graph, layer: &str) -> Option<u32> {
        match graph.node(graph.find(layer)?)?.kind {
            crate::graph::LayerKind::Dense { units, .. } => Some(units),
            _ => None,
        }
    }

    #[test]
    fn the_stored_design_decides_the_head_and_refuses_other_designs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let given = crate::graph::blocks::lenet5();
        let head = given
            .nodes()
            .filter(|(_, n)| matches!(n.kind, crate::graph::LayerKind::Dense { .. }))
            .map(|(_, n)| n.name.clone())
            .last()
            .expect("a dense head");
        let mut trained = given.clone();
        assert!(fit_output(&mut trained, 4).expect("fits").is_some());

        // Same design: used as given, nothing said.
        let same = header_file(dir.path(), "same", 10, Some(&given));
        let d = design_for(&given, &same).expect("same design");
        assert!(d.notice.is_none());
        assert_eq!(units(&d.graph, &head), units(&given, &head));

        // Only the head resized: the design as trained, said so.
        let resized = header_file(dir.path(), "resized", 4, Some(&trained));
        assert_eq!(
            trained_design(&resized)
                .expect("reads")
                .map(|g| units(&g, &head)),
            Some(Some(4))
        );
        let d = design_for(&given, &resized).expect("head only");
        assert_eq!(units(&d.graph, &head), Some(4));
        let notice = d.notice.expect("a notice");
        assert!(
            notice.contains("using the design") && notice.contains(&head),
            "{notice}"
        );

        // Anything else: refused, naming the layer.
        let mut other = trained.clone();
        let first_dense = other
            .nodes()
            .find(|(_, n)| matches!(n.kind, crate::graph::LayerKind::Dense { .. }))
            .map(|(id, _)| id)
            .expect("dense");
        let name = other.name_of(first_dense).to_string();
        if let Some(n) = other.node_mut(first_dense) {
            n.kind = crate::graph::LayerKind::Dense {
                units: 7,
                bias: true,
            };
        }
        let differs = header_file(dir.path(), "differs", 4, Some(&other));
        let err = design_for(&given, &differs)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("was trained as a different design") && err.contains(&format!("`{name}`")),
            "{err}"
        );

        // An older file without a design: the head fitted to its classes.
        let old = header_file(dir.path(), "old", 4, None);
        assert!(trained_design(&old).expect("reads").is_none());
        let d = design_for(&given, &old).expect("fitted");
        assert_eq!(units(&d.graph, &head), Some(4));
        assert!(d.notice.expect("a notice").contains("stores no design"));
    }

    #[test]
    fn the_header_alone_is_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let t = tensor("a.weight", vec![64], 0.0);
        let meta = WeightsMeta {
            classes: vec!["x".into()],
            ..Default::default()
        };
        let g = crate::graph::blocks::lenet5();
        write(&path, std::slice::from_ref(&t), &[], &meta, Some(&g)).expect("writes");
        let header = read_header(&path).expect("header");
        assert_eq!(header.meta.as_ref(), Some(&meta));
        assert_eq!(
            header.design(&path).expect("parses").map(|d| d.len()),
            Some(g.len())
        );
        assert_eq!(read(&path).expect("reads").design, header.design);
        // A truncated header is an error naming the file, not a panic.
        let bytes = std::fs::read(&path).expect("read");
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..20]).expect("write");
        let err = read_header(&cut).expect_err("truncated").to_string();
        assert!(err.contains("cut") && err.contains("header"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_safetensors(b"\x05\0\0\0\0\0\0\0{}", Path::new("x")).is_err());
        assert!(from_safetensors(b"", Path::new("x")).is_err());
    }
}
