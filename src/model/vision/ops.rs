//! What the four families share: torchvision's Conv2d, Linear and BatchNorm2d under
//! their state-dict names with torchvision's initialisations, computed in a `Compute`'s
//! kind and layout (weights cast on the fly, so gradients reach the float32 masters).

use super::super::fast::bn_act;
use super::super::fast::conv_train;
use super::super::fast::fused::{self, Act, Geometry};
use super::super::fast::packed_linear;
use super::super::fast::relu6;
use super::super::layers::{BatchNorm, BN_EPS};
use super::super::prepared::Prepared;
use super::super::{keep_layout, to_channels_last, Compute, InitScheme};
use crate::model::tap::Tap;
use tch::nn::{self, init::FanInOut, init::NonLinearity, init::NormalOrUniform, Init};
use tch::{Kind, Tensor};

/// How a layer's weight (and bias) are drawn.
#[derive(Clone, Copy, Debug)]
pub(super) enum LayerInit {
    /// PyTorch's own `reset_parameters`: weight kaiming_uniform_(a=sqrt(5)), i.e.
    /// U(+-1/sqrt(fan_in)), and bias U(+-1/sqrt(fan_in)).
    Default,
    /// kaiming_normal_(mode="fan_out", nonlinearity="relu"), bias 0 (convolutions of
    /// VGG, ResNet and MobileNetV2).
    KaimingFanOut,
    /// normal_(0, 0.01), bias 0 (the Linears of VGG and MobileNetV2).
    Normal001,
}

impl LayerInit {
    /// The weight's init and the bias's, for a layer of `fan_in` inputs per output.
    fn inits(self, fan_in: i64) -> (Init, Init) {
        match self {
            LayerInit::Default => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                // gain sqrt(2 / (1 + a^2)) with a = sqrt(5): bound sqrt(3) * gain / sqrt(fan_in).
                let ws = Init::Kaiming {
                    dist: NormalOrUniform::Uniform,
                    fan: FanInOut::FanIn,
                    non_linearity: NonLinearity::ExplicitGain((1.0f64 / 3.0).sqrt()),
                };
                (
                    ws,
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )
            }
            LayerInit::KaimingFanOut => (
                Init::Kaiming {
                    dist: NormalOrUniform::Normal,
                    fan: FanInOut::FanOut,
                    non_linearity: NonLinearity::ReLU,
                },
                Init::Const(0.0),
            ),
            LayerInit::Normal001 => (
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
                Init::Const(0.0),
            ),
        }
    }
}

/// `t` in the compute kind.
pub(super) fn cast(t: &Tensor, c: Compute) -> Tensor {
    if t.kind() == c.kind {
        t.shallow_clone()
    } else {
        t.to_kind(c.kind)
    }
}

/// The network's input in the compute kind and layout.
pub(super) fn input(xs: &Tensor, c: Compute) -> Tensor {
    let xs = cast(xs, c);
    if c.channels_last {
        to_channels_last(&xs)
    } else {
        xs
    }
}

/// A square nn.Conv2d: `weight` [cout, cin/groups, k, k] and, where it has one, `bias`.
#[derive(Debug)]
pub(super) struct Conv2d {
    ws: Tensor,
    bs: Option<Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
    /// Its inference weights, the BatchNorm after it folded in.
    prepared: Prepared,
    /// That weight in oneDNN's blocked layout, for the fused convolution.
    packed: Prepared,
}

/// A convolution's geometry: nn.Conv2d(cin, cout, k, stride, padding, groups, bias).
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvSpec {
    pub cin: i64,
    pub cout: i64,
    pub k: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub bias: bool,
}

