//! Starting a torchvision network from an ImageNet checkpoint the user downloaded
//! (`train --pretrained FILE`): three colour channels in, 1000 classes out. The first
//! convolution is summed over the colour channels, which is what a grey image copied to
//! RGB gives; the classifier is replaced by a fresh two-class layer; everything else is
//! loaded key for key (a BatchNorm batch counter the file lacks, as torchvision's
//! published ResNet checkpoints do, starts at 0).
//!
//! With ImageNet's normalisation folded in, the first convolution sees the grey image as
//! torchvision's pipeline would ((x - mean_c) / std_c on each channel): the weights are
//! divided by std_c before the sum, and the constant -sum_c w_c mean_c / std_c goes into
//! the convolution's bias, or, where it has none (ResNet, MobileNetV2), into the running
//! mean of the BatchNorm that follows (batch statistics cancel a constant, so training
//! needs nothing). Exact away from the border, where torchvision pads the normalised
//! image with zeros.

use super::weights::{assign, read_weights};
use super::Arch;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// ImageNet's channel means and standard deviations, as torchvision normalises.
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Where a network's first convolution and its classifier live in its state dict, and
/// the BatchNorm after a bias-less first convolution.
struct Ends {
    first_conv: &'static str,
    first_bias: Option<&'static str>,
    first_bn: Option<&'static str>,
    classifier: &'static str,
}

fn ends(arch: Arch) -> Result<Ends> {
    Ok(match arch {
        Arch::AlexNet | Arch::Vgg16 => Ends {
            first_conv: "features.0.weight",
            first_bias: Some("features.0.bias"),
            first_bn: None,
            classifier: "classifier.6",
        },
        Arch::ResNet18 | Arch::ResNet34 | Arch::ResNet50 => Ends {
            first_conv: "conv1.weight",
            first_bias: None,
            first_bn: Some("bn1"),
            classifier: "fc",
        },
        Arch::MobileNetV2 => Ends {
            first_conv: "features.0.0.weight",
            first_bias: None,
            first_bn: Some("features.0.1"),
            classifier: "classifier.1",
        },
        Arch::Attention | Arch::StandardCnn => bail!(
            "--pretrained takes torchvision ImageNet weights; {arch} is one of the paper's networks, which have none (use --init-weights)"
        ),
    })
}

/// What was loaded from a pretrained checkpoint and what was replaced.
#[derive(Clone, Debug, Serialize)]
pub struct PretrainedReport {
    pub file: String,
    /// Tensors copied key for key (the first convolution included).
    pub loaded: usize,
    /// The first convolution: its key and the colour channels summed into one.
    pub first_conv: String,
    pub channels_summed: i64,
    pub normalisation_folded: bool,
    /// The classifier's keys, left at a fresh initialisation, and the classes it had.
    pub replaced: Vec<String>,
    pub classes_replaced: i64,
    /// BatchNorm batch counters (`num_batches_tracked`) the file lacks, started at 0.
    pub counters_started: usize,
}

impl std::fmt::Display for PretrainedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pretrained {}: loaded {} tensors{}; {} summed over {} colour channels{}; replaced {} ({} classes) by a fresh 2-class layer",
            self.file,
            self.loaded,
            if self.counters_started > 0 {
                format!(
                    " ({} BatchNorm batch counters absent, started at 0)",
                    self.counters_started
                )
            } else {
                String::new()
            },
            self.first_conv,
            self.channels_summed,
            if self.normalisation_folded {
                " with ImageNet's normalisation folded in"
            } else {
                ""
            },
            self.replaced.join(", "),
            self.classes_replaced
        )
    }
}

