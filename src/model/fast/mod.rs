//! The network as it runs for training and inference: the same function as
//! `super::reference`, computed faster. Each departure is exact in real arithmetic and
//! tested equal to the reference in float32:
//! - BatchNorm folded into the convolution at inference;
//! - 2x2 max pooling before the ReLU where only the pooled block output is used, and in
//!   bf16 training BatchNorm, pooling and ReLU as one function (`bn_pool`); in float32
//!   NCHW training the pooling in vector loops (`max_pool2`), bitwise libtorch's;
//! - in the torchvision networks' training, BatchNorm, the residual sum and ReLU or ReLU6
//!   as one function (`bn_act`), and ReLU6 in place without autograd's copy (`relu6`);
//! - at float32 inference, the classifiers' Linears with their weights prepared once, for
//!   MKL on Intel CPUs and for oneDNN on AMD's (`packed_linear`), and the convolutions'
//!   weights in oneDNN's blocked layout once (`fused::prepack`);
//! - in float32 channels-last training below AVX-512, the stride-1 convolutions' weight
//!   gradient from flarecast's AVX2 kernel (`conv_train`), the same sums in the same order;
//! - the first block (one input channel) as one pass that writes only its pooled output,
//!   at inference and in bf16 training (`first_block`);
//! - activations channels-last (NHWC strides; NCHW in the training passes where
//!   `Compute::for_device` says that is faster) and in the compute precision (bf16 casts
//!   of the float32 weights, autocast-style), logits always float32;
//! - the attention block's algebra rewritten as matmuls (`attention`).

mod attention;
pub(crate) mod bn_act;
mod bn_pool;
pub(crate) mod conv_train;
mod first_block;
pub mod fused;
pub(crate) mod max_pool2;
pub(crate) mod packed_linear;
pub(crate) mod relu6;

use super::layers::{global, max_pool2, Conv, ConvBlock, Layers, BN_EPS};
use super::layout::{keep_layout, to_channels_last};
use super::{Arch, Output, Precision};
use max_pool2::max_pool2_t;
use tch::{Kind, Tensor};

/// How a forward pass computes: the float kind of activations and whether 4-d tensors are
/// laid out channels-last (NHWC in memory), which the CPU and cuDNN kernels mostly prefer.
/// Training passes may take another layout than inference passes (`for_device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compute {
    pub kind: Kind,
    /// Inference passes' layout: channels-last or NCHW.
    pub channels_last: bool,
    /// Training passes' layout.
    pub train_channels_last: bool,
}

impl Default for Compute {
    fn default() -> Self {
        Compute::new(Kind::Float, false)
    }
}

impl Compute {
    /// `kind`, one layout for every pass.
    pub fn new(kind: Kind, channels_last: bool) -> Self {
        Compute {
            kind,
            channels_last,
            train_channels_last: channels_last,
        }
    }

    /// The layout and kind that run fastest for `arch` at `precision` on `device`:
    /// channels-last, except the training passes of `trains_faster_nchw`.
    pub fn for_device(device: tch::Device, precision: Precision, arch: Arch) -> Self {
        Compute {
            train_channels_last: !trains_faster_nchw(device, precision, arch),
            ..Compute::new(precision.kind(), true)
        }
    }

