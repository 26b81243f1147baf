//! Image folders: `<dir>/<class>/<file>` (one split) or
//! `<dir>/<split>/<class>/<file>` (train / val / test).
//!
//! Every file the `image` crate can decode (PNG and JPEG in this build; the
//! format is sniffed from the contents) is resized to the requested H×W and
//! converted to 1 or 3 channels. Files that cannot be read or decoded are
//! skipped and reported, never fatal. Class folders sort by name (byte
//! order, like PyTorch's `ImageFolder` and Keras) into label order.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::dataset::{Dataset, Shape, Skipped, Splits, check_image_budget, conversion_notice};
use super::{DataError, LoadOptions};

/// Formats skipped files as "3 files skipped: a.jpg (reason), …", listing at most 5.
pub struct SkippedSummary<'a>(pub &'a [Skipped]);

impl fmt::Display for SkippedSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} file{} skipped", if n == 1 { "" } else { "s" })?;
        for (i, s) in self.0.iter().take(5).enumerate() {
            write!(
                f,
                "{}{} ({})",
                if i == 0 { ": " } else { ", " },
                s.path.display(),
                s.reason
            )?;
        }
        if n > 5 {
            write!(f, ", … and {} more", n - 5)?;
        }
        Ok(())
    }
}

/// Names of split folders, in the order they are looked for.
const TRAIN_NAMES: &[&str] = &["train", "training"];
const VAL_NAMES: &[&str] = &["val", "valid", "validation"];
const TEST_NAMES: &[&str] = &["test", "testing"];

fn io_err(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Sorted names of the sub-folders of `dir` (hidden ones excluded).
pub fn list_subdirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str()
            && !name.starts_with('.')
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The split folder of `dir` whose name (case-insensitively) is one of `names`.
fn find_split(dir: &Path, subdirs: &[String], names: &[&str]) -> Option<PathBuf> {
    subdirs
        .iter()
        .find(|s| names.iter().any(|n| s.eq_ignore_ascii_case(n)))
        .map(|s| dir.join(s))
}

/// `true` when `dir` has a `train`/`training` sub-folder (the split layout).
pub fn has_split_layout(dir: &Path) -> bool {
    list_subdirs(dir)
        .map(|s| find_split(dir, &s, TRAIN_NAMES).is_some())
        .unwrap_or(false)
}

/// The folders a walk has entered, by canonical path: each is read once,
/// so a symlink back up the tree (`..`, `.`) cannot repeat or loop.
struct Walk {
    entered: HashSet<PathBuf>,
    /// Every class folder of every split: reached through a link from
    /// another class, its images would be read twice under two labels.
    class_dirs: HashSet<PathBuf>,
    /// Folders not followed, and why (reported like undecodable files).
    skipped: Vec<Skipped>,
}

impl Walk {
    /// A walk over the class folders `parts/<class>` of every split in `parts`.
    fn new(parts: &[&Path]) -> Result<Walk, DataError> {
        let mut class_dirs = HashSet::new();
        for part in parts {
            for name in list_subdirs(part)? {
                if let Ok(c) = fs::canonicalize(part.join(name)) {
                    class_dirs.insert(c);
                }
            }
        }
        Ok(Walk {
            entered: HashSet::new(),
            class_dirs,
            skipped: Vec::new(),
        })
    }

    /// Enters a class folder (once).
    fn enter_class(&mut self, dir: &Path, root: &Path) -> bool {
        self.enter_unless(dir, root, false)
    }

    /// Whether sub-folder `dir` may be entered; a folder already read, a
    /// class folder, or one holding the dataset itself is recorded as skipped.
    fn enter(&mut self, dir: &Path, root: &Path) -> bool {
        self.enter_unless(dir, root, true)
    }

    fn enter_unless(&mut self, dir: &Path, root: &Path, refuse_classes: bool) -> bool {
        let Ok(canonical) = fs::canonicalize(dir) else {
            self.skipped.push(Skipped {
                path: relative(dir, root),
                reason: "folder cannot be resolved".into(),
            });
            return false;
        };
        let contains_root = fs::canonicalize(root).is_ok_and(|r| r.starts_with(&canonical));
        let another_class = refuse_classes && self.class_dirs.contains(&canonical);
        if contains_root || another_class || !self.entered.insert(canonical.clone()) {
            self.skipped.push(Skipped {
                path: relative(dir, root),
                reason: format!(
                    "a link to {}, which is read already (a folder loop); not followed",
                    canonical.display()
                ),
            });
            return false;
        }
        true
    }

    /// Every non-hidden file below `dir`, recursively, in sorted order.
    fn files_below(
        &mut self,
        dir: &Path,
        root: &Path,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), DataError> {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if self.enter(&p, root) {
                    self.files_below(&p, root, out)?;
                }
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
}

/// The files of one split folder, with labels by position in `classes`;
/// class folders missing from `classes` are an error. Class folders with
/// no file are named in `empty`.
fn list_split(
    dir: &Path,
    classes: &[String],
    walk: &mut Walk,
    root: &Path,
    empty: &mut Vec<String>,
) -> Result<Vec<(PathBuf, u32)>, DataError> {
    let mut files = Vec::new();
    for name in list_subdirs(dir)? {
        let label = classes.iter().position(|c| *c == name).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: class folder '{name}' is not among the classes {classes:?}",
                dir.display()
            ))
        })?;
        let class_dir = dir.join(&name);
        let mut in_class = Vec::new();
        if walk.enter_class(&class_dir, root) {
            walk.files_below(&class_dir, root, &mut in_class)?;
        }
        if in_class.is_empty() {
            empty.push(relative(&class_dir, root).display().to_string());
        }
        files.extend(in_class.into_iter().map(|p| (p, label as u32)));
    }
    Ok(files)
}

