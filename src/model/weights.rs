//! Weight files: PyTorch checkpoints (`.pth`/`.pt`) and flarecast's own safetensors with a
//! JSON metadata entry. The architecture is detected from the keys.

use super::{pth, Arch, InitScheme, Network};
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, View};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The metadata key flarecast writes into safetensors headers.
const META_KEY: &str = "flarecast";

/// What flarecast records beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub arch: Arch,
    /// The image side the model was trained at.
    pub im_size: i64,
    /// Training configuration (free-form JSON), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// The precision the weights were trained in, when flarecast trained them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<super::Precision>,
    /// The map from P(flare) to a calibrated probability, when `calibrate` fitted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibration::Calibration>,
}

impl ModelMeta {
    pub fn new(arch: Arch, im_size: i64) -> Self {
        ModelMeta {
            arch,
            im_size,
            training: None,
            precision: None,
            calibration: None,
        }
    }
}

/// Named tensors as read from a weight file, and flarecast's metadata if present.
pub type NamedTensors = (Vec<(String, Tensor)>, Option<ModelMeta>);

/// A network with its variables, ready to run.
pub struct LoadedModel {
    pub vs: nn::VarStore,
    pub net: Network,
    pub meta: ModelMeta,
}

/// Reads a weight file of either format into named CPU tensors (keys without any
/// `module.` prefix) and flarecast's metadata when the file has it.
pub fn read_weights(path: &Path) -> Result<NamedTensors> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty", path.display());
    }
    let (tensors, meta) = if pth::is_zip(&bytes) {
        (pth::read_state_dict(path)?, None)
    } else if looks_like_safetensors(&bytes) {
        read_safetensors(&bytes)
            .with_context(|| format!("reading safetensors {}", path.display()))?
    } else if bytes.starts_with(&[0x80, 0x02]) || bytes.starts_with(&[0x80, 0x04]) {
        bail!(
            "{} is a legacy (pre-1.6, non-zip) PyTorch file; re-save it with a current torch.save",
            path.display()
        )
    } else {
        bail!(
            "{} is neither a PyTorch checkpoint (.pth zip) nor a safetensors file",
            path.display()
        )
    };
    let tensors = tensors
        .into_iter()
        .map(|(k, t)| {
            (
                k.strip_prefix("module.").map(str::to_string).unwrap_or(k),
                t,
            )
        })
        .collect();
    Ok((tensors, meta))
}

fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        n > 0 && n < bytes.len() as u64 && bytes[8] == b'{'
    }
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("unsupported safetensors dtype {other:?}"),
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => bail!("cannot write a {other:?} tensor to safetensors"),
    })
}

/// A tensor type as safetensors spells it (`F32`, `I32`, ...).
fn kind_name(kind: Kind) -> String {
    match dtype_of(kind) {
        Ok(d) => format!("{d:?}"),
        Err(_) => format!("{kind:?}"),
    }
}

/// Reads a safetensors file held in memory: its tensors (sorted by name) and flarecast's
/// metadata when present.
pub fn read_safetensors(bytes: &[u8]) -> Result<NamedTensors> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{e}"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e}"))?;
    let meta = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        Some(json) => Some(serde_json::from_str(json).context("parsing flarecast metadata")?),
        None => None,
    };
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((
            name,
            Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)?,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, meta))
}

/// A CPU tensor's bytes, as the safetensors serializer wants them.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes named tensors as safetensors with flarecast's metadata, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: &ModelMeta,
) -> Result<()> {
    let mut raws = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        raws.push((
            name.clone(),
            RawTensor {
                dtype: dtype_of(t.kind())?,
                shape,
                data,
            },
        ));
    }
    let info = HashMap::from([(META_KEY.to_string(), serde_json::to_string(meta)?)]);
    let bytes = safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), Some(info))
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    crate::fsio::write_atomic(path, &bytes)
}

/// Which network a set of keys belongs to: the paper's two by their blocks and attention
/// estimators, torchvision's by their layout (ResNet-18 and 34 by their block count, 50 by
/// its bottlenecks, VGG16 by its thirteen convolutions).
pub fn detect_arch(names: &BTreeSet<&str>) -> Result<Arch> {
    let has = |k: &str| names.contains(k);
    let count = |prefix: &str, suffix: &str| {
        names
            .iter()
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .count()
    };
    if has("classify.weight") && has("conv_block1.0.weight") {
        let has_attention = names
            .iter()
            .any(|n| n.starts_with("attn") || n.starts_with("projector1"));
        return Ok(Arch::from_attention(has_attention));
    }
    if has("conv1.weight") && has("fc.weight") && has("layer1.0.conv1.weight") {
        if has("layer1.0.conv3.weight") {
            let blocks = count("layer3.", ".conv3.weight");
            return match blocks {
                6 => Ok(Arch::ResNet50),
                n => bail!("a bottleneck ResNet with {n} blocks in layer3; of those only ResNet-50 (6) runs here"),
            };
        }
        let blocks = count("layer3.", ".conv2.weight");
        return match blocks {
            2 => Ok(Arch::ResNet18),
            6 => Ok(Arch::ResNet34),
            n => bail!("a basic-block ResNet with {n} blocks in layer3; ResNet-18 (2) and ResNet-34 (6) run here"),
        };
    }
    if has("features.0.0.weight") && has("classifier.1.weight") {
        return Ok(Arch::MobileNetV2);
    }
    if has("features.0.weight") && has("classifier.6.weight") {
        let convs = count("features.", ".weight");
        return match convs {
            5 => Ok(Arch::AlexNet),
            13 => Ok(Arch::Vgg16),
            n => bail!(
                "a VGG-style network with {n} convolutions; AlexNet (5) and VGG16 (13) run here"
            ),
        };
    }
    bail!(
        "not a network flarecast knows: expected the keys of the paper's networks (conv_block1.0.weight, classify.weight) or of torchvision's AlexNet, VGG16, ResNet-18/34/50 or MobileNetV2, found {}",
        preview(names.iter().copied())
    )
}

