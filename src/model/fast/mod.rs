//! The network as it runs for training and inference: the same function as
//! `super::reference`, computed faster. Each departure is exact in real arithmetic and
//! tested equal to the reference in float32:
//! - BatchNorm folded into the convolution at inference;
//! - 2x2 max pooling before the ReLU where only the pooled block output is used;
//! - activations channels-last (NHWC strides) and in the compute precision (bf16 casts
//!   of the float32 weights, autocast-style), logits always float32;
//! - the attention block's algebra rewritten as matmuls (`attention`).

mod attention;
pub mod fused;

use super::layers::{global, max_pool2, Conv, ConvBlock, Layers, BN_EPS};
use super::{Output, Precision};
use tch::{Kind, Tensor};

/// How a forward pass computes: the float kind of activations and whether 4-d tensors are
/// laid out channels-last (NHWC in memory), which the CPU and cuDNN kernels prefer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compute {
    pub kind: Kind,
    pub channels_last: bool,
}

impl Default for Compute {
    fn default() -> Self {
        Compute {
            kind: Kind::Float,
            channels_last: false,
        }
    }
}

impl Compute {
    /// The layout and kind that run fastest for `precision` on `device`.
    pub fn for_device(device: tch::Device, precision: Precision) -> Self {
        let _ = device;
        Compute {
            kind: precision.kind(),
            channels_last: true,
        }
    }

    fn cast(&self, t: &Tensor) -> Tensor {
        if t.kind() == self.kind {
            t.shallow_clone()
        } else {
            t.to_kind(self.kind)
        }
    }

    /// A conv weight in the compute kind and layout.
    fn weight(&self, w: &Tensor) -> Tensor {
        let w = self.cast(w);
        if self.channels_last {
            to_channels_last(&w)
        } else {
            w
        }
    }
}

/// Same values and shape, NHWC strides: libtorch picks its channels-last kernels from them
/// (tch exposes no memory-format argument). The strides are set explicitly: a permute and
/// `contiguous()` leaves a one-channel tensor (the network's input, conv_block1's weight)
/// in NCHW, since contiguity ignores size-1 dimensions, and the whole first block then
/// runs in NCHW with a reorder of its 64-channel output forward and backward.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    let Ok((n, c, h, w)) = t.size4() else {
        return t.shallow_clone();
    };
    let nhwc = [h * w * c, 1, w * c, c];
    if t.stride() == nhwc {
        return t.shallow_clone();
    }
    let mut out = Tensor::empty_strided([n, c, h, w], nhwc, (t.kind(), t.device()));
    // copy_ is differentiable: gradients reach `t` (a weight) through it.
    out.copy_(t);
    out
}

/// Keeps a convolution's weight variable stored in the layout a pass computes in. A
/// convolution whose weight is not in its input's layout copies the weight on every pass,
/// and its gradient back; torch's users avoid that with one `model.to(memory_format=
/// torch.channels_last)`. Only the strides change: the values, the autograd leaf and
/// every handle to it (the optimizer's, the VarStore's) stay the same, and saving writes
/// the logical order. The reference path calls it with `false`, so it always runs the
/// NCHW weights its parity is tested with.
pub fn keep_layout(var: &Tensor, channels_last: bool) {
    let Ok((_, c, h, w)) = var.size4() else {
        return;
    };
    let strides = if channels_last {
        [h * w * c, 1, w * c, c]
    } else {
        [c * h * w, h * w, w, 1]
    };
    if var.stride() == strides {
        return;
    }
    tch::no_grad(|| {
        let mut relaid = Tensor::empty_strided(var.size(), strides, (var.kind(), var.device()));
        relaid.copy_(var);
        let mut handle = var.shallow_clone();
        handle.set_data(&relaid);
    });
}

/// A convolution whose float32 weights are cast to the compute precision on the fly (the
/// cast is differentiable, so gradients reach the float32 master weights).
fn conv(layer: &Conv, xs: &Tensor, ws: &Tensor, bs: Option<&Tensor>, c: Compute) -> Tensor {
    let ws = c.weight(ws);
    let bs = bs.map(|b| c.cast(b));
    layer.with(xs, &ws, bs.as_ref())
}

/// conv + BN. Training runs BatchNorm on batch statistics; inference folds it into the
/// convolution, one pass fewer over the activations:
/// w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
fn pre_activation(block: &ConvBlock, xs: &Tensor, train: bool, c: Compute) -> Tensor {
    let layer = &block.conv;
    keep_layout(&layer.ws, c.channels_last);
    if train {
        let y = conv(layer, xs, &layer.ws, layer.bs.as_ref(), c);
        return block.bn.forward_t(&y, train);
    }
    let (ws, bias) = folded(block);
    conv(layer, xs, &ws, Some(&bias), c)
}

fn block_out(block: &ConvBlock, xs: &Tensor, train: bool, c: Compute) -> Tensor {
    if let Some(out) = fused_block(block, xs, train, c) {
        return out;
    }
    pre_activation(block, xs, train, c).relu()
}

