//! Optional checks against Python packages (PyTorch, onnx, onnxruntime):
//! finding a Python that has them, or the reason a test is skipped.
//! Included by path (`#[path = "common/python.rs"] mod python;`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The Pythons tried, in order: `NETLOOM_TORCH_PYTHON`, the peer-benchmark
/// venv (`~/.cache/netloom-peers/venv-torch/bin/python`), then `python3`.
fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NETLOOM_TORCH_PYTHON").filter(|p| !p.is_empty()) {
        out.push(p.into());
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(home).join(".cache/netloom-peers/venv-torch/bin/python"));
    }
    out.push("python3".into());
    out
}

/// The first Python of [`candidates`] that imports every one of `modules`,
/// or why none does (for the test's "skipped: …" line).
pub fn with_modules(modules: &[&str]) -> Result<PathBuf, String> {
    let import = format!("import {}", modules.join(", "));
    let mut tried = Vec::new();
    for python in candidates() {
        match Command::new(&python).args(["-c", &import]).output() {
            Ok(o) if o.status.success() => return Ok(python),
            Ok(o) => tried.push(format!(
                "{} cannot `{import}` ({})",
                python.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{}: {e}", python.display())),
        }
    }
    Err(format!(
        "no Python with {} (set NETLOOM_TORCH_PYTHON): {}",
        modules.join(", "),
        tried.join("; ")
    ))
}

/// [`with_modules`], printing "skipped: …" when there is none.
pub fn or_skip(modules: &[&str]) -> Option<PathBuf> {
    match with_modules(modules) {
        Ok(p) => Some(p),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// Runs `python -c script args…`.
pub fn run(python: &PathBuf, script: &str, args: &[&str]) -> Output {
    Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python")
}