impl ConvSpec {
    /// k x k, groups 1, with a bias (AlexNet's and VGG's).
    pub fn biased(cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> Self {
        ConvSpec {
            cin,
            cout,
            k,
            stride,
            padding,
            groups: 1,
            bias: true,
        }
    }

    /// k x k, no bias (ResNet's and MobileNetV2's, which a BatchNorm follows).
    pub fn plain(cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> Self {
        ConvSpec {
            bias: false,
            ..ConvSpec::biased(cin, cout, k, stride, padding)
        }
    }
}

impl Conv2d {
    pub fn new(p: nn::Path, s: ConvSpec, init: LayerInit) -> Self {
        let (ws_init, bs_init) = init.inits(s.cin / s.groups * s.k * s.k);
        Conv2d {
            ws: p.var("weight", &[s.cout, s.cin / s.groups, s.k, s.k], ws_init),
            bs: s.bias.then(|| p.var("bias", &[s.cout], bs_init)),
            stride: s.stride,
            padding: s.padding,
            groups: s.groups,
            prepared: Prepared::default(),
            packed: Prepared::default(),
        }
    }

    /// nn.Conv2d's forward in `c`'s kind, the weight in `c`'s layout.
    pub fn forward(&self, xs: &Tensor, c: Compute) -> Tensor {
        self.forward_with(xs, &self.ws, self.bs.as_ref(), c)
    }

    /// nn.Conv2d's forward in a pass (`train`: a training pass, whose weight gradient may
    /// come from `conv_train`'s kernel; the same function).
    pub fn forward_t(&self, xs: &Tensor, train: bool, c: Compute) -> Tensor {
        // Cast and laid out once, for whichever of the two runs.
        let (ws, bs) = self.computed(&self.ws, self.bs.as_ref(), c);
        if train {
            let out =
                conv_train::conv2d(xs, &ws, bs.as_ref(), self.stride, self.padding, self.groups);
            if let Some(out) = out {
                return out;
            }
        }
        self.convolve(xs, &ws, bs.as_ref())
    }

    /// The given (float32) weight and bias in `c`'s kind, the weight in its layout.
    fn computed(&self, ws: &Tensor, bs: Option<&Tensor>, c: Compute) -> (Tensor, Option<Tensor>) {
        // The variable itself in the compute's layout (a folded weight inherits it).
        keep_layout(&self.ws, c.channels_last);
        let mut ws = cast(ws, c);
        if c.channels_last {
            ws = to_channels_last(&ws);
        }
        (ws, bs.map(|b| cast(b, c)))
    }

    /// This convolution's geometry with the given (float32) weight and bias.
    fn forward_with(&self, xs: &Tensor, ws: &Tensor, bs: Option<&Tensor>, c: Compute) -> Tensor {
        let (ws, bs) = self.computed(ws, bs, c);
        self.convolve(xs, &ws, bs.as_ref())
    }

    /// This convolution's geometry with a weight and bias already in the compute's kind.
    fn convolve(&self, xs: &Tensor, ws: &Tensor, bs: Option<&Tensor>) -> Tensor {
        xs.conv2d(
            ws,
            bs,
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            self.groups,
        )
    }
}

/// nn.Linear: `weight` [out, in], `bias` [out].
#[derive(Debug)]
pub(super) struct Linear {
    ws: Tensor,
    bs: Tensor,
    /// Its weight and bias in the compute kind, kept between inference passes.
    prepared: Prepared,
}

impl Linear {
    pub fn new(p: nn::Path, cin: i64, cout: i64, init: LayerInit) -> Self {
        let (ws_init, bs_init) = init.inits(cin);
        Linear {
            ws: p.var("weight", &[cout, cin], ws_init),
            bs: p.var("bias", &[cout], bs_init),
            prepared: Prepared::default(),
        }
    }

    pub fn forward(&self, xs: &Tensor, c: Compute) -> Tensor {
        if c.kind == self.ws.kind() {
            if let Some(out) = self.packed(xs, c) {
                return out;
            }
            return xs.linear(&self.ws, Some(&self.bs));
        }
        // AlexNet's and VGG's classifiers hold most of their parameters (58 M and 120 M):
        // cast once while the weights stay the same, not on every pass (afresh under
        // autograd, where the cast carries the gradient to the float32 masters).
        let made = self
            .prepared
            .get(&[&self.ws, &self.bs], &[], (c.kind, false), || {
                vec![cast(&self.ws, c), cast(&self.bs, c)]
            });
        let [ws, bs] = <[Tensor; 2]>::try_from(made).expect("a weight and a bias were made");
        xs.linear(&ws, Some(&bs))
    }

    /// Float32 inference in the fast path's compute: MKL's GEMM with the weight packed once
    /// for this batch size and kept while the weight is unchanged (`packed_linear`); None
    /// under autograd, in the reference compute, or without the ops.
    fn packed(&self, xs: &Tensor, c: Compute) -> Option<Tensor> {
        if c == Compute::default() || xs.dim() != 2 || !fused::applies(xs) {
            return None;
        }
        if !packed_linear::available() {
            return None;
        }
        // Packed for the first batch's size, which is kept beside it: another batch size
        // runs the plain linear inside MKL's op.
        let made = self
            .prepared
            .get(&[&self.ws, &self.bs], &[], (Kind::Float, true), || {
                let backend = packed_linear::Backend::for_cpu(xs.size()[0]);
                packed_linear::pack(&self.ws, backend)
                    .map(packed_linear::Packed::into_tensors)
                    .unwrap_or_default()
            });
        let packed = packed_linear::Packed::from_tensors(made)?;
        packed_linear::linear(xs, &packed, &self.ws, &self.bs)
    }
}

/// nn.BatchNorm2d as torchvision builds it: weight 1, bias 0, running statistics 0 and
/// 1, `num_batches_tracked` an int64 scalar; eps 1e-5, momentum 0.1. Its float32
/// parameters serve any compute kind (libtorch's batch_norm takes a bf16 input with
/// float32 parameters and statistics, and updates the statistics in float32).
pub(super) fn batch_norm(p: nn::Path, c: i64) -> BatchNorm {
    let bn = BatchNorm::new(p, c, InitScheme::default());
    tch::no_grad(|| {
        let _ = bn.weight.shallow_clone().fill_(1.0);
    });
    bn
}

/// A convolution and the BatchNorm after it. At inference in the fast path's compute
/// (channels-last or bf16) the BatchNorm is folded into the convolution's weight and
/// bias, which saves a pass over the activations and is exact in real arithmetic; in
/// training there it runs on batch statistics as one fused function with what follows it
/// (`trained`); in float32 NCHW (torchvision's module as written, what the explanations
/// and parity tests run), the two run as written.
pub(super) fn conv_bn(
    conv: &Conv2d,
    bn: &BatchNorm,
    xs: &Tensor,
    train: bool,
    c: Compute,
) -> Tensor {
    conv_bn_add(conv, bn, xs, None, train, c)
}

/// BN(conv(xs)) + residual (MobileNetV2's inverted residual, in place as torchvision's
/// sum; BatchNorm's backward does not read its output).
pub(super) fn conv_bn_add(
    conv: &Conv2d,
    bn: &BatchNorm,
    xs: &Tensor,
    residual: Option<&Tensor>,
    train: bool,
    c: Compute,
) -> Tensor {
    let out = fused(conv, Some(bn), xs, train, c, residual, None)
        .or_else(|| trained(conv, bn, xs, residual, None, train, c));
    if let Some(out) = out {
        return out;
    }
    let mut out = conv_bn_plain(conv, bn, xs, train, c);
    if let Some(r) = residual {
        let _ = out.g_add_(r);
    }
    out
}

/// BN(conv(xs)) as written, or folded at inference in the fast path's compute.
fn conv_bn_plain(conv: &Conv2d, bn: &BatchNorm, xs: &Tensor, train: bool, c: Compute) -> Tensor {
    if train || c == Compute::default() {
        return bn.forward_t(&conv.forward(xs, c), train);
    }
    let (ws, bs) = inference_weights(conv, Some(bn), c);
    conv.forward_with(xs, &ws, bs.as_ref(), c)
}

/// act(BN(conv(xs)) + residual) in training in the fast path's compute, BatchNorm (batch
/// statistics), the sum and the activation as one autograd function (`bn_act`), equal
/// to the plain ops; None elsewhere, and the caller runs those.
fn trained(
    conv: &Conv2d,
    bn: &BatchNorm,
    xs: &Tensor,
    residual: Option<&Tensor>,
    act: Option<Act>,
    train: bool,
    c: Compute,
) -> Option<Tensor> {
    if !train || c == Compute::default() || !bn_act::applies(xs) {
        return None;
    }
    bn_act::bn_act(&conv.forward_t(xs, train, c), bn, residual, act)
}

/// The convolution's weight and bias with the BatchNorm after it folded in (its running
/// statistics): w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
fn fold(conv: &Conv2d, bn: &BatchNorm) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let scale = &bn.weight * (&bn.running_var + BN_EPS).rsqrt();
        let ws = &conv.ws * scale.view([-1, 1, 1, 1]);
        let shift = match &conv.bs {
            Some(b) => (b - &bn.running_mean) * &scale,
            None => -(&bn.running_mean * &scale),
        };
        (ws, shift + &bn.bias)
    })
}

