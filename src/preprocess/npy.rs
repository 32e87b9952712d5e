//! Reading preprocessed `.npy` float32 arrays, with the header and size checked before
//! any data is handed to libtorch (a truncated file must be an error, not a bad read).

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::Tensor;

/// The parts of an npy header that matter here.
struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<i64>,
}

fn parse_header(text: &str) -> Result<Header> {
    let field = |key: &str| -> Result<&str> {
        let at = text
            .find(&format!("'{key}'"))
            .with_context(|| format!("header has no '{key}'"))?;
        let rest = &text[at + key.len() + 2..];
        let rest = rest
            .trim_start()
            .strip_prefix(':')
            .context("malformed header")?;
        Ok(rest.trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .context("malformed 'descr'")?
        .to_string();
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_text = field("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("malformed 'shape'")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<i64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("malformed 'shape'")?;
    Ok(Header {
        descr,
        fortran,
        shape,
    })
}

/// Reads a whole `.npy` file as a float32 tensor of its stored shape.
pub fn read_f32(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_f32_bytes(&bytes).with_context(|| format!("invalid .npy file {}", path.display()))
}

fn read_f32_bytes(bytes: &[u8]) -> Result<Tensor> {
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        bail!("not a .npy file (bad magic)");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unsupported .npy version {v}"),
    };
    let header = bytes.get(start..start + len).context("truncated header")?;
    let header = parse_header(&String::from_utf8_lossy(header))?;
    let kind = match header.descr.as_str() {
        "<f4" | "=f4" => tch::Kind::Float,
        "<f8" | "=f8" => tch::Kind::Double,
        d => bail!("dtype {d} is not float32"),
    };
    if header.fortran {
        bail!("Fortran-ordered arrays are not supported");
    }
    if header.shape.iter().any(|&d| d < 0) {
        bail!("negative dimension in shape {:?}", header.shape);
    }
    // A crafted header can name dimensions whose product overflows: check every step.
    let need = header
        .shape
        .iter()
        .try_fold(kind.elt_size_in_bytes(), |acc, &d| {
            acc.checked_mul(usize::try_from(d).ok()?)
        })
        .with_context(|| format!("shape {:?} is too large", header.shape))?;
    let data = &bytes[start + len..];
    if data.len() != need {
        bail!(
            "shape {:?} needs {need} data bytes, the file has {}",
            header.shape,
            data.len()
        );
    }
    let t = Tensor::f_from_data_size(data, &header.shape, kind)?;
    Ok(t.to_kind(tch::Kind::Float))
}

/// Reads a preprocessed array as model instances `[N, 1, H, W]`, checking its shape and
/// values; `true` with it when the file was `[N, 1, H, W]` (instances named by index).
pub fn read_instances(path: &Path) -> Result<(Tensor, bool)> {
    let name = path.display().to_string();
    let t = read_f32(path)?;
    let shape = t.size();
    let batch = match shape.as_slice() {
        [h, w] => t.view([1, 1, *h, *w]),
        [1, h, w] => t.view([1, 1, *h, *w]),
        [_, 1, _, _] => t,
        _ => bail!("{name}: array of shape {shape:?}; expected [H, W], [1, H, W] or [N, 1, H, W]"),
    };
    if batch.size()[0] == 0 {
        bail!("{name}: array of shape {shape:?} holds no instances");
    }
    let finite = batch.isfinite().all().int64_value(&[]) == 1;
    if !finite {
        bail!("{name}: array holds NaN or infinite values");
    }
    Ok((batch, shape.len() == 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_float32_and_rejects_truncation() {
        let data: Vec<u8> = [0.25f32, 0.5, 0.75, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = read_f32_bytes(&npy("<f4", "(2, 2)", &data)).unwrap();
        assert_eq!(t.size(), vec![2, 2]);
        assert_eq!(t.double_value(&[1, 0]), 0.75);
        let e = read_f32_bytes(&npy("<f4", "(2, 3)", &data)).unwrap_err();
        assert!(e.to_string().contains("needs 24 data bytes"), "{e}");
        let e = read_f32_bytes(&npy("<i8", "(2,)", &data)).unwrap_err();
        assert!(e.to_string().contains("not float32"), "{e}");
    }

    #[test]
    fn a_shape_whose_size_overflows_is_an_error() {
        let huge = "(4294967296, 4294967296, 4294967296)";
        let e = read_f32_bytes(&npy("<f4", huge, &[0; 16])).unwrap_err();
        assert!(e.to_string().contains("is too large"), "{e}");
        // 2^62 * 4 * 4 bytes wraps to 0 when multiplied unchecked, which an empty data
        // section would then match.
        let e = read_f32_bytes(&npy("<f4", "(4611686018427387904, 4)", &[])).unwrap_err();
        assert!(e.to_string().contains("is too large"), "{e}");
    }
}
