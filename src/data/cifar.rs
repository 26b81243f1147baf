//! CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue; each 32×32 row-major), 10 000 per file.

use std::path::{Path, PathBuf};

use super::DataError;
use super::dataset::{Dataset, Shape, Splits};
use super::idx::{MAX_DECOMPRESSED, read_maybe_gz};

pub const SIDE: usize = 32;
pub const PIXELS: usize = SIDE * SIDE;
/// Bytes per record.
pub const RECORD: usize = 1 + 3 * PIXELS;
/// The standard class names, in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Parses one batch (raw bytes) into HWC images in `[0, 1]` and labels.
pub fn parse_batch(bytes: &[u8], path: &Path) -> Result<(Vec<f32>, Vec<u32>), DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        let records = bytes.len() / RECORD + 1;
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: format!("{records} CIFAR-10 record(s) of {RECORD} bytes"),
            expected: (records * RECORD) as u64,
            actual: bytes.len() as u64,
        });
    }
    let n = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(n * 3 * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (r, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let label = rec[0];
        if label as usize >= CLASS_NAMES.len() {
            return Err(DataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "record {r} has label {label}; CIFAR-10 labels are 0–9 (is this a CIFAR-10 binary batch?)"
                ),
            });
        }
        labels.push(label as u32);
        let px = &rec[1..];
        for i in 0..PIXELS {
            for k in 0..3 {
                images.push(px[k * PIXELS + i] as f32 / 255.0);
            }
        }
    }
    Ok((images, labels))
}

/// Class names from `batches.meta.txt` beside the batches when it lists ten,
/// else [`CLASS_NAMES`].
fn class_names(dir: &Path) -> Vec<String> {
    let from_meta = std::fs::read_to_string(dir.join("batches.meta.txt"))
        .ok()
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    match from_meta {
        Some(names) if names.len() == CLASS_NAMES.len() => names,
        _ => CLASS_NAMES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Loads and concatenates CIFAR-10 batch files (raw or gzipped).
pub fn load_cifar10(paths: &[PathBuf]) -> Result<Dataset, DataError> {
    let names = class_names(
        paths
            .first()
            .and_then(|p| p.parent())
            .unwrap_or(Path::new(".")),
    );
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for p in paths {
        let (i, l) = parse_batch(&read_maybe_gz(p, MAX_DECOMPRESSED)?, p)?;
        images.extend(i);
        labels.extend(l);
    }
    Dataset::new(images, labels, Shape::new(SIDE, SIDE, 3), names)
}

/// The folder holding the batches: `dir` itself or its `cifar-10-batches-bin`.
fn batches_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join("data_batch_1.bin").is_file() || d.join("test_batch.bin").is_file())
}

/// `true` when `dir` (or its `cifar-10-batches-bin`) holds CIFAR-10 batches.
pub fn is_cifar_dir(dir: &Path) -> bool {
    batches_dir(dir).is_some()
}

/// Loads `data_batch_1.bin` … `data_batch_5.bin` (those present) as train
/// and `test_batch.bin` as test.
pub fn load_cifar10_dir(dir: &Path) -> Result<Splits, DataError> {
    let d = batches_dir(dir).ok_or_else(|| DataError::UnknownFormat {
        path: dir.to_path_buf(),
    })?;
    let train_files: Vec<PathBuf> = (1..=5)
        .map(|i| d.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect();
    if train_files.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no data_batch_N.bin training batches",
            d.display()
        )));
    }
    let train = load_cifar10(&train_files)?;
    let test_file = d.join("test_batch.bin");
    let test = if test_file.is_file() {
        Some(load_cifar10(&[test_file])?)
    } else {
        None
    };
    Ok(Splits {
        train,
        val: None,
        test,
        skipped: Vec::new(),
        notices: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_becomes_hwc() {
        let mut rec = vec![7u8];
        for k in 0..3u8 {
            rec.extend((0..PIXELS).map(|i| (i % 200) as u8 + k));
        }
        let (img, lab) = parse_batch(&rec, Path::new("b.bin")).unwrap();
        assert_eq!(lab, vec![7]);
        assert_eq!(img.len(), 3 * PIXELS);
        // pixel 5, channel 2
        assert_eq!(img[5 * 3 + 2], (5 + 2) as f32 / 255.0);
        assert!(matches!(
            parse_batch(&rec[..100], Path::new("b")),
            Err(DataError::Truncated { .. })
        ));
        rec[0] = 10;
        assert!(matches!(
            parse_batch(&rec, Path::new("b")),
            Err(DataError::Corrupt { .. })
        ));
    }
}
