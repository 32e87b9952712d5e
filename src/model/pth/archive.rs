//! The zip around a checkpoint: `<name>/data.pkl`, one storage per tensor under
//! `<name>/data/<key>` (stored or deflated), read within size bounds; and the archive
//! `torch.save` writes (stored, 64-byte aligned).

use super::state_dict::{state_dict_refs, storage_bytes};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::Path;
use tch::{Kind, Tensor};

/// Largest `data.pkl` read, in bytes (inflated). `torch.save` writes a few kilobytes for a
/// state dict, a few hundred kilobytes for a large training checkpoint.
pub const MAX_PICKLE_BYTES: u64 = 16 << 20;
/// Most bytes of tensor storage read from one checkpoint (after inflating).
pub const MAX_TENSOR_BYTES: u64 = 8 << 30;

/// Reads the state dict of the archive `reader` holds: finds `data.pkl`, decodes it,
/// checks what every storage must hold (and the total against [`MAX_TENSOR_BYTES`]) before
/// reading any, then reads each storage once and views it as its tensors.
pub(super) fn read_state_dict_from<R: Read + Seek>(reader: R) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(reader)
        .context("not a torch.save zip archive (truncated or another format)")?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| {
            zip.name_for_index(i)
                .and_then(|r| r.ok())
                .map(|s| s.to_string())
        })
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| anyhow!("no data.pkl inside the archive"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let pkl = read_entry(&mut zip, &pkl_name, MAX_PICKLE_BYTES)
        .context("reading data.pkl")?
        .ok_or_else(|| anyhow!("data.pkl is larger than {MAX_PICKLE_BYTES} bytes"))?;
    let tensors = state_dict_refs(&pkl)?;
    // What each storage must hold for the tensors that view it, checked before any is read.
    let mut needed: HashMap<&str, (Kind, u64)> = HashMap::new();
    for (name, t) in &tensors {
        let bytes = storage_bytes(t).with_context(|| format!("tensor {name}"))?;
        let entry = needed.entry(&t.key).or_insert((t.kind, 0));
        if entry.0 != t.kind {
            bail!(
                "tensor {name} reads storage {} as {:?}, another tensor as {:?}",
                t.key,
                t.kind,
                entry.0
            );
        }
        entry.1 = entry.1.max(bytes);
    }
    let total = needed
        .values()
        .try_fold(0u64, |acc, (_, b)| acc.checked_add(*b));
    if total.is_none_or(|t| t > MAX_TENSOR_BYTES) {
        bail!("the tensors need more than {MAX_TENSOR_BYTES} bytes of storage");
    }
    let mut storages: HashMap<&str, Tensor> = HashMap::new();
    let mut out = Vec::new();
    for (name, t) in &tensors {
        if !storages.contains_key(t.key.as_str()) {
            let (kind, need) = needed[t.key.as_str()];
            let entry = format!("{prefix}data/{}", t.key);
            let raw = read_storage(&mut zip, &entry, need)
                .with_context(|| format!("storage {entry} of {name}"))?;
            let elem = kind.elt_size_in_bytes();
            let numel = (raw.len() / elem) as i64;
            let storage = Tensor::f_from_data_size(&raw[..numel as usize * elem], &[numel], kind)?;
            storages.insert(&t.key, storage);
        }
        let storage = &storages[t.key.as_str()];
        let tensor = storage
            .f_as_strided(&t.size, &t.stride, Some(t.offset))?
            .contiguous();
        out.push((name.clone(), tensor));
    }
    Ok(out)
}

/// Reads the first `need` bytes of a storage entry, stored or deflated. The entry must
/// declare at least that much, and no more than that is inflated.
fn read_storage<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    entry: &str,
    need: u64,
) -> Result<Vec<u8>> {
    let mut file = zip.by_name(entry).context("missing")?;
    let declared = file.size();
    if declared < need {
        bail!("holds {declared} bytes, its tensors need {need} (truncated file?)");
    }
    let mut raw = Vec::new();
    // One byte past what is needed: where the entry ends there, reading reaches its end
    // and the archive's checksum is verified.
    (&mut file)
        .take(need + u64::from(declared == need))
        .read_to_end(&mut raw)
        .context("cannot read it")?;
    if (raw.len() as u64) < need {
        bail!(
            "holds {} bytes, its tensors need {need} (truncated file?)",
            raw.len()
        );
    }
    raw.truncate(need as usize);
    Ok(raw)
}

/// Reads a whole entry of at most `limit` bytes (inflated); None when it is larger.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    let file = zip.by_name(name)?;
    if file.size() > limit {
        return Ok(None);
    }
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= limit).then_some(out))
}

/// The folder inside the archive: the file's stem, as a Python identifier would spell it
/// (`torch.save` names it after the file too).
fn archive_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("archive");
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the archive `torch.save` writes around `pkl` and `storages` (storage `i` under
/// `data/i`), stored and 64-byte aligned, at `path` (atomically).
pub(super) fn write(path: &Path, pkl: &[u8], storages: &[Vec<u8>]) -> Result<()> {
    let archive = archive_name(path);
    crate::fsio::write_atomic_with(path, |file| {
        let mut zip = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        zip.start_file(format!("{archive}/data.pkl"), opts)?;
        zip.write_all(pkl)?;
        zip.start_file(format!("{archive}/byteorder"), opts)?;
        zip.write_all(b"little")?;
        for (i, bytes) in storages.iter().enumerate() {
            zip.start_file(format!("{archive}/data/{i}"), opts)?;
            zip.write_all(bytes)?;
        }
        zip.start_file(format!("{archive}/version"), opts)?;
        zip.write_all(b"3\n")?;
        zip.finish()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A zip of `entries`, deflated.
    fn zip_of(entries: &[(&str, &[u8])]) -> zip::ZipArchive<Cursor<Vec<u8>>> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        zip::ZipArchive::new(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn an_entry_over_its_limit_is_not_read() {
        let mut zip = zip_of(&[("a/data.pkl", &[7u8; 100])]);
        assert_eq!(
            read_entry(&mut zip, "a/data.pkl", 100)
                .unwrap()
                .unwrap()
                .len(),
            100
        );
        assert!(read_entry(&mut zip, "a/data.pkl", 99).unwrap().is_none());
    }

    #[test]
    fn a_storage_gives_what_its_tensors_need_and_no_less() {
        let mut zip = zip_of(&[("a/data/0", &[1u8; 16])]);
        assert_eq!(read_storage(&mut zip, "a/data/0", 8).unwrap(), [1u8; 8]);
        assert_eq!(read_storage(&mut zip, "a/data/0", 16).unwrap().len(), 16);
        let err = read_storage(&mut zip, "a/data/0", 17)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 16 bytes, its tensors need 17"), "{err}");
        assert!(read_storage(&mut zip, "a/data/1", 1).is_err());
    }

    #[test]
    fn the_folder_is_named_after_the_file() {
        assert_eq!(
            archive_name(Path::new("/x/fold1-best.v2.pth")),
            "fold1_best_v2"
        );
        assert_eq!(archive_name(Path::new("/x/.pth")), "_pth");
        assert_eq!(archive_name(Path::new("/")), "archive");
    }
}
