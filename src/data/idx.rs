//! IDX files (MNIST, Fashion-MNIST, EMNIST…), raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type byte (`0x08` = unsigned byte, the only one
//! image sets use), the number of dimensions `d`, then `d` big-endian `u32`
//! sizes, then the values row-major. Images are `n × rows × cols`, labels `n`.
//! Compression is detected from the contents (gzip magic), not the name.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;
use super::dataset::{Dataset, Shape, Splits};

/// A decoded IDX array of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The most bytes one IDX or CIFAR file may decompress to (16 GiB): a
/// gzip bomb stops here instead of filling memory.
pub const MAX_DECOMPRESSED: u64 = 1 << 34;

/// Reads a file, decompressing it when it starts with the gzip magic bytes;
/// more than `limit` decompressed bytes is an error.
pub(crate) fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
        read_bounded(&mut decoder, Vec::new(), limit, path)
    } else {
        Ok(raw)
    }
}

/// Appends what `reader` yields to `out`, refusing more than `limit` bytes in all.
fn read_bounded(
    reader: &mut impl Read,
    mut out: Vec<u8>,
    limit: u64,
    path: &Path,
) -> Result<Vec<u8>, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let room = limit.saturating_sub(out.len() as u64);
    reader
        .take(room.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("gzip: {e}")))?;
    if out.len() as u64 > limit {
        return Err(corrupt(format!(
            "decompresses to more than the {limit} bytes expected"
        )));
    }
    Ok(out)
}

/// Reads an IDX file, decompressing a gzipped one only as far as its header
/// says (and never past [`MAX_DECOMPRESSED`]), reserving that size first so
/// an impossible size is an error, not an abort.
fn read_idx_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
    let mut head = read_bounded(&mut (&mut decoder).take(4), Vec::new(), 4, path)?;
    let nd = head.get(3).copied().unwrap_or(0) as u64;
    head = read_bounded(&mut (&mut decoder).take(4 * nd), head, 4 + 4 * nd, path)?;
    let expected = head
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
        .try_fold(1u64, |acc, d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(head.len() as u64))
        .filter(|&e| e <= MAX_DECOMPRESSED)
        .ok_or_else(|| DataError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "the IDX header claims more than the {MAX_DECOMPRESSED} bytes Netloom reads from one file"
            ),
        })?;
    head.try_reserve_exact(expected.saturating_sub(head.len() as u64) as usize)
        .map_err(|e| DataError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("cannot hold the {expected} bytes its header claims: {e}"),
        })?;
    read_bounded(&mut decoder, head, expected, path)
}

/// Parses IDX bytes (already decompressed). `path` is for messages.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    let truncated = |what: &str, expected: u64| DataError::Truncated {
        path: path.to_path_buf(),
        what: what.to_owned(),
        expected,
        actual: bytes.len() as u64,
    };
    if bytes.len() < 4 {
        return Err(truncated("the IDX header", 4));
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            format: "IDX",
            found: magic.to_vec(),
        });
    }
    if magic[2] != 0x08 {
        return Err(DataError::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "IDX element type 0x{:02x} (only unsigned bytes, 0x08, are read)",
                magic[2]
            ),
        });
    }
    let nd = magic[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(truncated("the IDX header", header as u64));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let expected = (header as u64).saturating_add(count);
    if (bytes.len() as u64) < expected {
        return Err(truncated(&format!("an IDX array of {dims:?}"), expected));
    }
    if bytes.len() as u64 > expected {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes after the end of the {dims:?} array",
                bytes.len() as u64 - expected
            ),
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an IDX file, raw or gzipped.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    parse_idx(&read_idx_bytes(path)?, path)
}