fn preview<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.len() <= 12 {
        v.join(", ")
    } else {
        format!("{}, ... ({} keys)", v[..12].join(", "), v.len())
    }
}

/// Copies `tensors` into a freshly built network's variables; every key must match by
/// name and shape (missing or unexpected keys are listed in the error).
pub fn assign(vs: &mut nn::VarStore, tensors: &[(String, Tensor)], what: &str) -> Result<()> {
    let mut vars = vs.variables();
    let given: BTreeSet<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let wanted: BTreeSet<&str> = vars.keys().map(String::as_str).collect();
    let missing: Vec<&str> = wanted.difference(&given).copied().collect();
    let unexpected: Vec<&str> = given.difference(&wanted).copied().collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        bail!(
            "{what}: keys do not match the network; missing: [{}]; unexpected: [{}]",
            missing.join(", "),
            unexpected.join(", ")
        );
    }
    tch::no_grad(|| -> Result<()> {
        for (name, src) in tensors {
            let dst = vars.get_mut(name).expect("checked above");
            if dst.size() != src.size() {
                bail!(
                    "{what}: {name} has shape {:?}, the network expects {:?}",
                    src.size(),
                    dst.size()
                );
            }
            // A float parameter stored as integers (or the reverse) is another file's bytes
            // under this name: casting it would run a network of garbage.
            if src.is_floating_point() != dst.is_floating_point() {
                bail!(
                    "{what}: {name} is {}, the network expects {}{}",
                    kind_name(src.kind()),
                    kind_name(dst.kind()),
                    if dst.is_floating_point() {
                        " (or another floating-point type)"
                    } else {
                        ""
                    }
                );
            }
            dst.f_copy_(&src.to_kind(dst.kind()))?;
        }
        Ok(())
    })
}

/// Loads a model from a `.pth`/`.pt`/`.safetensors` file onto `device`.
pub fn load_model(path: &Path, device: Device) -> Result<LoadedModel> {
    let (tensors, meta) = read_weights(path)?;
    check_finite(&tensors).with_context(|| format!("{}", path.display()))?;
    if let Some(m) = &meta {
        crate::im_size::ImSize::new(m.im_size)
            .with_context(|| format!("{}: the metadata's image size", path.display()))?;
        if let Some(c) = &m.calibration {
            c.check().with_context(|| format!("{}", path.display()))?;
        }
    }
    let names: BTreeSet<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let arch = detect_arch(&names).with_context(|| format!("{}", path.display()))?;
    if let Some(m) = &meta {
        if m.arch != arch {
            bail!(
                "{}: metadata says {:?} but the keys are those of {:?}",
                path.display(),
                m.arch,
                arch
            );
        }
    }
    let mut vs = nn::VarStore::new(device);
    let net = Network::new(&vs.root(), arch, InitScheme::default());
    assign(&mut vs, &tensors, &path.display().to_string())?;
    let meta = meta.unwrap_or_else(|| ModelMeta::new(arch, crate::im_size::ImSize::PAPER.as_i64()));
    Ok(LoadedModel { vs, net, meta })
}

/// Refuses weights holding NaN or infinity (a diverged run's): they would forecast NaN.
pub fn check_finite(tensors: &[(String, Tensor)]) -> Result<()> {
    for (name, t) in tensors {
        if !t.is_floating_point() {
            continue;
        }
        let bad = t.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
        if bad > 0 {
            bail!(
                "tensor {name} holds {bad} NaN or infinite values of {}; the weights are unusable",
                t.numel()
            );
        }
    }
    Ok(())
}

/// The network's variables by name, sorted (the reference's state_dict keys).
pub fn named_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Saves weights by extension: `.pth`/`.pt` as a PyTorch state_dict, anything else as
/// safetensors with metadata.
pub fn save_model(path: &Path, vs: &nn::VarStore, meta: &ModelMeta) -> Result<()> {
    save_tensors(path, &named_tensors(vs), meta)
}

pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)], meta: &ModelMeta) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("pth") | Some("pt") => pth::write_state_dict(path, tensors),
        _ => write_safetensors(path, tensors, meta),
    }
}

/// Converts a weight file to the format given by `output`'s extension, checking that it
/// is a complete flarecast network first. Returns the detected metadata.
pub fn convert_weights(
    input: &Path,
    output: &Path,
    im_size: Option<crate::im_size::ImSize>,
) -> Result<ModelMeta> {
    let model = load_model(input, Device::Cpu)?;
    let mut meta = model.meta.clone();
    if let Some(s) = im_size {
        meta.im_size = s.as_i64();
    }
    save_model(output, &model.vs, &meta)?;
    Ok(meta)
}
