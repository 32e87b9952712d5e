//! Explanations of one forecast: where in the magnetogram the model's evidence lies.
//!
//! Methods: the attention network's compatibility maps (the paper's figures), Grad-CAM,
//! Guided Grad-CAM, Integrated Gradients and occlusion, the last three numerically as
//! captum computes them, for both networks. [`explain`] takes a loaded model and one
//! preprocessed image and returns the maps; [`write_outputs`] writes each map's overlay
//! (the paper's 0.7 image + 0.3 JET), its raw values as .npy, and a panel of them all.

pub mod attention;
pub mod batch;
mod checks;
pub mod geometry;
pub mod gradcam;
pub mod graph;
pub mod integrated;
pub mod names;
pub mod occlusion;
pub mod pointing;
pub mod render;

pub use attention::{attention_heatmap, attention_maps, scale_of};
pub use batch::{explain_images, instance_list, integrated_stream, ImageResult, Keyed};
pub use checks::parse_estimators;
pub use gradcam::gradcam;
pub use graph::Graph;
pub use integrated::Rule;
pub use render::{jet, normalise, overlay, panel, tensor_to_gray};

use crate::model::{Arch, LoadedModel, Network};
use anyhow::{bail, Result};
use image::{DynamicImage, GrayImage};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// An explanation method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The attention network's compatibility maps c1..c3.
    Attention,
    /// Grad-CAM at conv_block5 (or 6), or the network's last convolutional stage,
    /// bilinear to the input, normalised.
    #[value(alias = "grad-cam")]
    Gradcam,
    /// Guided backprop times Grad-CAM (captum's GuidedGradCam).
    #[value(alias = "guided-grad-cam")]
    GuidedGradcam,
    /// Integrated Gradients (captum's IntegratedGradients).
    IntegratedGradients,
    /// Sliding-window occlusion (captum's Occlusion).
    Occlusion,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Attention => "attention",
            Method::Gradcam => "gradcam",
            Method::GuidedGradcam => "guided-gradcam",
            Method::IntegratedGradients => "integrated-gradients",
            Method::Occlusion => "occlusion",
        }
    }

    /// The paper's map for a network: attention maps, or Grad-CAM for the standard CNN.
    pub fn default_for(arch: Arch) -> Method {
        if arch.is_attention() {
            Method::Attention
        } else {
            Method::Gradcam
        }
    }
}

/// The class whose logit is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Flare,
    NoFlare,
}

impl Target {
    pub fn index(self) -> i64 {
        match self {
            Target::Flare => 1,
            Target::NoFlare => 0,
        }
    }
}

/// The reference point of Integrated Gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// A black image.
    Zeros,
    /// The image blurred (Gaussian, sigma 1/32 of its side): structure without detail.
    Blur,
}

/// Settings of the methods.
#[derive(Clone, Debug)]
pub struct Options {
    /// Estimators (1..=3) whose attention maps are drawn.
    pub estimators: Vec<usize>,
    /// Grad-CAM layer of the paper's networks: conv_block5 or conv_block6.
    pub gradcam_block: usize,
    /// Grad-CAM's layer by name: a stage of the network (`layer3`, `features.29`, ...;
    /// `conv_block5` or `conv_block6` for the paper's), its default when `None`.
    pub layer: Option<String>,
    pub target: Target,
    pub baseline: Baseline,
    pub rule: Rule,
    /// Integrated Gradients' number of points on the path.
    pub steps: usize,
    /// Occlusion window side and stride, in pixels.
    pub window: i64,
    pub stride: i64,
    /// Occluded copies per forward pass.
    pub batch: usize,
    /// Integrated Gradients' path points per forward and backward pass, the points of
    /// consecutive images sharing a pass (captum's `internal_batch_size`); `None`: as
    /// many as [`integrated::MEMORY_BUDGET`] holds for the network and the image's side
    /// ([`integrated::default_internal_batch`]).
    pub internal_batch: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            estimators: vec![1, 2, 3],
            gradcam_block: 5,
            layer: None,
            target: Target::Flare,
            baseline: Baseline::Zeros,
            rule: Rule::GaussLegendre,
            steps: 50,
            window: 32,
            stride: 16,
            batch: 8,
            internal_batch: None,
        }
    }
}