/// What a convolution's inference weights are made from: its parameters, and the
/// BatchNorm's parameters and statistics.
fn sources<'a>(conv: &'a Conv2d, bn: Option<&'a BatchNorm>) -> [Vec<&'a Tensor>; 2] {
    let mut weights = vec![&conv.ws];
    weights.extend(&conv.bs);
    let stats = match bn {
        Some(bn) => vec![&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var],
        None => Vec::new(),
    };
    [weights, stats]
}

/// The convolution's weight and bias for inference in `c` (the BatchNorm after it folded
/// in, in `c`'s kind and layout), kept on the convolution until a parameter changes.
fn inference_weights(
    conv: &Conv2d,
    bn: Option<&BatchNorm>,
    c: Compute,
) -> (Tensor, Option<Tensor>) {
    // The variable itself in the compute's layout, before its storage keys what is kept.
    keep_layout(&conv.ws, c.channels_last);
    let [weights, stats] = sources(conv, bn);
    let mut made = conv
        .prepared
        .get(&weights, &stats, (c.kind, c.channels_last), || {
            let (ws, bs) = match bn {
                Some(bn) => {
                    let (ws, bs) = fold(conv, bn);
                    (ws, Some(bs))
                }
                None => (
                    conv.ws.shallow_clone(),
                    conv.bs.as_ref().map(Tensor::shallow_clone),
                ),
            };
            let mut ws = cast(&ws, c);
            if c.channels_last {
                ws = to_channels_last(&ws);
            }
            [ws].into_iter().chain(bs.map(|b| cast(&b, c))).collect()
        })
        .into_iter();
    let ws = made.next().expect("a weight was made");
    (ws, made.next())
}

