//! Grad-CAM, guided backpropagation and Guided Grad-CAM.
//!
//! `gradcam` is the display map (ReLU of the gradient-weighted channels, bilinear to the
//! input, min-max). `layer_gradcam`, `guided_backprop` and `guided_gradcam` follow
//! captum's LayerGradCam (relu_attributions), GuidedBackprop and GuidedGradCam exactly:
//! guided backprop passes only positive gradients through each ReLU (relu of the
//! ReLU's input gradient), and Guided Grad-CAM multiplies it by the layer's Grad-CAM
//! upsampled to the input by nearest-neighbour interpolation, unnormalised.

use super::graph;
use super::render::normalise;
use crate::model::{Network, Reference};
use anyhow::{anyhow, bail, Result};
use tch::{Kind, Tensor};

/// Grad-CAM of the `target` logit (1: FL), the display map: channel weights = spatially averaged
/// gradients, ReLU of the weighted sum, bilinear upsampling to the input size, min-max
/// normalisation. Returns [H, W]. The layer is conv_block5 (`block` 5, 16x16 at 256) or
/// conv_block6 (6, 2x2) of the paper's networks, a named stage of the others (`stage`,
/// their default Grad-CAM stage when `None`). Where no position has positive evidence
/// (the ReLU leaves nothing), the weighted sum itself is normalised, so the map still
/// ranks positions instead of going blank.
pub fn gradcam(
    net: &Network,
    input: &Tensor,
    block: usize,
    stage: Option<&str>,
    target: i64,
) -> Result<Tensor> {
    let (_, _, h, w) = input.size4()?;
    let (out, feats) = match net {
        Network::Paper(net) => {
            // The reference network keeps conv_block5's full-resolution output.
            let out = net.reference().forward_t(input, false);
            let feats = match block {
                5 => out
                    .l3
                    .as_ref()
                    .ok_or_else(|| anyhow!("conv_block5 output missing"))?
                    .shallow_clone(),
                6 => out.features.shallow_clone(),
                other => bail!("Grad-CAM block must be 5 or 6, got {other}"),
            };
            (out, feats)
        }
        Network::Vision(net) => {
            let stage = graph::stage_of(net, stage)?;
            graph::forward_keeping(net, &input.to_kind(Kind::Float), stage)
        }
    };
    let score = out.logits.select(1, target).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&score], &[&feats], false, false);
    let weights = grads[0].mean_dim(&[2i64, 3][..], true, Kind::Float);
    let weighted =
        (feats.detach().to_kind(Kind::Float) * weights).sum_dim_intlist(1, true, Kind::Float);
    let relu = weighted.relu();
    let cam = if relu.max().double_value(&[]) > 0.0 {
        relu
    } else {
        weighted
    };
    let up = cam.upsample_bilinear2d([h, w], true, None, None);
    Ok(normalise(&up.view([h, w])))
}

fn check_block(block: usize) -> Result<()> {
    if block != 5 && block != 6 {
        bail!("Grad-CAM block must be 5 or 6, got {block}");
    }
    Ok(())
}

/// captum's LayerGradCam with relu_attributions on conv_block`block`'s output, target
/// logit `target`: [N, 1, h, w], unnormalised.
pub fn layer_gradcam(net: Reference, input: &Tensor, block: usize, target: i64) -> Result<Tensor> {
    check_block(block)?;
    let mut layer = None;
    let out = net.forward_hooked(input, false, &mut |k, _, out| {
        if k == block {
            layer = Some(out.shallow_clone());
        }
        out
    });
    let layer = layer.expect("every conv block runs");
    let score = out.logits.select(1, target).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&score], &[&layer], false, false);
    let weights = grads[0].mean_dim(&[2i64, 3][..], true, Kind::Float);
    Ok((weights * layer.detach())
        .sum_dim_intlist(1, true, Kind::Float)
        .relu())
}

/// captum's GuidedBackprop of the target logit: [N, 1, H, W].
pub fn guided_backprop(net: Reference, input: &Tensor, target: i64) -> Tensor {
    let x = input.to_kind(Kind::Float).detach().set_requires_grad(true);
    // Each block's output becomes a fresh leaf, so each block is back-propagated on its
    // own and the gradient can be rectified at its ReLU.
    let (mut pre, mut relu) = (Vec::with_capacity(6), Vec::with_capacity(6));
    let out = net.forward_hooked(&x, false, &mut |_, z, out| {
        let leaf = out.detach().set_requires_grad(true);
        pre.push(z.shallow_clone());
        relu.push(leaf.shallow_clone());
        leaf
    });
    let score = out.logits.select(1, target).sum(Kind::Float);
    // The head reads l1..l3 (attention) and the last block; blocks read their predecessor.
    let head_inputs: Vec<usize> = if net.arch().is_attention() {
        vec![2, 3, 4, 5]
    } else {
        vec![5]
    };
    let leaves: Vec<&Tensor> = head_inputs.iter().map(|&k| &relu[k]).collect();
    let mut grads: Vec<Option<Tensor>> = (0..6).map(|_| None).collect();
    for (&k, g) in head_inputs
        .iter()
        .zip(Tensor::run_backward(&[&score], &leaves, false, false))
    {
        grads[k] = Some(g);
    }
    for k in (0..6).rev() {
        let g_out = grads[k].take().unwrap_or_else(|| relu[k].zeros_like());
        // ReLU backward (gradient where the input is positive), then only its positive part.
        let g_pre = (g_out * pre[k].gt(0.0).to_kind(Kind::Float)).relu();
        let seg_out = (&pre[k] * g_pre).sum(Kind::Float);
        let seg_in = if k == 0 { &x } else { &relu[k - 1] };
        let g_in = Tensor::run_backward(&[&seg_out], &[seg_in], false, false)
            .pop()
            .expect("one gradient");
        if k == 0 {
            return g_in;
        }
        grads[k - 1] = Some(match grads[k - 1].take() {
            Some(g) => g + g_in,
            None => g_in,
        });
    }
    unreachable!("the loop returns at the first block")
}

/// captum's GuidedGradCam: guided backprop times the layer's Grad-CAM upsampled to the
/// input by nearest-neighbour interpolation. [N, 1, H, W], unnormalised.
pub fn guided_gradcam(net: Reference, input: &Tensor, block: usize, target: i64) -> Result<Tensor> {
    let (_, _, h, w) = input.size4()?;
    let cam = layer_gradcam(net, input, block, target)?;
    let up = cam.upsample_nearest2d([h, w], None, None);
    Ok(guided_backprop(net, input, target) * up)
}
