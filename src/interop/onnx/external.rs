//! Tensors stored outside the model file (`model.onnx.data`), as PyTorch's
//! default exporter writes every tensor over 1 KiB.
//!
//! A tensor's `external_data` entries name a `location` relative to the
//! model's folder, an `offset` and a `length` in bytes. Before anything is
//! read, the location must stay inside the model's folder (no absolute path,
//! no `..`, no symlink out of it), the file must exist, and the byte range the
//! tensor's dims need must lie inside it.

use crate::interop::InteropError;
use crate::interop::proto::TensorProto;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Where external tensors are looked up: the folder of the model file, or
/// nowhere when the model was read from memory.
#[derive(Debug, Clone)]
pub(super) struct ExternalData {
    dir: Option<PathBuf>,
}

/// Whether a tensor's values live in an external file.
pub(super) fn is_external(t: &TensorProto) -> bool {
    t.data_location == 1 || !t.external_data.is_empty()
}

impl ExternalData {
    /// External files are read from the folder holding `model`.
    pub(super) fn beside(model: &Path) -> Self {
        let dir = match model.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        ExternalData { dir: Some(dir) }
    }

    /// A model read from memory: external tensors are refused.
    pub(super) fn unavailable() -> Self {
        ExternalData { dir: None }
    }

    /// The `len` bytes of tensor `t`, after checking its location and range.
    pub(super) fn read(&self, t: &TensorProto, len: usize) -> Result<Vec<u8>, InteropError> {
        let entry = Entry::parse(t)?;
        let Some(dir) = &self.dir else {
            return Err(refuse(
                t,
                &entry.location,
                "the model was read from memory, so its external data file cannot be found; import it from its file",
            ));
        };
        let path = resolve(dir, t, &entry.location)?;
        let file_len = std::fs::metadata(&path)
            .map_err(|e| refuse(t, &entry.location, &format!("cannot be read ({e})")))?
            .len();
        check_range(t, &entry, len as u64, file_len)?;
        read_range(&path, entry.offset, len).map_err(|e| {
            refuse(
                t,
                &entry.location,
                &format!(
                    "reading {len} bytes at offset {} failed ({e})",
                    entry.offset
                ),
            )
        })
    }
}

/// One tensor's `external_data` entries.
struct Entry {
    location: String,
    offset: u64,
    length: Option<u64>,
}

impl Entry {
    fn parse(t: &TensorProto) -> Result<Entry, InteropError> {
        let mut location = None;
        let mut offset = 0;
        let mut length = None;
        for kv in &t.external_data {
            let number = || {
                kv.value.trim().parse::<u64>().map_err(|_| {
                    InteropError::InvalidModel(format!(
                        "tensor `{}`: external data `{}` is `{}`, not a byte count",
                        t.name, kv.key, kv.value
                    ))
                })
            };
            match kv.key.as_str() {
                "location" => location = Some(kv.value.clone()),
                "offset" => offset = number()?,
                "length" => length = Some(number()?),
                _ => {}
            }
        }
        let location = location.filter(|l| !l.is_empty()).ok_or_else(|| {
            InteropError::InvalidModel(format!(
                "tensor `{}` is marked as stored externally but names no `location`",
                t.name
            ))
        })?;
        Ok(Entry {
            location,
            offset,
            length,
        })
    }
}

fn refuse(t: &TensorProto, location: &str, problem: &str) -> InteropError {
    InteropError::InvalidModel(format!(
        "tensor `{}`: external data file `{location}` {problem}",
        t.name
    ))
}

