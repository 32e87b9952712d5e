//! The JP2 file-format boxes: enough structure to tell a complete Helioviewer JP2 from a
//! truncated download or an error page, and to read the FITS header in the `xml ` box.

use anyhow::{bail, Result};

/// The 12-byte JP2 signature box: length 12, type `jP  `, content `\r\n\x87\n`.
pub const SIGNATURE: [u8; 12] = [0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0d, 0x0a, 0x87, 0x0a];

/// Smallest plausible JP2: signature, ftyp, jp2h and a codestream with SOC..EOC.
const MIN_LEN: usize = 64;

/// Where the top-level boxes of a structurally complete JP2 lie.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Byte range of the first `xml ` box content, when there is one.
    pub xml: Option<(usize, usize)>,
    /// Width and height from the image header (`ihdr` inside `jp2h`).
    pub dims: Option<(u32, u32)>,
}

/// True when `bytes` starts with the JP2 signature box (cheap check for a download body).
pub fn has_signature(bytes: &[u8]) -> bool {
    bytes.len() >= SIGNATURE.len() && bytes[..SIGNATURE.len()] == SIGNATURE
}

/// Walks the top-level boxes and checks the file is complete: the signature first, every
/// box inside the file, a `jp2c` box whose codestream starts with SOC and ends with EOC.
/// OpenJPEG's non-strict decoder would silently decode a truncated codestream as a blurred
/// image, so this check is what makes truncation an error.
pub fn layout(bytes: &[u8]) -> Result<Layout> {
    if !has_signature(bytes) {
        let head: String = bytes
            .iter()
            .take(16)
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        bail!("not a JP2 file (no JPEG 2000 signature box; starts with {head:?})");
    }
    if bytes.len() < MIN_LEN {
        bail!("JP2 file too short ({} bytes)", bytes.len());
    }
    let mut pos = 0usize;
    let mut codestream = None;
    let mut xml = None;
    let mut dims = None;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            bail!(
                "JP2 truncated: {} stray bytes after the last box at offset {pos}",
                bytes.len() - pos
            );
        }
        let lbox = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let tbox = &bytes[pos + 4..pos + 8];
        let (header, len) = match lbox {
            0 => (8usize, (bytes.len() - pos) as u64),
            1 => {
                if bytes.len() - pos < 16 {
                    bail!("JP2 truncated inside a box header at offset {pos}");
                }
                let mut x = [0u8; 8];
                x.copy_from_slice(&bytes[pos + 8..pos + 16]);
                (16usize, u64::from_be_bytes(x))
            }
            n => (8usize, n as u64),
        };
        if len < header as u64 {
            bail!("JP2 corrupt: box at offset {pos} has length {len}");
        }
        let end = pos as u64 + len;
        if end > bytes.len() as u64 {
            bail!(
                "JP2 truncated: box {:?} at offset {pos} needs {len} bytes, the file has {} left",
                String::from_utf8_lossy(tbox),
                bytes.len() - pos
            );
        }
        let (start, end) = (pos + header, end as usize);
        match tbox {
            b"jp2c" if codestream.is_none() => codestream = Some((start, end)),
            b"xml " if xml.is_none() => xml = Some((start, end)),
            b"jp2h" => dims = ihdr_dims(&bytes[start..end]),
            _ => {}
        }
        pos = end;
    }
    let Some((cs, ce)) = codestream else {
        bail!("JP2 has no codestream (jp2c) box");
    };
    let c = &bytes[cs..ce];
    if c.len() < 4 || c[..2] != [0xff, 0x4f] {
        bail!("JP2 codestream does not start with the SOC marker");
    }
    if c[c.len() - 2..] != [0xff, 0xd9] {
        bail!("JP2 truncated: the codestream does not end with the EOC marker");
    }
    Ok(Layout { xml, dims })
}

/// HEIGHT and WIDTH of the `ihdr` box, the first box inside `jp2h`.
fn ihdr_dims(jp2h: &[u8]) -> Option<(u32, u32)> {
    if jp2h.len() < 16 || &jp2h[4..8] != b"ihdr" {
        return None;
    }
    let be = |i: usize| u32::from_be_bytes([jp2h[i], jp2h[i + 1], jp2h[i + 2], jp2h[i + 3]]);
    Some((be(12), be(8)))
}