/// A classifier needs two classes: one class folder is refused.
fn check_class_count(dir: &Path, classes: &[String]) -> Result<(), DataError> {
    if let [only] = classes {
        return Err(DataError::Invalid(format!(
            "{}: only one class folder (`{only}`); a classifier needs at least 2 classes",
            dir.display()
        )));
    }
    Ok(())
}

/// Notices about the folders: empty class folders, classes only in some splits.
fn folder_notices(empty: &[String], missing_in_train: &[String]) -> Vec<String> {
    let mut notices = Vec::new();
    if !empty.is_empty() {
        notices.push(format!(
            "{} class folder{} without images: {}",
            empty.len(),
            if empty.len() == 1 { "" } else { "s" },
            empty.join(", ")
        ));
    }
    if !missing_in_train.is_empty() {
        notices.push(format!(
            "class{} {} appear{} only outside the training split, so the model cannot learn {}",
            if missing_in_train.len() == 1 {
                ""
            } else {
                "es"
            },
            missing_in_train.join(", "),
            if missing_in_train.len() == 1 { "s" } else { "" },
            if missing_in_train.len() == 1 {
                "it"
            } else {
                "them"
            },
        ));
    }
    notices
}

/// The size and channel count of the first decodable image among `files`.
fn probe_shape(files: &[(PathBuf, u32)]) -> Option<Shape> {
    files.iter().find_map(|(p, _)| {
        let img = image::ImageReader::open(p)
            .ok()?
            .with_guessed_format()
            .ok()?
            .decode()
            .ok()?;
        let c = if img.color().has_color() { 3 } else { 1 };
        Some(Shape::new(img.height() as usize, img.width() as usize, c))
    })
}

/// Decodes one file into HWC `f32` in `[0, 1]` of the given shape.
pub fn load_image(path: &Path, shape: Shape) -> Result<Vec<f32>, String> {
    let reader = image::ImageReader::open(path).map_err(|e| e.to_string())?;
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    let img = if (img.width() as usize, img.height() as usize) != (shape.w, shape.h) {
        img.resize_exact(shape.w as u32, shape.h as u32, FilterType::Triangle)
    } else {
        img
    };
    let bytes = match shape.c {
        1 => img.to_luma8().into_raw(),
        3 => img.to_rgb8().into_raw(),
        c => return Err(format!("{c} channels requested; only 1 or 3 are supported")),
    };
    Ok(bytes.into_iter().map(|b| b as f32 / 255.0).collect())
}

/// Width and height of the first decodable image among `files`.
fn probe_size(files: &[(PathBuf, u32)]) -> Option<(usize, usize)> {
    files.iter().find_map(|(p, _)| {
        let r = image::ImageReader::open(p)
            .ok()?
            .with_guessed_format()
            .ok()?;
        let (w, h) = r.into_dimensions().ok()?;
        Some((h as usize, w as usize))
    })
}