/// Loads an images file (`n × rows × cols`) and its labels file (`n`) as a
/// one-channel dataset in `[0, 1]`. Classes are named `"0"` … up to the
/// largest label (at least 10).
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let imgs = read_idx(images)?;
    let labs = read_idx(labels)?;
    if imgs.dims.len() != 3 {
        return Err(DataError::Corrupt {
            path: images.to_path_buf(),
            reason: format!(
                "expected images of 3 dimensions (n, rows, cols), found {:?}",
                imgs.dims
            ),
        });
    }
    if labs.dims.len() != 1 {
        return Err(DataError::Corrupt {
            path: labels.to_path_buf(),
            reason: format!("expected labels of 1 dimension, found {:?}", labs.dims),
        });
    }
    if imgs.dims[0] != labs.dims[0] {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            n_images: imgs.dims[0],
            labels: labels.to_path_buf(),
            n_labels: labs.dims[0],
        });
    }
    let classes = labs
        .data
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1)
        .max(10);
    let names = (0..classes).map(|k| k.to_string()).collect();
    let pixels = imgs.data.iter().map(|&b| b as f32 / 255.0).collect();
    let labels_u32 = labs.data.iter().map(|&l| l as u32).collect();
    Dataset::new(
        pixels,
        labels_u32,
        Shape::new(imgs.dims[1], imgs.dims[2], 1),
        names,
    )
}

/// The file in `dir` for `prefix` (`train` or `t10k`) and `kind` (`images-idx3`
/// or `labels-idx1`), in any of the usual spellings, raw or `.gz`.
pub fn find_idx_file(dir: &Path, prefix: &str, kind: &str) -> Option<PathBuf> {
    let (what, idx) = kind.split_once('-')?;
    let stems = [
        format!("{prefix}-{what}-{idx}-ubyte"),
        format!("{prefix}-{what}.{idx}-ubyte"),
    ];
    stems
        .iter()
        .flat_map(|s| [s.clone(), format!("{s}.gz")])
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// `true` when `dir` holds MNIST-named training files.
pub fn is_idx_dir(dir: &Path) -> bool {
    find_idx_file(dir, "train", "images-idx3").is_some()
}

/// Loads an MNIST-style folder: `train-images-idx3-ubyte[.gz]` +
/// `train-labels-idx1-ubyte[.gz]`, and, when present, the `t10k-…` test pair.
pub fn load_idx_dir(dir: &Path) -> Result<Splits, DataError> {
    let pair = |prefix: &str| -> Result<Option<Dataset>, DataError> {
        match (
            find_idx_file(dir, prefix, "images-idx3"),
            find_idx_file(dir, prefix, "labels-idx1"),
        ) {
            (Some(i), Some(l)) => load_idx(&i, &l).map(Some),
            (Some(i), None) => Err(DataError::Invalid(format!(
                "{}: found {} but no {prefix}-labels-idx1-ubyte[.gz] beside it",
                dir.display(),
                i.display()
            ))),
            _ => Ok(None),
        }
    };
    let train = pair("train")?.ok_or_else(|| DataError::UnknownFormat {
        path: dir.to_path_buf(),
    })?;
    let test = pair("t10k")?;
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

    pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_and_rejects() {
        let p = Path::new("x.idx");
        let a = parse_idx(&idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]), p).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        let short = parse_idx(&idx_bytes(&[2, 3], &[1, 2, 3]), p).unwrap_err();
        assert!(
            matches!(
                short,
                DataError::Truncated {
                    expected: 18,
                    actual: 15,
                    ..
                }
            ),
            "{short}"
        );
        assert!(matches!(
            parse_idx(&[0, 0], p),
            Err(DataError::Truncated { .. })
        ));
        assert!(matches!(
            parse_idx(b"\x89PNG\r\n", p),
            Err(DataError::BadMagic { .. })
        ));
        let mut f32_type = idx_bytes(&[1], &[0, 0, 0, 0]);
        f32_type[2] = 0x0D;
        assert!(matches!(
            parse_idx(&f32_type, p),
            Err(DataError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_idx(&idx_bytes(&[1], &[1, 2]), p),
            Err(DataError::Corrupt { .. })
        ));
        // A header claiming 2^32·2^32 bytes must not overflow or allocate.
        let huge = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(matches!(
            parse_idx(&huge, p),
            Err(DataError::Truncated { .. })
        ));
    }
}
