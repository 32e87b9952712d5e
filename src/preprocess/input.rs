//! The one way every command reads an input file, so that one file gives one probability
//! whichever command runs it:
//!
//! - a JPG or PNG (8 or 16 bit) is a training image: read as 8-bit grey as Pillow reads it;
//! - a JP2 becomes the training image the training tree holds for it: decoded, area-resized
//!   to 512x512 and sent through the quality-95 JPEG round trip of `convert`
//!   (`from_jp2`);
//! - a `.npy` float32 array is already the model's input (`[H, W]`, `[1, H, W]` or
//!   `[N, 1, H, W]`), taken as it is.
//!
//! [`Input::instances`] then gives the model's input at its size (`Resize(im_size)` and
//! `ToTensor()` for an image). What the file breaks of the model's assumptions (not HMI,
//! 16-bit, colour, tiny) comes with it as notes, for every command alike.

use super::{assumptions, npy, resize_like_pil, sniff, to_tensor, training_image, Sniffed};
use anyhow::{bail, Context, Result};
use image::GrayImage;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// What an input file holds.
pub enum Pixels {
    /// A magnetogram as a training image: 8-bit grey, before the model's resize.
    Image(GrayImage),
    /// Preprocessed instances `[N, 1, H, W]`, float32; `indexed` when the file was
    /// `[N, 1, H, W]` (its instances are named `file.npy[i]`).
    Arrays { data: Tensor, indexed: bool },
}

/// One input file, read.
pub struct Input {
    pub path: PathBuf,
    pub pixels: Pixels,
    /// What was assumed about the file (not HMI, 16-bit clipped, colour, tiny): one
    /// sentence each, naming the file, for a warning.
    pub notes: Vec<String>,
}

/// One model input of a file.
pub struct Instance {
    /// `file` for an image or a single array, `file.npy[i]` for one of several.
    pub label: String,
    /// The instance's index within its file (0 for an image).
    pub index: usize,
    /// `[1, H, W]` float32 in [0, 1], on the CPU.
    pub tensor: Tensor,
}

impl Instance {
    /// What the instance shows as an 8-bit image (the resized image itself for an image
    /// file), for overlays.
    pub fn gray(&self) -> Result<GrayImage> {
        let t = self.tensor.squeeze_dim(0);
        let (h, w) = t.size2()?;
        let bytes = Vec::<u8>::try_from(
            (t.to_kind(Kind::Float) * 255.0)
                .round()
                .clamp(0.0, 255.0)
                .to_kind(Kind::Uint8)
                .contiguous()
                .view([-1]),
        )?;
        GrayImage::from_raw(w as u32, h as u32, bytes).context("image buffer size")
    }
}

impl Input {
    /// Reads `path` by its contents (a `.npy` also by its extension).
    pub fn read(path: &Path) -> Result<Input> {
        let pixels = if is_npy(path)? {
            let (data, indexed) = npy::read_instances(path)?;
            Pixels::Arrays { data, indexed }
        } else {
            Pixels::Image(training_image(path)?)
        };
        Ok(Input {
            path: path.to_path_buf(),
            pixels,
            notes: assumptions(path),
        })
    }

    /// How many model inputs the file holds.
    pub fn len(&self) -> usize {
        match &self.pixels {
            Pixels::Image(_) => 1,
            Pixels::Arrays { data, .. } => data.size()[0] as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The model inputs at side `im_size`: an image resized as the reference does
    /// (`Resize(im_size)`, `ToTensor()`); arrays as they are, their shorter side checked
    /// against `im_size`.
    pub fn instances(&self, im_size: u32) -> Result<Vec<Instance>> {
        let name = self.path.display().to_string();
        match &self.pixels {
            Pixels::Image(img) => Ok(vec![Instance {
                label: name,
                index: 0,
                tensor: to_tensor(&resize_like_pil(img, im_size)),
            }]),
            Pixels::Arrays { data, indexed } => {
                let shape = data.size();
                if shape[2].min(shape[3]) != im_size as i64 {
                    bail!(
                        "{name}: arrays of {}x{} pixels; this model takes the shorter side {im_size}",
                        shape[2],
                        shape[3]
                    );
                }
                Ok((0..shape[0])
                    .map(|i| Instance {
                        label: if *indexed {
                            format!("{name}[{i}]")
                        } else {
                            name.clone()
                        },
                        index: i as usize,
                        tensor: data.get(i),
                    })
                    .collect())
            }
        }
    }

    /// The one model input of a file that must hold one (a forecast's image).
    pub fn single(&self, im_size: u32) -> Result<Instance> {
        let mut all = self.instances(im_size)?;
        if all.len() != 1 {
            bail!(
                "{}: holds {} instances; give one image",
                self.path.display(),
                all.len()
            );
        }
        Ok(all.remove(0))
    }
}

/// Whether `path` is a `.npy` array, by its extension or its first bytes.
fn is_npy(path: &Path) -> Result<bool> {
    use std::io::Read;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        return Ok(true);
    }
    let cannot = || format!("cannot read {}", path.display());
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(cannot)?;
    Ok(sniff(&head[..n]) == Sniffed::Npy)
}