/// One map of an explanation.
pub struct Map {
    /// Suffix of its overlay: `est2`, `gradcam`, `ig`, ...
    pub name: String,
    /// Suffix of its raw values' .npy: `c2` for attention's maps, else `name`.
    pub raw_name: String,
    /// The method's own values ([h, w] for attention's c_k, [H, W] otherwise), on the CPU.
    pub raw: Tensor,
    /// What the overlay shows: [H, W] in [0, 1], on the CPU.
    pub heat: Tensor,
}

impl Map {
    /// An attribution map named `name` (overlay and .npy alike), shown by its positive part.
    fn attribution(name: &str, attr: Tensor) -> Map {
        Map {
            name: name.into(),
            raw_name: name.into(),
            heat: positive_heat(&attr),
            raw: attr,
        }
    }
}

/// The maps of one image and the forecast they explain.
pub struct Explanation {
    pub method: Method,
    /// P(FL) of the image.
    pub prob: f64,
    pub maps: Vec<Map>,
    /// Integrated Gradients' convergence delta.
    pub delta: Option<f64>,
}

/// The positive part of an attribution, scaled to a maximum of 1 (a map without positive
/// evidence stays 0): the overlay of the signed methods.
fn positive_heat(attr: &Tensor) -> Tensor {
    let pos = attr.relu();
    let hi = pos.max().double_value(&[]);
    if hi > 0.0 {
        pos / hi
    } else {
        pos
    }
}

/// The paper's networks' Grad-CAM block: `--layer conv_block5|conv_block6` where given,
/// else `gradcam_block`.
fn paper_block(opts: &Options) -> Result<usize> {
    match opts.layer.as_deref() {
        None => Ok(opts.gradcam_block),
        Some("conv_block5") => Ok(5),
        Some("conv_block6") => Ok(6),
        Some(other) => {
            bail!("the paper's networks take Grad-CAM at conv_block5 or conv_block6, not {other:?}")
        }
    }
}

fn blur(x: &Tensor) -> Tensor {
    let side = x.size()[3];
    let sigma = side as f64 / 32.0;
    let radius = (3.0 * sigma).ceil() as i64;
    let k: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let k = Tensor::from_slice(&k).to_device(x.device());
    let k = &k / k.sum(Kind::Float);
    let n = 2 * radius + 1;
    let x = x.to_kind(Kind::Float);
    let h = x.conv2d(
        &k.view([1, 1, 1, n]),
        None::<Tensor>,
        [1, 1],
        [0, radius],
        [1, 1],
        1,
    );
    h.conv2d(
        &k.view([1, 1, n, 1]),
        None::<Tensor>,
        [1, 1],
        [radius, 0],
        [1, 1],
        1,
    )
}

/// The `target` logit of each row [N] of the network as explanations differentiate it
/// (the function captum attributes: the module's output, float32, unfused).
pub fn target_logit(net: Graph, x: &Tensor, target: i64) -> Tensor {
    net.logits(x).select(1, target)
}

/// Integrated Gradients' baseline for an input [N, 1, H, W].
fn ig_baseline(input: &Tensor, baseline: Baseline) -> Tensor {
    match baseline {
        Baseline::Zeros => input.zeros_like(),
        Baseline::Blur => blur(input),
    }
}

/// The explanation of an image of P(FL) `prob` by its Integrated Gradients.
fn ig_explanation(prob: f64, a: integrated::Attribution) -> Explanation {
    let raw = a
        .map
        .squeeze()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float);
    Explanation {
        method: Method::IntegratedGradients,
        prob,
        maps: vec![Map::attribution("ig", raw)],
        delta: Some(a.delta),
    }
}

impl Options {
    /// Integrated Gradients' path points per pass for `arch` on images of side `side`.
    pub fn points_per_pass(&self, arch: Arch, side: i64) -> usize {
        self.internal_batch
            .unwrap_or_else(|| integrated::default_internal_batch(arch, side))
    }
}

