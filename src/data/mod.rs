//! Datasets, readers and augmentation that feed training.
//!
//! Images are NHWC `f32` (one image = `h·w·c` contiguous values, row-major,
//! channels last), raw intensities in `[0, 1]`; labels are `u32`. Readers:
//! [`image_folder`] (PNG/JPEG folders), [`idx`] (MNIST), [`cifar`] (CIFAR-10
//! binary); [`load`] picks one by looking at the path. [`dataset`] holds the
//! in-memory [`Dataset`], splits and normalisation; [`batch`] the
//! (prefetching) batchers; [`augment`] the seeded training-time augmentations; [`rng`] the
//! deterministic PRNG behind every shuffle, split and augmentation.
//!
//! ```no_run
//! use netloom::data::{self, BatchConfig, LoadOptions, Prefetcher};
//! use std::sync::Arc;
//! let opts = LoadOptions::for_input(64, 64, 3);
//! let splits = data::load(&data::default_dataset_dir(), &opts, &mut |done, total| {
//!     eprint!("\r{done}/{total}");
//! })?;
//! let stats = splits.train.channel_stats();
//! let cfg = BatchConfig::train(32, 7, None, Some(stats));
//! for batch in Prefetcher::spawn(Arc::new(splits.train), cfg, 0..1, 4)? {
//!     let (_x, _y) = (batch.images(), batch.labels()); // train a step
//! }
//! # Ok::<(), data::DataError>(())
//! ```

pub mod augment;
pub mod batch;
pub mod cifar;
pub mod dataset;
pub mod idx;
pub mod image_folder;
pub mod rng;

use std::path::{Path, PathBuf};

pub use augment::{AugmentConfig, Augmenter, ColorPca};
pub use batch::{Batch, BatchConfig, Batcher, Prefetcher};
pub use dataset::{ChannelStats, Dataset, Shape, Skipped, Splits};
pub use image_folder::SkippedSummary;
pub use rng::Rng;

/// Everything that can go wrong reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a{} {format} file (starts with bytes {found:02x?})", path.display(), if format.starts_with(['A', 'E', 'I', 'O', 'U']) { "n" } else { "" })]
    BadMagic {
        path: PathBuf,
        format: &'static str,
        found: Vec<u8>,
    },
    #[error("{}: truncated — {what} needs {expected} bytes, the file has {actual}", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: unsupported {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{} has {n_images} images but {} has {n_labels} labels", images.display(), labels.display())]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    #[error("{}: no class folders (expected <dir>/<class>/<image> or <dir>/<split>/<class>/<image>)", path.display())]
    NoClasses { path: PathBuf },
    #[error("{}: no image could be loaded ({detail})", path.display())]
    NoImages { path: PathBuf, detail: String },
    #[error(
        "{}: not a dataset Netloom reads (expected an image folder, MNIST-style IDX files or CIFAR-10 binary batches)",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{images} images of {shape} take {} as f32; the memory budget leaves {} for the data (use fewer or smaller images, or raise --memory-limit)",
        crate::train::memory::human_bytes(*.bytes),
        crate::train::memory::human_bytes(*.budget)
    )]
    TooLarge {
        images: usize,
        shape: Shape,
        bytes: u64,
        budget: u64,
    },
    #[error("could not start the batch thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The embedded default dataset (hand signs 0–9, 64×64 RGB, Apache-2.0),
/// in the source tree under `assets/hand-digits`.
pub fn default_dataset_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("hand-digits")
}

/// The kinds of dataset [`load`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    ImageFolder,
    Idx,
    Cifar10,
}

