//! File › Export from the designer: ONNX, PyTorch code and a PyTorch
//! project, written by the same library functions `netloom export` calls,
//! with the weights of the design's newest run when it has them.

use crate::graph::{Graph, file};
use crate::interop::Tensors;
use std::path::Path;

/// What File › Export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Onnx,
    PytorchCode,
    PytorchProject,
}

/// Reads a weights file into the tensors the exporters take (as `netloom export --weights`).
fn tensors_of(
    weights: &Path,
) -> Result<(Vec<u8>, Tensors, Option<crate::train::weights::WeightsMeta>), String> {
    let bytes = std::fs::read(weights).map_err(|e| format!("{}: {e}", weights.display()))?;
    let file =
        crate::train::weights::from_safetensors(&bytes, weights).map_err(|e| e.to_string())?;
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
) -> Result<String, String> {
    let loaded = weights.map(tensors_of).transpose()?;
    let with = match weights {
        Some(w) => format!(" with the weights of {}", w.display()),
        None => " with freshly initialised weights".into(),
    };
    match kind {
        ExportKind::Onnx => {
            crate::interop::onnx::export(graph, loaded.as_ref().map(|(_, t, _)| t), path)
                .map_err(|e| e.to_string())?;
            Ok(format!("Wrote {} (ONNX opset 13){with}", path.display()))
        }
        ExportKind::PytorchCode => {
            let source =
                crate::interop::pytorch::module_source(graph).map_err(|e| e.to_string())?;
            file::write_atomically(path, source.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(format!("Wrote the PyTorch module to {}", path.display()))
        }
        ExportKind::PytorchProject => {
            use crate::interop::pytorch_project::{InitialWeights, write_project};
            if let Some((_, tensors, _)) = &loaded {
                // The weights must fit the design before the project carries them.
                crate::interop::pytorch::state_dict(graph, tensors).map_err(|e| e.to_string())?;
            }
            let initial = loaded.as_ref().map(|(bytes, _, meta)| InitialWeights {
                bytes,
                meta: meta.as_ref(),
            });
            let written =
                write_project(graph, initial.as_ref(), path).map_err(|e| e.to_string())?;
            Ok(format!(
                "Wrote {} files into {}{with}",
                written.len(),
                path.display()
            ))
        }
    }
}