/// The text of the `xml ` box (the FITS header Helioviewer embeds), if any.
pub fn xml_text(bytes: &[u8], layout: &Layout) -> Option<String> {
    let (s, e) = layout.xml?;
    Some(String::from_utf8_lossy(&bytes[s..e]).into_owned())
}

/// The text of the first `<key>...</key>` element, the tag matched without regard to case.
pub fn xml_value(xml: &str, key: &str) -> Option<String> {
    let lower = xml.to_ascii_lowercase();
    let open = format!("<{}", key.to_ascii_lowercase());
    let mut from = 0;
    while let Some(i) = lower[from..].find(&open) {
        let at = from + i + open.len();
        // The tag name must end here (`<t_obs>` or `<t_obs attr=..>`), not `<t_obs_x>`.
        match lower.as_bytes().get(at) {
            Some(b'>') | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r') => {
                let gt = at + lower[at..].find('>')?;
                if lower.as_bytes()[gt - 1] == b'/' {
                    return Some(String::new());
                }
                let close = gt + 1 + lower[gt + 1..].find('<')?;
                return Some(xml[gt + 1..close].trim().to_string());
            }
            _ => from = at,
        }
    }
    None
}

/// The `xml ` box of a JP2 file, seeking past the other boxes (the codestream is not read).
pub fn read_xml_box(path: &std::path::Path) -> Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut sig = [0u8; 12];
    f.read_exact(&mut sig)?;
    if sig != SIGNATURE {
        bail!("not a JP2 file (no JPEG 2000 signature box)");
    }
    let mut pos = 12u64;
    while pos + 8 <= len {
        let mut h = [0u8; 8];
        f.read_exact(&mut h)?;
        let lbox = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        let (header, size) = match lbox {
            0 => (8, len - pos),
            1 => {
                let mut x = [0u8; 8];
                f.read_exact(&mut x)?;
                (16, u64::from_be_bytes(x))
            }
            n => (8, n),
        };
        if size < header || pos + size > len {
            bail!("JP2 truncated or corrupt at offset {pos}");
        }
        if &h[4..8] == b"xml " {
            // Helioviewer's FITS headers are a few kB; refuse absurd sizes.
            if size - header > 16 << 20 {
                bail!("xml box of {} bytes is too large", size - header);
            }
            let mut buf = vec![0u8; (size - header) as usize];
            f.read_exact(&mut buf)?;
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        pos += size;
        f.seek(SeekFrom::Start(pos))?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn box_(t: &[u8; 4], content: &[u8]) -> Vec<u8> {
        let mut v = ((content.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(t);
        v.extend_from_slice(content);
        v
    }

    fn tiny_jp2(codestream: &[u8]) -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.extend(box_(b"ftyp", b"jp2 \0\0\0\0jp2 "));
        v.extend(box_(b"jp2h", &[0u8; 37]));
        v.extend(box_(
            b"xml ",
            b"<meta><fits><T_OBS>2022.08.02_10:48:52.509_TAI</T_OBS></fits></meta>",
        ));
        v.extend(box_(b"jp2c", codestream));
        v
    }

    #[test]
    fn complete_file_and_xml() {
        let f = tiny_jp2(&[0xff, 0x4f, 0xff, 0x51, 0, 0, 0xff, 0xd9]);
        let l = layout(&f).unwrap();
        let xml = xml_text(&f, &l).unwrap();
        assert_eq!(
            xml_value(&xml, "t_obs").as_deref(),
            Some("2022.08.02_10:48:52.509_TAI")
        );
        assert_eq!(xml_value(&xml, "DATE-OBS"), None);
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let f = tiny_jp2(&[0xff, 0x4f, 0xff, 0x51, 0, 0, 0xff, 0xd9]);
        let e = layout(&f[..f.len() - 3]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let no_eoc = tiny_jp2(&[0xff, 0x4f, 0xff, 0x51, 0, 0, 0, 0]);
        assert!(layout(&no_eoc).unwrap_err().to_string().contains("EOC"));
        let html = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".repeat(3);
        assert!(layout(&html).unwrap_err().to_string().contains("not a JP2"));
    }

    #[test]
    fn tag_names_must_match_exactly() {
        let xml = "<fits><T_OBS_X>no</T_OBS_X><t_obs >yes</t_obs></fits>";
        assert_eq!(xml_value(xml, "T_OBS").as_deref(), Some("yes"));
    }
}