/// conv + BN + ReLU as one fused convolution at inference (BatchNorm folded), where
/// `fused` applies.
fn fused_block(block: &ConvBlock, xs: &Tensor, train: bool, c: Compute) -> Option<Tensor> {
    if train || !fused::applies(xs) {
        return None;
    }
    let layer = &block.conv;
    keep_layout(&layer.ws, c.channels_last);
    let (ws, bs) = folded(block);
    let geometry = fused::Geometry {
        stride: layer.stride,
        padding: layer.padding,
        groups: 1,
    };
    fused::conv(
        xs,
        &c.weight(&ws),
        Some(&c.cast(&bs)),
        None,
        geometry,
        fused::Act::Relu,
    )
}

/// The convolution's weight and bias with the BatchNorm after it folded in (its running
/// statistics): w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
fn folded(block: &ConvBlock) -> (Tensor, Tensor) {
    let (layer, bn) = (&block.conv, &block.bn);
    let scale = &bn.weight * (&bn.running_var + BN_EPS).rsqrt();
    let bias = match &layer.bs {
        Some(b) => (b - &bn.running_mean) * &scale + &bn.bias,
        None => -&bn.running_mean * &scale + &bn.bias,
    };
    (&layer.ws * scale.view([-1, 1, 1, 1]), bias)
}

/// conv + BN, then 2x2 max pooling, then ReLU: equal to pooling the block's output
/// (ReLU is monotonic, and the gradient reaches the same arg-max positions), with
/// the ReLU and its backward on a quarter of the values. Blocks 1 and 2 are only
/// seen pooled, and theirs are the largest activations.
fn block_pooled(block: &ConvBlock, xs: &Tensor, train: bool, c: Compute) -> Tensor {
    // At inference the ReLU costs nothing inside the fused convolution; pooling after it
    // gives the same values.
    if let Some(out) = fused_block(block, xs, train, c) {
        return max_pool2(&out);
    }
    max_pool2(&pre_activation(block, xs, train, c)).relu()
}

/// The forward pass of `layers` on [N,1,H,W] inputs in [0,1].
pub(super) fn forward_t(layers: &Layers, c: Compute, xs: &Tensor, train: bool) -> Output {
    let mut xs = c.cast(xs);
    if c.channels_last {
        xs = to_channels_last(&xs);
    }
    let b = &layers.blocks;
    let x = block_pooled(&b[0], &xs, train, c);
    let x = block_pooled(&b[1], &x, train, c);
    let Some(attn) = &layers.attention else {
        // The standard CNN only sees blocks 3-5 pooled, too.
        let x = block_pooled(&b[2], &x, train, c);
        let x = block_pooled(&b[3], &x, train, c);
        let x = block_pooled(&b[4], &x, train, c);
        let features = block_out(&b[5], &x, train, c);
        keep_layout(&layers.dense.ws, c.channels_last);
        let g = global(conv(
            &layers.dense,
            &features,
            &layers.dense.ws,
            layers.dense.bs.as_ref(),
            c,
        ));
        return Output {
            logits: classify_f32(layers, c, &g.flatten(1, -1)),
            maps: None,
            features,
            l3: None,
        };
    };
    let l1 = block_out(&b[2], &x, train, c);
    let l2 = block_out(&b[3], &max_pool2(&l1), train, c);
    let l3 = block_out(&b[4], &max_pool2(&l2), train, c);
    let features = block_out(&b[5], &max_pool2(&l3), train, c);
    keep_layout(&layers.dense.ws, c.channels_last);
    let g = global(conv(
        &layers.dense,
        &features,
        &layers.dense.ws,
        layers.dense.bs.as_ref(),
        c,
    ));
    let (feats, maps) = attention::forward(attn, [&l1, &l2, &l3], &g, c.kind);
    Output {
        logits: classify_f32(layers, c, &feats),
        maps: Some(maps.map(|m| m.to_kind(Kind::Float))),
        features,
        l3: Some(l3),
    }
}

/// The classifier, always returning float32 logits (the loss wants full precision).
fn classify_f32(layers: &Layers, c: Compute, feats: &Tensor) -> Tensor {
    let ws = c.cast(&layers.classify.ws);
    let bs = layers.classify.bs.as_ref().map(|b| c.cast(b));
    feats.linear(&ws, bs.as_ref()).to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_strides_even_for_one_channel() {
        let x = Tensor::arange(2 * 3 * 4, (Kind::Float, tch::Device::Cpu)).view([2, 1, 3, 4]);
        let cl = to_channels_last(&x);
        assert_eq!(cl.stride(), vec![12, 1, 4, 1]);
        assert!(cl.equal(&x));
        let y = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, tch::Device::Cpu)).view([2, 3, 4, 5]);
        let cl = to_channels_last(&y);
        assert_eq!(cl.stride(), vec![60, 1, 15, 3]);
        assert!(cl.equal(&y));
    }
}
