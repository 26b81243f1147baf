//! File › Export from the designer: ONNX, PyTorch code and a PyTorch
//! project, written by the same library functions `netloom export` calls,
//! with the weights of the design's newest run when it has them.

use crate::graph::{Graph, file};
use crate::interop::{InteropError, Tensors};
use crate::train::weights::WeightsError;
use std::path::{Path, PathBuf};

/// What File › Export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Onnx,
    PytorchCode,
    PytorchProject,
}

/// Why an export wrote nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("could not read the weights {}: {source}", path.display())]
    ReadWeights {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The design (or its weights) cannot be written in the asked format.
    #[error(transparent)]
    Interop(#[from] InteropError),
    #[error("could not write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A weights file's bytes, its tensors and its metadata.
type Loaded = (Vec<u8>, Tensors, Option<crate::train::weights::WeightsMeta>);

/// Reads a weights file into the tensors the exporters take (as `netloom export --weights`).
fn tensors_of(weights: &Path) -> Result<Loaded, ExportError> {
    let bytes = std::fs::read(weights).map_err(|source| ExportError::ReadWeights {
        path: weights.to_path_buf(),
        source,
    })?;
    let file = crate::train::weights::from_safetensors(&bytes, weights)?;
    let tensors = file
        .tensors
        .into_iter()
        .map(|(name, shape, data)| (name, (shape, data)))
        .collect();
    Ok((bytes, tensors, file.meta))
}

/// Writes `graph` as `kind` to `path` (a folder for a project), with
/// `weights` (a safetensors file of this design) when given. Returns what
/// was written, for the notice.
pub fn export(
    kind: ExportKind,
    graph: &Graph,
    weights: Option<&Path>,
    path: &Path,
) -> Result<String, ExportError> {
    let loaded = weights.map(tensors_of).transpose()?;
    let with = match weights {
        Some(w) => format!(" with the weights of {}", w.display()),
        None => " with freshly initialised weights".into(),
    };
    match kind {
        ExportKind::Onnx => {
            crate::interop::onnx::export(graph, loaded.as_ref().map(|(_, t, _)| t), path)?;
            Ok(format!("Wrote {} (ONNX opset 13){with}", path.display()))
        }
        ExportKind::PytorchCode => {
            let source = crate::interop::pytorch::module_source(graph)?;
            file::write_atomically(path, source.as_bytes()).map_err(|source| {
                ExportError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            Ok(format!("Wrote the PyTorch module to {}", path.display()))
        }
        ExportKind::PytorchProject => {
            use crate::interop::pytorch_project::{InitialWeights, write_project};
            if let Some((_, tensors, _)) = &loaded {
                // The weights must fit the design before the project carries them.
                crate::interop::pytorch::state_dict(graph, tensors)?;
            }
            let initial = loaded.as_ref().map(|(bytes, _, meta)| InitialWeights {
                bytes,
                meta: meta.as_ref(),
            });
            let written = write_project(graph, initial.as_ref(), path)?;
            Ok(format!(
                "Wrote {} files into {}{with}",
                written.len(),
                path.display()
            ))
        }
    }
}