/// Explains one preprocessed image [1, 1, H, W] (values in [0, 1], on the model's device).
pub fn explain(
    model: &LoadedModel,
    input: &Tensor,
    method: Method,
    opts: &Options,
) -> Result<Explanation> {
    crate::model::check_input(input)?;
    if input.size()[0] != 1 {
        bail!(
            "explanations take one image at a time, got {}",
            input.size()[0]
        );
    }
    let (_, _, h, w) = input.size4()?;
    let net = &model.net;
    let prob = tch::no_grad(|| net.forward_t(input, false).flare_prob()).double_value(&[0]);
    let target = opts.target.index();
    let cpu = |t: Tensor| t.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let whole = |t: Tensor| cpu(t.view([h, w]));
    let maps = match method {
        Method::Attention => {
            let c = attention_maps(net, input)?;

            let mut maps = Vec::new();
            for &k in &opts.estimators {
                if !(1..=3).contains(&k) {
                    bail!("attention estimators are 1, 2 and 3, got {k}");
                }
                maps.push(Map {
                    name: format!("est{k}"),
                    raw_name: format!("c{k}"),
                    raw: cpu(c[k - 1].squeeze()),
                    heat: cpu(attention_heatmap(&c[k - 1], scale_of(k))),
                });
            }
            maps
        }
        Method::Gradcam => {
            let block = match net {
                Network::Paper(_) => paper_block(opts)?,
                Network::Vision(_) => opts.gradcam_block,
            };
            let heat = whole(gradcam(net, input, block, opts.layer.as_deref(), target)?);
            vec![Map {
                name: "gradcam".into(),
                raw_name: "gradcam".into(),
                raw: heat.shallow_clone(),
                heat,
            }]
        }
        Method::GuidedGradcam => {
            let attr = whole(match net {
                Network::Paper(net) => {
                    gradcam::guided_gradcam(net.reference(), input, paper_block(opts)?, target)?
                }
                Network::Vision(net) => {
                    let stage = graph::stage_of(net, opts.layer.as_deref())?;
                    graph::guided_gradcam(net, input, stage, target)?
                }
            });
            vec![Map::attribution("guided_gradcam", attr)]
        }
        Method::IntegratedGradients => {
            let a = integrated::integrated_gradients(
                Graph::of(net),
                input,
                &ig_baseline(input, opts.baseline),
                target,
                opts.rule,
                opts.steps,
                opts.points_per_pass(net.arch(), h.max(w)),
            )?;
            return Ok(ig_explanation(prob, a));
        }
        Method::Occlusion => {
            let attr = whole(occlusion::occlusion(
                Graph::of(net),
                input,
                opts.window,
                opts.stride,
                target,
                opts.batch,
            )?);
            vec![Map::attribution("occlusion", attr)]
        }
    };
    Ok(Explanation {
        method,
        prob,
        maps,
        delta: None,
    })
}

/// Writes `{stem}_{name}.png` (overlay) and `{stem}_{raw_name}.npy` for each map,
/// and `{stem}_panel.png` (the image, then the overlays) under `dir`; `stem` may hold
/// folders (see [`names::output_stems`]). Returns the PNGs written, panel last.
pub fn write_outputs(
    dir: &Path,
    stem: &str,
    image: &GrayImage,
    explanation: &Explanation,
) -> Result<Vec<PathBuf>> {
    let mut tiles = vec![DynamicImage::ImageLuma8(image.clone()).to_rgb8()];
    let mut written = Vec::new();
    for map in &explanation.maps {
        let npy = dir.join(format!("{stem}_{}.npy", map.raw_name));
        render::write_npy(&map.raw, &npy)?;
        let over = overlay(image, &map.heat)?;
        let png = dir.join(format!("{stem}_{}.png", map.name));
        render::write_png(&over, &png)?;
        tiles.push(over);
        written.push(png);
    }
    let panel_path = dir.join(format!("{stem}_panel.png"));
    render::write_png(&panel(&tiles), &panel_path)?;
    written.push(panel_path);
    Ok(written)
}
