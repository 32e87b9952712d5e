//! PyTorch checkpoints (`torch.save` zip archives) read and written without Python.
//!
//! A `.pth` is a zip holding `<name>/data.pkl` (a pickle describing the objects) and one
//! raw little-endian storage per tensor under `<name>/data/<key>`, stored or deflated. The
//! pickle reader here understands what `torch.save` writes for state dicts and training
//! checkpoints (dicts, lists, tuples, numbers, strings, `OrderedDict`, `_rebuild_tensor_v2`,
//! `_rebuild_parameter`, persistent storage ids); anything else becomes an opaque value that
//! is never a tensor. It calls nothing a pickle names.
//!
//! A checkpoint may come from a stranger, so what reading one can cost is bounded: the
//! limits (re-exported here, each defined beside the code that checks it) are checked as
//! the pickle runs, and a file over any of them is refused. Memo references share the
//! value they name (as Python's pickle does) instead of copying it, so a small pickle
//! cannot build an exponentially large structure. Together the limits keep a hostile
//! `data.pkl` to a fraction of a second and a few hundred megabytes.
//!
//! | file | job | limits |
//! |---|---|---|
//! | `value.rs` | the values a pickle builds, shared, and their cost | `MAX_DEPTH`, `MAX_OBJECTS`, `MAX_WORK` |
//! | `unpickle.rs` | the pickle machine: opcodes, stack, memo, `torch` globals | `MAX_MEMO`, `MAX_DIMS` |
//! | `state_dict.rs` | the dict of tensors in the decoded pickle, each view's storage bytes | |
//! | `archive.rs` | the zip: entries stored or deflated, read within bounds; written | `MAX_PICKLE_BYTES`, `MAX_TENSOR_BYTES` |
//! | `pickle_writer.rs` | the pickle `torch.save(state_dict)` writes | |

mod archive;
mod pickle_writer;
mod state_dict;
mod unpickle;
mod value;

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Kind, Tensor};

pub use archive::{MAX_PICKLE_BYTES, MAX_TENSOR_BYTES};
pub use unpickle::{MAX_DIMS, MAX_MEMO};
pub use value::{MAX_DEPTH, MAX_OBJECTS, MAX_WORK};

/// True when `bytes` start like a zip archive (the `torch.save` format since PyTorch 1.6).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Reads the named tensors of a PyTorch checkpoint: a plain state_dict, or the dict under
/// `model_state_dict` / `state_dict` of a training checkpoint. Non-tensor entries are
/// skipped. Tensors come back contiguous on the CPU, in file order.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    archive::read_state_dict_from(file)
        .with_context(|| format!("reading PyTorch checkpoint {}", path.display()))
}

/// [`read_state_dict`] of a checkpoint held in memory.
pub fn read_state_dict_bytes(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    archive::read_state_dict_from(std::io::Cursor::new(bytes))
}

/// The tensors a `data.pkl` describes, by name and shape: decoded and checked as
/// [`read_state_dict`] does before it reads any storage.
pub fn pickle_tensors(pkl: &[u8]) -> Result<Vec<(String, Vec<i64>)>> {
    let tensors = state_dict::state_dict_refs(pkl)?;
    for (name, t) in &tensors {
        state_dict::storage_bytes(t).with_context(|| format!("tensor {name}"))?;
    }
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, t.size.clone()))
        .collect())
}

/// Writes `tensors` as a `torch.save` state_dict archive at `path` (atomically).
pub fn write_state_dict(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let (pkl, storages) = pickle_writer::pickle_state_dict(tensors)?;
    archive::write(path, &pkl, &storages)
}

/// The storage classes a checkpoint names, and the element kind of each: one table for
/// reading and writing.
const STORAGES: [(&str, Kind); 10] = [
    ("FloatStorage", Kind::Float),
    ("DoubleStorage", Kind::Double),
    ("HalfStorage", Kind::Half),
    ("BFloat16Storage", Kind::BFloat16),
    ("LongStorage", Kind::Int64),
    ("IntStorage", Kind::Int),
    ("ShortStorage", Kind::Int16),
    ("CharStorage", Kind::Int8),
    ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool),
];

fn storage_kind(name: &str) -> Option<Kind> {
    STORAGES.iter().find(|(n, _)| *n == name).map(|&(_, k)| k)
}

fn storage_name(kind: Kind) -> Result<&'static str> {
    match STORAGES.iter().find(|(_, k)| *k == kind) {
        Some(&(name, _)) => Ok(name),
        None => bail!("cannot store a {kind:?} tensor in a PyTorch checkpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_names_and_kinds_are_inverse() {
        for (name, kind) in STORAGES {
            assert_eq!(storage_kind(name), Some(kind));
            assert_eq!(storage_name(kind).unwrap(), name);
        }
        assert_eq!(storage_kind("ComplexFloatStorage"), None);
        let err = storage_name(Kind::ComplexFloat).unwrap_err().to_string();
        assert!(err.contains("ComplexFloat"), "{err}");
    }

    #[test]
    fn a_written_state_dict_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pth");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0]).reshape([2, 3]);
        let b = Tensor::from_slice(&[3i64, 4]);
        // A transposed view is written contiguous.
        let tensors = vec![
            ("a".to_string(), a.tr()),
            ("b.c".to_string(), b.shallow_clone()),
        ];
        write_state_dict(&path, &tensors).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(is_zip(&bytes));
        let back = read_state_dict(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, "a");
        assert_eq!(back[0].1.size(), [3, 2]);
        assert!(back[0].1.equal(&a.tr()));
        assert_eq!((back[1].0.as_str(), back[1].1.kind()), ("b.c", Kind::Int64));
        assert!(back[1].1.equal(&b));
        assert_eq!(read_state_dict_bytes(&bytes).unwrap().len(), 2);
    }
}
