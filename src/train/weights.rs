//! Weights files: [safetensors](https://huggingface.co/docs/safetensors),
//! one f32 tensor per parameter keyed `{layer}.{role}` (`fc.weight`,
//! `stem_bn.running_var`, …) in Netloom layouts (conv HWIO, dense
//! `[in, out]`). Training facts the evaluator needs (class names, input
//! normalisation, split seed) travel in the header's metadata under
//! `netloom`. Checkpoints add the optimizer state as `optimizer.{name}.m|v`.

use super::plan::ParamTensor;
use crate::data::ChannelStats;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Metadata key holding [`WeightsMeta`] as JSON.
pub const META_KEY: &str = "netloom";
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
) -> Result<Vec<u8>, String> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| to_bytes(d)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let info = match meta {
        Some(m) => {
            let json = serde_json::to_string(m).map_err(|e| e.to_string())?;
            Some(HashMap::from([(META_KEY.to_string(), json)]))
        }
        None => None,
    };
    safetensors::serialize(views, info).map_err(|e| e.to_string())
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
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone(), p.data.as_slice()))
        .collect();
    tensors.extend(extra.iter().map(|(n, s, d)| (n.clone(), s.clone(), *d)));
    let bytes = to_safetensors(&tensors, Some(meta)).map_err(|message| WeightsError::Format {
        path: path.to_path_buf(),
        message,
    })?;
    crate::graph::file::write_atomically(path, &bytes).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses safetensors bytes (F32 tensors only).
pub fn from_safetensors(bytes: &[u8], path: &Path) -> Result<WeightsFile, WeightsError> {
    let format = |message: String| WeightsError::Format {
        path: path.to_path_buf(),
        message,
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format(e.to_string()))?;
    let meta = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        Some(json) => Some(
            serde_json::from_str::<WeightsMeta>(json)
                .map_err(|e| format(format!("bad `{META_KEY}` metadata: {e}")))?,
        ),
        None => None,
    };
    if let Some(message) = meta.as_ref().and_then(WeightsMeta::stats_problem) {
        return Err(WeightsError::BadMeta {
            path: path.to_path_buf(),
            message,
        });
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
    let mut tensors = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).map_err(|e| format(e.to_string()))?;
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
    Ok(WeightsFile { tensors, meta })
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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_safetensors(b"\x05\0\0\0\0\0\0\0{}", Path::new("x")).is_err());
        assert!(from_safetensors(b"", Path::new("x")).is_err());
    }
}