    /// The compute of one pass: a training pass (BatchNorm on batch statistics) in the
    /// training layout, any other in the inference layout.
    pub fn pass(self, train: bool) -> Self {
        Compute {
            channels_last: if train {
                self.train_channels_last
            } else {
                self.channels_last
            },
            ..self
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

/// Whether `arch` trains faster in NCHW than channels-last: in float32 on a CPU whose
/// convolutions run below AVX-512 (AVX2, or an ISA cap), the paper's attention network.
/// On an AVX2-only AMD EPYC (Zen 3) oneDNN's channels-last weight gradient made the
/// networks that convolve at full resolution (the paper's two, VGG16) train up to 20-35 %
/// slower than NCHW, in flarecast and in PyTorch alike. With that gradient from
/// `conv_train`'s kernel, channels-last became the faster layout there for the standard
/// CNN (+17 %, five alternated pairs) and VGG16 (+5 %, four of five pairs); the attention
/// network stayed at parity (NCHW ahead in four of five pairs), and keeps NCHW
/// (docs/performance.md).
fn trains_faster_nchw(device: tch::Device, precision: Precision, arch: Arch) -> bool {
    device == tch::Device::Cpu
        && precision == Precision::F32
        && arch == Arch::Attention
        && !crate::hardware::cpu_convolutions_avx512()
}

/// A convolution whose float32 weights are cast to the compute precision on the fly (the
/// cast is differentiable, so gradients reach the float32 master weights).
fn conv(layer: &Conv, xs: &Tensor, ws: &Tensor, bs: Option<&Tensor>, c: Compute) -> Tensor {
    let ws = c.weight(ws);
    let bs = bs.map(|b| c.cast(b));
    layer.with(xs, &ws, bs.as_ref())
}

/// The block's own convolution in a training pass, its weight gradient from
/// `conv_train`'s kernel where that applies (the same function).
fn trained_conv(layer: &Conv, xs: &Tensor, c: Compute) -> Tensor {
    let ws = c.weight(&layer.ws);
    let bs = layer.bs.as_ref().map(|b| c.cast(b));
    conv_train::conv2d(xs, &ws, bs.as_ref(), layer.stride, layer.padding, 1)
        .unwrap_or_else(|| layer.with(xs, &ws, bs.as_ref()))
}

/// conv + BN. Training runs BatchNorm on batch statistics; inference folds it into the
/// convolution, one pass fewer over the activations:
/// w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
fn pre_activation(block: &ConvBlock, xs: &Tensor, train: bool, c: Compute) -> Tensor {
    let layer = &block.conv;
    keep_layout(&layer.ws, c.channels_last);
    if train {
        let y = trained_conv(layer, xs, c);
        return block.bn.forward_t(&y, train);
    }
    let (ws, bias) = inference_weights(block, c);
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
    let (ws, bs) = inference_weights(block, c);
    let geometry = fused::Geometry {
        stride: layer.stride,
        padding: layer.padding,
        groups: 1,
    };
    // Prepacked for oneDNN once while the weights are the same (`fused::prepack`).
    let [weights, stats] = sources(block);
    let packed = block
        .packed
        .get(&weights, &stats, (c.kind, c.channels_last), || {
            fused::prepack(&ws, &xs.size(), geometry)
                .into_iter()
                .collect()
        });
    let ws = packed.into_iter().next().unwrap_or(ws);
    fused::conv(xs, &ws, Some(&bs), None, geometry, Some(fused::Act::Relu))
}

/// What the block's inference weights are made from: the convolution's parameters, and
/// the BatchNorm's parameters and statistics.
fn sources(block: &ConvBlock) -> [Vec<&Tensor>; 2] {
    let (layer, bn) = (&block.conv, &block.bn);
    let mut weights = vec![&layer.ws];
    weights.extend(&layer.bs);
    let stats = vec![&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var];
    [weights, stats]
}

/// The block's folded weight and bias in `c`'s kind and layout, kept on the block until
/// a parameter changes.
fn inference_weights(block: &ConvBlock, c: Compute) -> (Tensor, Tensor) {
    // The variable itself in the compute's layout, before its storage keys what is kept.
    keep_layout(&block.conv.ws, c.channels_last);
    let [weights, stats] = sources(block);
    let made = block
        .prepared
        .get(&weights, &stats, (c.kind, c.channels_last), || {
            let (ws, bs) = folded(block);
            vec![c.weight(&ws), c.cast(&bs)]
        });
    let [ws, bs] = <[Tensor; 2]>::try_from(made).expect("a weight and a bias were made");
    (ws, bs)
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
    if let Some(out) = first_block_pooled(block, xs, train, c) {
        return out;
    }
    // At inference the ReLU costs nothing inside the fused convolution; pooling after it
    // gives the same values.
    if let Some(out) = fused_block(block, xs, train, c) {
        return max_pool2(&out);
    }
    if train {
        let layer = &block.conv;
        keep_layout(&layer.ws, c.channels_last);
        if let Some(out) = first_block_trained(block, xs, c) {
            return out;
        }
        let y = trained_conv(layer, xs, c);
        if let Some(out) = bn_pool::bn_pool_relu(&y, &block.bn) {
            return out;
        }
        return max_pool2_t(&block.bn.forward_t(&y, train), train).relu();
    }
    max_pool2(&pre_activation(block, xs, train, c)).relu()
}

/// The first block (one input channel, 3x3, padding 1) at inference, BatchNorm folded,
/// as one pass writing only the pooled output (`first_block`), where it applies.
fn first_block_pooled(block: &ConvBlock, xs: &Tensor, train: bool, c: Compute) -> Option<Tensor> {
    if train || !takes_first_block(block, xs, c) {
        return None;
    }
    let (ws, bs) = folded(block);
    first_block::pooled(xs, &c.cast(&ws), &c.cast(&bs))
}

/// Whether `block` on `xs` is a first block (one input channel, stride 1, padding 1) in
/// a channels-last computation, checked before its weights are folded or cast.
fn takes_first_block(block: &ConvBlock, xs: &Tensor, c: Compute) -> bool {
    let layer = &block.conv;
    c.channels_last && layer.stride == 1 && layer.padding == 1 && xs.size().get(1) == Some(&1)
}

/// The first block in (bf16) training as one autograd function that never writes the
/// full-resolution activation (`first_block::train`), where it applies.
fn first_block_trained(block: &ConvBlock, xs: &Tensor, c: Compute) -> Option<Tensor> {
    let layer = &block.conv;
    if !takes_first_block(block, xs, c) {
        return None;
    }
    let bs = layer.bs.as_ref()?;
    first_block::train(xs, &c.weight(&layer.ws), &c.cast(bs), &block.bn)
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
    let l2 = block_out(&b[3], &max_pool2_t(&l1, train), train, c);
    let l3 = block_out(&b[4], &max_pool2_t(&l2, train), train, c);
    let features = block_out(&b[5], &max_pool2_t(&l3, train), train, c);
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
    use tch::Device;

    #[test]
    fn a_pass_takes_its_own_layout() {
        let c = Compute {
            kind: Kind::Float,
            channels_last: true,
            train_channels_last: false,
        };
        assert!(!c.pass(true).channels_last);
        assert!(c.pass(false).channels_last);
        assert_eq!(c.pass(true).kind, Kind::Float);
        let one = Compute::new(Kind::BFloat16, true);
        assert!(one.pass(true).channels_last && one.pass(false).channels_last);
    }

    #[test]
    fn only_the_attention_networks_float32_training_below_avx512_runs_nchw() {
        let avx512 = crate::hardware::cpu_convolutions_avx512();
        for arch in Arch::ALL {
            for precision in [Precision::F32, Precision::Bf16] {
                let c = Compute::for_device(Device::Cpu, precision, arch);
                assert!(c.channels_last, "{arch:?} {precision:?}: inference");
                let nchw = precision == Precision::F32 && !avx512 && arch == Arch::Attention;
                assert_eq!(c.train_channels_last, !nchw, "{arch:?} {precision:?}");
                let cuda = Compute::for_device(Device::Cuda(0), precision, arch);
                assert!(
                    cuda.train_channels_last && cuda.channels_last,
                    "{arch:?} on CUDA"
                );
            }
        }
    }
}