/// `location` inside `dir`: relative, without `..`, and (after following
/// symlinks) still inside `dir`.
fn resolve(dir: &Path, t: &TensorProto, location: &str) -> Result<PathBuf, InteropError> {
    let rel = Path::new(location);
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(refuse(
            t,
            location,
            "is not a path inside the model's folder (absolute paths and `..` are refused)",
        ));
    }
    let path = dir.join(rel);
    let real = path.canonicalize().map_err(|e| {
        refuse(
            t,
            location,
            &format!("is missing beside the model ({}: {e})", path.display()),
        )
    })?;
    let real_dir = dir.canonicalize().map_err(|e| {
        refuse(
            t,
            location,
            &format!("cannot be looked up ({}: {e})", dir.display()),
        )
    })?;
    if !real.starts_with(&real_dir) {
        return Err(refuse(
            t,
            location,
            &format!("leads outside the model's folder (to {})", real.display()),
        ));
    }
    if !real.is_file() {
        return Err(refuse(t, location, "is not a file"));
    }
    Ok(real)
}

/// The tensor's bytes must be what its dims need and lie inside the file.
fn check_range(
    t: &TensorProto,
    entry: &Entry,
    needed: u64,
    file_len: u64,
) -> Result<(), InteropError> {
    if let Some(length) = entry.length
        && length != needed
    {
        return Err(refuse(
            t,
            &entry.location,
            &format!(
                "holds {length} bytes for it, but its dims {:?} need {needed}",
                t.dims
            ),
        ));
    }
    let end = entry.offset.checked_add(needed);
    if end.is_none_or(|end| end > file_len) {
        return Err(refuse(
            t,
            &entry.location,
            &format!(
                "is {file_len} bytes long; the tensor's {needed} bytes at offset {} lie past its end",
                entry.offset
            ),
        ));
    }
    Ok(())
}

fn read_range(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::proto::{StringStringEntryProto, data_type};

    fn tensor(entries: &[(&str, &str)]) -> TensorProto {
        TensorProto {
            name: "w".into(),
            dims: vec![2, 2],
            data_type: data_type::FLOAT,
            data_location: 1,
            external_data: entries
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn folder() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "netloom-external-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bytes: Vec<u8> = (0..32u8).collect();
        std::fs::write(dir.join("m.onnx.data"), bytes).expect("data file");
        dir
    }

    #[test]
    fn reads_the_range_at_its_offset() {
        let dir = folder();
        let ext = ExternalData::beside(&dir.join("m.onnx"));
        let t = tensor(&[
            ("location", "m.onnx.data"),
            ("offset", "8"),
            ("length", "16"),
        ]);
        let bytes = ext.read(&t, 16).expect("read");
        assert_eq!(bytes, (8..24u8).collect::<Vec<_>>());
        // Without a length the dims decide.
        let t = tensor(&[("location", "./m.onnx.data"), ("offset", "16")]);
        assert_eq!(
            ext.read(&t, 16).expect("read"),
            (16..32u8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn refuses_escapes_missing_files_and_short_ranges() {
        let dir = folder();
        let ext = ExternalData::beside(&dir.join("m.onnx"));
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("location", "../m.onnx.data")], "`..` are refused"),
            (&[("location", "/etc/hostname")], "absolute paths"),
            (&[("location", "gone.data")], "is missing beside the model"),
            (
                &[("location", "m.onnx.data"), ("offset", "24")],
                "past its end",
            ),
            (&[("location", "m.onnx.data"), ("length", "12")], "need 16"),
            (&[("offset", "0")], "names no `location`"),
        ];
        for (entries, expected) in cases {
            let err = ext
                .read(&tensor(entries), 16)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("`w`"), "names the tensor: {err}");
        }
        let err = ExternalData::unavailable()
            .read(&tensor(&[("location", "m.onnx.data")]), 16)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("read from memory"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_symlink_out_of_the_folder() {
        let dir = folder();
        let outside = std::env::temp_dir().join(format!("netloom-outside-{}", std::process::id()));
        std::fs::write(&outside, [0u8; 16]).expect("outside file");
        let link = dir.join("link.data");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        let ext = ExternalData::beside(&dir.join("m.onnx"));
        let err = ext
            .read(&tensor(&[("location", "link.data")]), 16)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("outside the model's folder"), "{err}");
    }
}
