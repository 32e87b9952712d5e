//! The network as its explanations differentiate it: float32, unfused, with the module
//! structure captum's hooks see. The paper's two networks are their `Reference`; the
//! torchvision networks run `VisionNet::reference_tapped` with a `Tap` at every ReLU and
//! stage.

use crate::model::{Network, NoTap, Output, Reference, Tap, VisionNet};
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

#[derive(Clone, Copy)]
pub enum Graph<'a> {
    Paper(Reference<'a>),
    Vision(&'a VisionNet),
}

impl<'a> Graph<'a> {
    pub fn of(net: &'a Network) -> Self {
        match net {
            Network::Paper(n) => Graph::Paper(n.reference()),
            Network::Vision(n) => Graph::Vision(n.as_ref()),
        }
    }

    /// The eval-mode forward pass: [N, 2] float32 logits.
    pub fn logits(self, x: &Tensor) -> Tensor {
        match self {
            Graph::Paper(r) => r.forward_t(x, false).logits,
            Graph::Vision(v) => v.reference_tapped(x, false, &mut NoTap).logits,
        }
    }
}

/// Keeps the output of one named stage.
struct KeepStage<'n> {
    name: &'n str,
    kept: Option<Tensor>,
}

impl Tap for KeepStage<'_> {
    fn stage(&mut self, name: &str, out: Tensor) -> Tensor {
        if name == self.name {
            self.kept = Some(out.shallow_clone());
        }
        out
    }
}

/// The stage `layer` of a torchvision network (its default Grad-CAM stage when `None`),
/// checked against the stages it has.
pub fn stage_of<'s>(net: &VisionNet, layer: Option<&'s str>) -> Result<&'s str>
where
    'static: 's,
{
    let name = layer.unwrap_or(net.gradcam_stage());
    if !net.stages().contains(&name) {
        bail!(
            "{} has no stage {name:?}; its stages are {}",
            net.arch(),
            net.stages().join(", ")
        );
    }
    Ok(name)
}

/// The eval-mode forward pass and the output of stage `name` (float32, in the graph).
pub fn forward_keeping(net: &VisionNet, x: &Tensor, name: &str) -> (Output, Tensor) {
    let mut keep = KeepStage { name, kept: None };
    let out = net.reference_tapped(x, false, &mut keep);
    let kept = keep.kept.expect("the stage was checked to run");
    (out, kept)
}

/// Cuts the graph at every ReLU: each ReLU's output becomes a fresh leaf, so the backward
/// pass can be taken one segment at a time and rectified at each ReLU.
#[derive(Default)]
struct CutAtRelus {
    pre: Vec<Tensor>,
    leaves: Vec<Tensor>,
}

impl Tap for CutAtRelus {
    fn relu(&mut self, pre: &Tensor, out: Tensor) -> Tensor {
        let leaf = out.detach().set_requires_grad(true);
        self.pre.push(pre.shallow_clone());
        self.leaves.push(leaf.shallow_clone());
        leaf
    }
}

/// Gradients of `of` with respect to `inputs`; an input `of` does not depend on gets
/// `None`.
fn gradients(of: &Tensor, grad: Option<&Tensor>, inputs: &[&Tensor]) -> Vec<Option<Tensor>> {
    // The output's gradient is folded into a scalar (sum(of * grad)), so one backward
    // call serves; unused inputs come back undefined.
    let scalar = match grad {
        Some(g) => (of * g).sum(Kind::Float),
        None => of.shallow_clone(),
    };
    // The graph is kept: a node two segments share is walked once for each.
    Tensor::run_backward(&[&scalar], inputs, true, false)
        .into_iter()
        .map(|g| g.defined().then_some(g))
        .collect()
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor) {
    *slot = Some(match slot.take() {
        Some(s) => s + g,
        None => g,
    });
}

/// captum's GuidedBackprop of the `target` logit on a torchvision network: [N, 1, H, W].
/// At every `nn.ReLU` the gradient passed back is the ReLU's gradient rectified
/// (relu(grad) where the input was positive); other modules (MobileNetV2's ReLU6
/// among them) pass their gradient unchanged, as captum hooks only `nn.ReLU`.
pub fn guided_backprop(net: &VisionNet, input: &Tensor, target: i64) -> Tensor {
    let x = input.to_kind(Kind::Float).detach().set_requires_grad(true);
    let mut cut = CutAtRelus::default();
    let out = net.reference_tapped(&x, false, &mut cut);
    let score = out.logits.select(1, target).sum(Kind::Float);
    let n = cut.leaves.len();
    let mut inputs: Vec<&Tensor> = cut.leaves.iter().collect();
    inputs.push(&x);
    let mut grads = gradients(&score, None, &inputs);
    let mut to_input = grads.pop().expect("x's slot");
    // ReLUs in reverse call order: everything reading ReLU k's output was called after
    // it, so its gradient is complete when it is reached.
    for k in (0..n).rev() {
        let Some(g_out) = grads[k].take() else {
            continue;
        };
        let pre = &cut.pre[k];
        let g_pre = (g_out * pre.gt(0.0).to_kind(Kind::Float)).relu();
        let mut upstream: Vec<&Tensor> = cut.leaves[..k].iter().collect();
        upstream.push(&x);
        let mut back = gradients(pre, Some(&g_pre), &upstream);
        if let Some(g) = back.pop().flatten() {
            accumulate(&mut to_input, g);
        }
        for (j, g) in back.into_iter().enumerate() {
            if let Some(g) = g {
                accumulate(&mut grads[j], g);
            }
        }
    }
    to_input.unwrap_or_else(|| x.zeros_like())
}

/// captum's LayerGradCam (relu_attributions) of the `target` logit at stage `stage`:
/// [N, 1, h, w], unnormalised.
pub fn layer_gradcam(net: &VisionNet, input: &Tensor, stage: &str, target: i64) -> Tensor {
    let (out, layer) = forward_keeping(net, &input.to_kind(Kind::Float), stage);
    let score = out.logits.select(1, target).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&score], &[&layer], false, false);
    let weights = grads[0].mean_dim(&[2i64, 3][..], true, Kind::Float);
    (weights * layer.detach())
        .sum_dim_intlist(1, true, Kind::Float)
        .relu()
}

/// captum's GuidedGradCam at stage `stage`: guided backprop times the stage's Grad-CAM
/// upsampled to the input by nearest-neighbour interpolation. [N, 1, H, W], unnormalised.
pub fn guided_gradcam(net: &VisionNet, input: &Tensor, stage: &str, target: i64) -> Result<Tensor> {
    let (_, _, h, w) = input.size4()?;
    let cam = layer_gradcam(net, input, stage, target);
    let up = cam.upsample_nearest2d([h, w], None, None);
    Ok(guided_backprop(net, input, target) * up)
}