/// act(conv(xs) + residual), the BatchNorm after the convolution folded in, as one fused
/// inference convolution (`act` None: no activation); None where that does not apply
/// (training, the reference compute, autograd on: `fused::applies`), and the caller runs
/// the plain ops.
fn fused(
    conv: &Conv2d,
    bn: Option<&BatchNorm>,
    xs: &Tensor,
    train: bool,
    c: Compute,
    residual: Option<&Tensor>,
    act: Option<Act>,
) -> Option<Tensor> {
    if train || c == Compute::default() || !fused::applies(xs) {
        return None;
    }
    let (ws, bs) = inference_weights(conv, bn, c);
    let geometry = Geometry {
        stride: conv.stride,
        padding: conv.padding,
        groups: conv.groups,
    };
    let ws = packed_weight(conv, bn, &ws, xs, geometry, c).unwrap_or(ws);
    fused::conv(xs, &ws, bs.as_ref(), residual, geometry, act)
}

/// The inference weight `ws` in oneDNN's blocked layout (`fused::prepack`, for inputs
/// shaped like the first `xs`), kept on the convolution while its sources are the same;
/// None where it is not prepacked (bf16), and the fused op takes `ws`.
fn packed_weight(
    conv: &Conv2d,
    bn: Option<&BatchNorm>,
    ws: &Tensor,
    xs: &Tensor,
    g: Geometry,
    c: Compute,
) -> Option<Tensor> {
    let [weights, stats] = sources(conv, bn);
    let made = conv
        .packed
        .get(&weights, &stats, (c.kind, c.channels_last), || {
            fused::prepack(ws, &xs.size(), g).into_iter().collect()
        });
    made.into_iter().next()
}