/// Reads `path` and copies it into `vs` (a freshly built `arch`, its classifier left as
/// built), as the module's description says.
pub fn load_pretrained(
    vs: &mut nn::VarStore,
    arch: Arch,
    path: &Path,
    fold_normalisation: bool,
) -> Result<PretrainedReport> {
    let what = path.display().to_string();
    let ends = ends(arch)?;
    let (tensors, _) = read_weights(path)?;
    let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
    let conv = by_name.remove(ends.first_conv).with_context(|| {
        format!(
            "{what}: no {} (not a torchvision {arch} state dict)",
            ends.first_conv
        )
    })?;
    let channels = conv.size().get(1).copied().unwrap_or(0);
    if conv.dim() != 4 || !(channels == 1 || channels == 3) {
        bail!(
            "{what}: {} has shape {:?}; a pretrained first convolution takes 1 or 3 channels",
            ends.first_conv,
            conv.size()
        );
    }
    if fold_normalisation && channels != 3 {
        bail!("{what}: ImageNet's normalisation folds into a 3-channel first convolution, this one has {channels}");
    }
    let conv = conv.to_kind(Kind::Double);
    let (weight, offset) = if fold_normalisation {
        let std = Tensor::from_slice(&IMAGENET_STD).view([1, 3, 1, 1]);
        let mean = Tensor::from_slice(&IMAGENET_MEAN).view([1, 3, 1, 1]);
        let scaled = &conv / &std;
        // The constant each output channel gets from the means: -sum w mean / std.
        let offset = -(&scaled * &mean).sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Double);
        (scaled.sum_dim_intlist(1, true, Kind::Double), Some(offset))
    } else {
        (conv.sum_dim_intlist(1, true, Kind::Double), None)
    };
    by_name.insert(ends.first_conv.into(), weight.to_kind(Kind::Float));
    if let Some(offset) = offset {
        match (ends.first_bias, ends.first_bn) {
            (Some(bias), _) => {
                let b = by_name
                    .get(bias)
                    .with_context(|| format!("{what}: no {bias}"))?;
                let folded = b.to_kind(Kind::Double) + offset;
                by_name.insert(bias.into(), folded.to_kind(Kind::Float));
            }
            (None, Some(bn)) => {
                let key = format!("{bn}.running_mean");
                let m = by_name
                    .get(&key)
                    .with_context(|| format!("{what}: no {key}"))?;
                // BN(conv(x) + b) with running mean m is BN(conv(x)) with mean m - b.
                let folded = m.to_kind(Kind::Double) - offset;
                by_name.insert(key, folded.to_kind(Kind::Float));
            }
            (None, None) => unreachable!("every network has a bias or a BatchNorm after"),
        }
    }
    // The classifier: dropped from the file, the network's fresh two-class layer kept.
    let prefix = format!("{}.", ends.classifier);
    let mut replaced: Vec<String> = by_name
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    replaced.sort();
    let classes = by_name
        .get(&format!("{prefix}weight"))
        .map_or(0, |w| w.size()[0]);
    if replaced.is_empty() {
        bail!(
            "{what}: no {} (not a torchvision {arch} state dict)",
            ends.classifier
        );
    }
    for k in &replaced {
        by_name.remove(k);
    }
    let fresh: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, t)| (k, t.detach().copy()))
        .collect();
    let loaded = by_name.len();
    // torchvision's published ResNet checkpoints predate BatchNorm's batch counter: where
    // the file has none, the count starts at the network's (0), as PyTorch's BatchNorm
    // loads such a state dict.
    let counters: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".num_batches_tracked") && !by_name.contains_key(k))
        .map(|(k, t)| (k, t.detach().copy()))
        .collect();
    let counters_started = counters.len();
    let mut all: Vec<(String, Tensor)> = by_name.into_iter().collect();
    all.extend(fresh);
    all.extend(counters);
    assign(vs, &all, &what)?;
    Ok(PretrainedReport {
        file: what,
        loaded,
        first_conv: ends.first_conv.into(),
        channels_summed: channels,
        normalisation_folded: fold_normalisation,
        replaced,
        classes_replaced: classes,
        counters_started,
    })
}