/// Which reader `path` needs: a folder with MNIST-named IDX files, a folder
/// with CIFAR-10 `*.bin` batches (or one such file), an IDX file, or else an
/// image folder.
pub fn detect_format(path: &Path) -> Result<Format, DataError> {
    if path.is_dir() {
        Ok(if idx::is_idx_dir(path) {
            Format::Idx
        } else if cifar::is_cifar_dir(path) {
            Format::Cifar10
        } else {
            Format::ImageFolder
        })
    } else if path.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.contains("idx") {
            Ok(Format::Idx)
        } else if name.ends_with(".bin") || name.ends_with(".bin.gz") {
            Ok(Format::Cifar10)
        } else {
            Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    } else {
        Err(DataError::Io {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }
}

/// How to load a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Target height and width (the design's input); `None` keeps the
    /// source's size (for image folders, the first image's).
    pub size: Option<(usize, usize)>,
    /// 1 or 3; `None` keeps the source's (image folders: 3).
    pub channels: Option<usize>,
    /// Fraction of train held out for validation (stratified, by `seed`)
    /// when the source has no validation split.
    pub val_fraction: f32,
    /// Fraction held out for test (stratified, by `seed`) when the source
    /// has no test split.
    pub test_fraction: f32,
    pub seed: u64,
    /// Bytes the decoded images may take (`None`: no limit); checked
    /// before they are decoded or converted.
    pub memory_budget: Option<u64>,
}

impl LoadOptions {
    /// Options for a design whose input is `h × w × c`, other fields default.
    pub fn for_input(h: usize, w: usize, c: usize) -> Self {
        LoadOptions {
            size: Some((h, w)),
            channels: Some(c),
            ..Default::default()
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            size: None,
            channels: None,
            val_fraction: 0.0,
            test_fraction: 0.2,
            seed: 0,
            memory_budget: None,
        }
    }
}

/// Loads `path` in whatever format [`detect_format`] finds, holds out the
/// missing splits and converts every split to the requested size and channels.
/// `progress(done, total)` reports decoded files (image folders) from this thread.
pub fn load(
    path: &Path,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Splits, DataError> {
    let splits = match detect_format(path)? {
        Format::ImageFolder => return image_folder::load_image_folder(path, opts, progress),
        Format::Idx if path.is_dir() => idx::load_idx_dir(path)?,
        Format::Idx => {
            let labels = idx_labels_for(path)?;
            let train = idx::load_idx(path, &labels)?;
            Splits {
                train,
                val: None,
                test: None,
                skipped: Vec::new(),
                notices: Vec::new(),
            }
        }
        Format::Cifar10 if path.is_dir() => cifar::load_cifar10_dir(path)?,
        Format::Cifar10 => {
            let train = cifar::load_cifar10(&[path.to_path_buf()])?;
            Splits {
                train,
                val: None,
                test: None,
                skipped: Vec::new(),
                notices: Vec::new(),
            }
        }
    };
    let n = splits.train.len() + splits.test.as_ref().map_or(0, Dataset::len);
    progress(n, n);
    let (h, w) = opts.size.unwrap_or((splits.train.h, splits.train.w));
    let c = opts.channels.unwrap_or(splits.train.c);
    let mut splits = splits.conform_within(Shape::new(h, w, c), opts.memory_budget)?;
    splits.hold_out(opts)?;
    Ok(splits)
}

/// Refuses a validation or test fraction outside `[0, 1)` (NaN included).
pub fn check_fractions(val_fraction: f32, test_fraction: f32) -> Result<(), DataError> {
    for (what, f) in [
        ("validation fraction", val_fraction),
        ("test fraction", test_fraction),
    ] {
        if !(0.0..1.0).contains(&f) {
            return Err(DataError::Invalid(format!(
                "the {what} must be at least 0 and below 1, got {f}"
            )));
        }
    }
    Ok(())
}

/// The labels file beside an IDX images file (`…images-idx3…` → `…labels-idx1…`).
fn idx_labels_for(images: &Path) -> Result<PathBuf, DataError> {
    let name = images
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let guess = name.replace("images", "labels").replace("idx3", "idx1");
    let p = images.with_file_name(&guess);
    if guess != name && p.is_file() {
        Ok(p)
    } else {
        Err(DataError::Invalid(format!(
            "{}: no labels file {guess} beside this IDX images file",
            images.display()
        )))
    }
}