/// ReLU(BN(conv(xs))), through the tap.
pub(super) fn conv_bn_relu(
    tap: &mut dyn Tap,
    conv: &Conv2d,
    bn: &BatchNorm,
    xs: &Tensor,
    train: bool,
    c: Compute,
) -> Tensor {
    conv_bn_add_relu(tap, conv, bn, xs, None, train, c)
}

/// ReLU(BN(conv(xs)) + residual), through the tap: a ResNet block's end (the sum in
/// place, as torchvision's `out += identity`; BatchNorm's backward does not read its
/// output).
pub(super) fn conv_bn_add_relu(
    tap: &mut dyn Tap,
    conv: &Conv2d,
    bn: &BatchNorm,
    xs: &Tensor,
    residual: Option<&Tensor>,
    train: bool,
    c: Compute,
) -> Tensor {
    if !tap.reads_relu_input() {
        let out = fused(conv, Some(bn), xs, train, c, residual, Some(Act::Relu))
            .or_else(|| trained(conv, bn, xs, residual, Some(Act::Relu), train, c));
        if let Some(out) = out {
            return tap.relu(&out, out.shallow_clone());
        }
    }
    let mut pre = conv_bn_plain(conv, bn, xs, train, c);
    if let Some(r) = residual {
        let _ = pre.g_add_(r);
    }
    relu(tap, pre)
}

/// ReLU(conv(xs)), through the tap (AlexNet's and VGG's features).
pub(super) fn conv_relu(
    tap: &mut dyn Tap,
    conv: &Conv2d,
    xs: &Tensor,
    train: bool,
    c: Compute,
) -> Tensor {
    if !tap.reads_relu_input() {
        if let Some(out) = fused(conv, None, xs, train, c, None, Some(Act::Relu)) {
            return tap.relu(&out, out.shallow_clone());
        }
    }
    relu(tap, conv.forward_t(xs, train, c))
}

/// ReLU6(BN(conv(xs))), MobileNetV2's Conv2dNormActivation (not an nn.ReLU, so no tap).
pub(super) fn conv_bn_relu6(
    conv: &Conv2d,
    bn: &BatchNorm,
    xs: &Tensor,
    train: bool,
    c: Compute,
) -> Tensor {
    let out = fused(conv, Some(bn), xs, train, c, None, Some(Act::Relu6))
        .or_else(|| trained(conv, bn, xs, None, Some(Act::Relu6), train, c));
    if let Some(out) = out {
        return out;
    }
    // In place, as torchvision's nn.ReLU6(inplace=True): same values and gradients.
    relu6::relu6_(conv_bn_plain(conv, bn, xs, train, c))
}

/// An nn.ReLU call, through the tap.
pub(super) fn relu(tap: &mut dyn Tap, mut pre: Tensor) -> Tensor {
    if tap.reads_relu_input() {
        let out = pre.relu();
        return tap.relu(&pre, out);
    }
    let out = pre.relu_();
    tap.relu(&pre, out)
}

/// nn.MaxPool2d(k, stride, padding).
pub(super) fn max_pool(xs: &Tensor, k: i64, stride: i64, padding: i64) -> Tensor {
    xs.max_pool2d([k; 2], [stride; 2], [padding; 2], [1, 1], false)
}

/// nn.MaxPool2d(2, 2) in a pass; a training pass's through `fast::max_pool2`, the same
/// values and gradients.
pub(super) use super::super::fast::max_pool2::max_pool2_t;

/// The classifier's output as float32 logits, whatever the compute kind.
pub(super) fn logits_f32(t: Tensor) -> Tensor {
    if t.kind() == Kind::Float {
        t
    } else {
        t.to_kind(Kind::Float)
    }
}
