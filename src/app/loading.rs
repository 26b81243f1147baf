//! Opening designs, ONNX models and weights files off the UI thread: the
//! file is read and parsed on a named thread; a small file answers within
//! [`WAIT_IN_FRAME`] and is applied in the same frame, a large one shows a
//! spinner with Cancel while the window stays responsive. Cancel stops
//! waiting: the thread's answer, when it comes, is dropped.

use crate::graph::file;
use crate::interop::InteropError;
use crate::interop::onnx::Imported;
use crate::train::weights::WeightsError;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// How long a frame waits for the reading thread before showing the spinner.
pub const WAIT_IN_FRAME: Duration = Duration::from_millis(200);

/// What to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Design,
    Onnx,
    Weights,
}

impl Job {
    fn verb(self) -> &'static str {
        match self {
            Job::Design => "Opening",
            Job::Onnx => "Importing",
            Job::Weights => "Reading weights from",
        }
    }

    fn run(self, path: &Path) -> Outcome {
        match self {
            Job::Design => Outcome::Design(file::load_with_repairs(path)),
            Job::Onnx => Outcome::Onnx(crate::interop::onnx::import(path)),
            Job::Weights => {
                Outcome::Weights(crate::train::weights::read(path).map(|f| f.tensors.len()))
            }
        }
    }
}

/// What the reading thread found.
pub enum Outcome {
    /// The design with what the reader repaired to open it.
    Design(Result<file::Loaded, file::LoadError>),
    Onnx(Result<Imported, InteropError>),
    /// The number of tensors of a readable weights file.
    Weights(Result<usize, WeightsError>),
}

/// Why a read did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum LoadingError {
    #[error("Could not start a thread to read {}: {source}", path.display())]
    Thread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Reading {} ended without an answer.", path.display())]
    Ended { path: PathBuf },
}

/// A read in progress.
pub struct Loading {
    pub job: Job,
    pub path: PathBuf,
    rx: Receiver<Outcome>,
}

/// What became of a read started or polled.
pub enum Progress {
    Done(PathBuf, Outcome),
    Pending(Loading),
}

/// Starts reading `path` on a thread and waits up to [`WAIT_IN_FRAME`] for it.
pub fn start(job: Job, path: PathBuf) -> Result<Progress, LoadingError> {
    let (tx, rx) = mpsc::channel();
    let on_thread = path.clone();
    std::thread::Builder::new()
        .name("netloom-loader".into())
        .spawn(move || {
            let _ = tx.send(job.run(&on_thread));
        })
        .map_err(|source| LoadingError::Thread {
            path: path.clone(),
            source,
        })?;
    match rx.recv_timeout(WAIT_IN_FRAME) {
        Ok(outcome) => Ok(Progress::Done(path, outcome)),
        Err(RecvTimeoutError::Timeout) => Ok(Progress::Pending(Loading { job, path, rx })),
        Err(RecvTimeoutError::Disconnected) => Err(ended_early(&path)),
    }
}

fn ended_early(path: &Path) -> LoadingError {
    LoadingError::Ended {
        path: path.to_path_buf(),
    }
}

impl Loading {
    /// The answer, if it has come.
    pub fn poll(self) -> Result<Progress, LoadingError> {
        match self.rx.try_recv() {
            Ok(outcome) => Ok(Progress::Done(self.path, outcome)),
            Err(TryRecvError::Empty) => Ok(Progress::Pending(self)),
            Err(TryRecvError::Disconnected) => Err(ended_early(&self.path)),
        }
    }

    /// The spinner with Cancel; `true` when the user cancelled.
    pub fn ui(&self, ctx: &egui::Context) -> bool {
        let what = format!("{} {}…", self.job.verb(), self.path.display());
        let r = egui::Modal::new(egui::Id::unique("loading_modal")).show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.add(egui::Spinner::new());
                ui.label(what);
            });
            ui.add_space(6.0);
            ui.button("Cancel").clicked()
        });
        r.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_design_is_read_on_a_thread_and_a_missing_file_says_why() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lenet5.json");
        let mut progress = start(Job::Design, path.clone()).expect("a reading thread");
        let outcome = loop {
            match progress {
                Progress::Done(p, outcome) => {
                    assert_eq!(p, path);
                    break outcome;
                }
                Progress::Pending(l) => {
                    std::thread::sleep(Duration::from_millis(10));
                    progress = l.poll().expect("an answer");
                }
            }
        };
        match outcome {
            Outcome::Design(Ok(loaded)) => {
                assert_eq!(loaded.graph.name, "lenet5");
                assert!(loaded.ungrouped.is_empty());
            }
            _ => panic!("lenet5 did not load"),
        }
        let missing = Path::new("/nonexistent/netloom/x.safetensors").to_path_buf();
        let mut progress = start(Job::Weights, missing).expect("a reading thread");
        loop {
            match progress {
                Progress::Done(_, Outcome::Weights(Err(why))) => {
                    assert!(
                        matches!(why, WeightsError::Io { .. }),
                        "a missing file is an I/O error: {why}"
                    );
                    assert!(why.to_string().contains("x.safetensors"), "{why}");
                    break;
                }
                Progress::Done(..) => panic!("a missing file read"),
                Progress::Pending(l) => {
                    std::thread::sleep(Duration::from_millis(10));
                    progress = l.poll().expect("an answer");
                }
            }
        }
    }
}