fn relative(path: &Path, root: &Path) -> PathBuf {
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Decodes `files` in parallel (rayon) into a dataset, calling
/// `progress(done, total)` on the calling thread as chunks finish.
fn decode_files(
    files: &[(PathBuf, u32)],
    shape: Shape,
    class_names: &[String],
    root: &Path,
    progress: &mut dyn FnMut(usize, usize),
    done_before: usize,
    total: usize,
) -> (Dataset, Vec<Skipped>) {
    let chunk = (rayon::current_num_threads() * 16).max(64);
    let mut images = Vec::with_capacity(files.len() * shape.len());
    let mut labels = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    let mut done = done_before;
    for part in files.chunks(chunk) {
        let decoded: Vec<Result<Vec<f32>, String>> =
            part.par_iter().map(|(p, _)| load_image(p, shape)).collect();
        for ((path, label), result) in part.iter().zip(decoded) {
            match result {
                Ok(px) => {
                    images.extend_from_slice(&px);
                    labels.push(*label);
                }
                Err(reason) => skipped.push(Skipped {
                    path: relative(path, root),
                    reason,
                }),
            }
        }
        done += part.len();
        progress(done, total);
    }
    let ds = Dataset {
        images,
        labels,
        h: shape.h,
        w: shape.w,
        c: shape.c,
        class_names: class_names.to_vec(),
    };
    (ds, skipped)
}

/// Loads one folder of class sub-folders (`<dir>/<class>/*`) as a single
/// dataset. `progress(done, total)` is called from this thread.
pub fn load_class_folder(
    dir: &Path,
    size: Option<(usize, usize)>,
    channels: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Dataset, Vec<Skipped>), DataError> {
    let (ds, skipped, _) = load_class_folder_within(dir, size, channels, None, progress)?;
    Ok((ds, skipped))
}

/// [`load_class_folder`] within a memory budget, with the notices
/// (conversion, empty folders) the user should hear.
fn load_class_folder_within(
    dir: &Path,
    size: Option<(usize, usize)>,
    channels: usize,
    budget: Option<u64>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Dataset, Vec<Skipped>, Vec<String>), DataError> {
    let classes = list_subdirs(dir)?;
    if classes.is_empty() {
        return Err(DataError::NoClasses {
            path: dir.to_path_buf(),
        });
    }
    check_class_count(dir, &classes)?;
    let mut walk = Walk::new(&[dir])?;
    let mut empty = Vec::new();
    let files = list_split(dir, &classes, &mut walk, dir, &mut empty)?;
    let shape = target_shape(dir, &files, size, channels)?;
    check_image_budget(files.len(), shape, budget)?;
    let mut notices = folder_notices(&empty, &[]);
    notices.extend(probe_shape(&files).and_then(|from| conversion_notice(from, shape)));
    let (ds, mut skipped) = decode_files(&files, shape, &classes, dir, progress, 0, files.len());
    skipped.extend(walk.skipped);
    if ds.is_empty() {
        return Err(no_images(dir, &skipped));
    }
    Ok((ds, skipped, notices))
}

fn no_images(dir: &Path, skipped: &[Skipped]) -> DataError {
    DataError::NoImages {
        path: dir.to_path_buf(),
        detail: SkippedSummary(skipped).to_string(),
    }
}

fn target_shape(
    dir: &Path,
    files: &[(PathBuf, u32)],
    size: Option<(usize, usize)>,
    channels: usize,
) -> Result<Shape, DataError> {
    if channels != 1 && channels != 3 {
        return Err(DataError::Invalid(format!(
            "{channels} channels requested; only 1 or 3 are supported"
        )));
    }
    let (h, w) = match size {
        Some(hw) => hw,
        None => probe_size(files).ok_or_else(|| no_images(dir, &[]))?,
    };
    if h == 0 || w == 0 {
        return Err(DataError::Invalid(format!(
            "image size {h}×{w} has a zero side"
        )));
    }
    Ok(Shape::new(h, w, channels))
}

/// Loads an image folder in either layout, with the splits it defines.
///
/// - `<dir>/<split>/<class>/*`: `train`/`training` (required), `val`/`valid`/
///   `validation` and `test`/`testing` (optional). Labels come from the
///   sorted union of the class folders of all splits.
/// - `<dir>/<class>/*`: a stratified `test_fraction` is held out by `seed`.
///
/// Without a validation folder, `val_fraction` of train is held out (stratified).
/// See [`Splits::hold_out`].
/// `progress(done, total)` counts files over all splits, from this thread.
pub fn load_image_folder(
    dir: &Path,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Splits, DataError> {
    let subdirs = list_subdirs(dir)?;
    let mut splits = match find_split(dir, &subdirs, TRAIN_NAMES) {
        Some(train_dir) => {
            let val_dir = find_split(dir, &subdirs, VAL_NAMES);
            let test_dir = find_split(dir, &subdirs, TEST_NAMES);
            let parts: Vec<&PathBuf> = [Some(&train_dir), val_dir.as_ref(), test_dir.as_ref()]
                .into_iter()
                .flatten()
                .collect();
            let mut classes = Vec::new();
            for p in &parts {
                classes.extend(list_subdirs(p)?);
            }
            classes.sort();
            classes.dedup();
            if classes.is_empty() {
                return Err(DataError::NoClasses { path: train_dir });
            }
            check_class_count(dir, &classes)?;
            let part_paths: Vec<&Path> = parts.iter().map(|p| p.as_path()).collect();
            let mut walk = Walk::new(&part_paths)?;
            let mut empty = Vec::new();
            let lists: Vec<Vec<(PathBuf, u32)>> = parts
                .iter()
                .map(|p| list_split(p, &classes, &mut walk, dir, &mut empty))
                .collect::<Result<_, _>>()?;
            let in_train: HashSet<u32> = lists[0].iter().map(|(_, l)| *l).collect();
            let missing_in_train: Vec<String> = classes
                .iter()
                .enumerate()
                .filter(|(k, _)| !in_train.contains(&(*k as u32)))
                .map(|(_, c)| format!("`{c}`"))
                .collect();
            let total: usize = lists.iter().map(Vec::len).sum();
            let shape = target_shape(dir, &lists[0], opts.size, opts.channels.unwrap_or(3))?;
            check_image_budget(total, shape, opts.memory_budget)?;
            let mut notices = folder_notices(&empty, &missing_in_train);
            notices.extend(probe_shape(&lists[0]).and_then(|from| conversion_notice(from, shape)));
            let mut skipped = std::mem::take(&mut walk.skipped);
            let mut done = 0;
            let mut sets = Vec::new();
            for files in &lists {
                let (ds, sk) = decode_files(files, shape, &classes, dir, progress, done, total);
                done += files.len();
                skipped.extend(sk);
                sets.push(ds);
            }
            let mut sets = sets.into_iter();
            let train = sets
                .next()
                .unwrap_or_else(|| Dataset::empty(shape, classes.clone()));
            if train.is_empty() {
                return Err(no_images(&train_dir, &skipped));
            }
            let val = if val_dir.is_some() { sets.next() } else { None };
            let test = if test_dir.is_some() {
                sets.next()
            } else {
                None
            };
            Splits {
                train,
                val,
                test,
                skipped,
                notices,
            }
        }
        None => {
            let (train, skipped, notices) = load_class_folder_within(
                dir,
                opts.size,
                opts.channels.unwrap_or(3),
                opts.memory_budget,
                progress,
            )?;
            Splits {
                train,
                val: None,
                test: None,
                skipped,
                notices,
            }
        }
    };
    splits.hold_out(opts)?;
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_summary_reads_well() {
        let s = |n: &str| Skipped {
            path: PathBuf::from(n),
            reason: "bad".into(),
        };
        assert_eq!(
            SkippedSummary(&[s("a.jpg")]).to_string(),
            "1 file skipped: a.jpg (bad)"
        );
        let many: Vec<Skipped> = (0..7).map(|i| s(&format!("{i}.jpg"))).collect();
        let text = SkippedSummary(&many).to_string();
        assert!(
            text.starts_with("7 files skipped: 0.jpg (bad), 1.jpg (bad)"),
            "{text}"
        );
        assert!(text.ends_with(", … and 2 more"), "{text}");
    }
}
