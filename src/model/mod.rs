//! The paper's networks: `AttnNet` with `attention: true` (three linear-attention
//! estimators on l1, l2, l3) or `false` (the standard CNN), with the reference's
//! parameter names so PyTorch state_dicts load unchanged.

mod attention;
pub mod precision;
pub mod pth;
pub mod weights;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

pub use precision::{
    choose as choose_precision, choose_all as choose_precisions, describe as describe_precisions,
    Chosen, PrecisionChoice,
};
pub use weights::{load_model, save_model, LoadedModel, ModelMeta};

/// Which of the paper's two networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Attention,
    StandardCnn,
}

impl Arch {
    pub fn from_attention(attention: bool) -> Self {
        if attention {
            Arch::Attention
        } else {
            Arch::StandardCnn
        }
    }

    pub fn is_attention(self) -> bool {
        self == Arch::Attention
    }

    /// The name used in JSON output and checkpoint directories.
    pub fn name(self) -> &'static str {
        self.spelled_name()
    }

    /// The reference's checkpoint sub-directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Arch::Attention => "attention",
            Arch::StandardCnn => "no_attention",
        }
    }
}

impl Spelled for Arch {
    const SPELLINGS: &'static [(Self, &'static [&'static str])] = &[
        (Arch::Attention, &["attention", "attn"]),
        (
            Arch::StandardCnn,
            &["standard_cnn", "standard", "cnn", "noattn", "no_attention"],
        ),
    ];
    const WHAT: &'static str = "architecture";
    const EXPECTED: &'static str = "attention or standard";
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_spelled(s)
    }
}

/// An option's values: the first spelling is the name printed, and every spelling
/// (lower case) is accepted, case-insensitively.
trait Spelled: Copy + PartialEq + 'static {
    const SPELLINGS: &'static [(Self, &'static [&'static str])];
    /// What the value is, and the choices, for the error message.
    const WHAT: &'static str;
    const EXPECTED: &'static str;

    fn spelled_name(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(value, _)| *value == self)
            .map_or("", |(_, names)| names[0])
    }

    fn parse_spelled(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::SPELLINGS
            .iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|&(value, _)| value)
            .ok_or_else(|| {
                anyhow::anyhow!("unknown {} {s:?}: expected {}", Self::WHAT, Self::EXPECTED)
            })
    }
}

/// Weight initialisation schemes of the reference (`initialize.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// kaiming_uniform_(fan_in, relu) for conv/linear, BN weight U(0,1); the default.
    #[default]
    KaimingUniform,
    /// kaiming_normal_(fan_in, relu), BN weight N(0, 0.01).
    KaimingNormal,
}

/// Smallest input side the network accepts: below 192 the 3x3/stride-3 block and the
/// 2x2/stride-2 dense layer leave nothing to convolve.
pub const MIN_IM_SIZE: i64 = 192;

/// Largest input side accepted: twice the paper's largest (512). The attention network
/// holds 64 float32 channels at full resolution, 1 GiB per image at this size already.
pub const MAX_IM_SIZE: i64 = 2048;

/// Refuses an image side outside what the network can run.
pub fn check_im_size(size: i64) -> Result<()> {
    if !(MIN_IM_SIZE..=MAX_IM_SIZE).contains(&size) {
        bail!("image size {size} is outside {MIN_IM_SIZE}..={MAX_IM_SIZE}");
    }
    Ok(())
}

/// Conv 3x3 + BatchNorm (+ ReLU in forward): one `conv_blockK` of the reference,
/// parameters `conv_blockK.0.*` and `conv_blockK.1.*`.
#[derive(Debug)]
struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
}

/// A 2-d convolution whose float32 weights are cast to the compute precision on the fly
/// (autocast-style mixed precision: the cast is differentiable, so gradients reach the
/// float32 master weights).
#[derive(Debug)]
struct Conv {
    ws: Tensor,
    bs: Option<Tensor>,
    stride: i64,
    padding: i64,
}

/// A square convolution's channels, kernel side, stride and padding.
#[derive(Clone, Copy, Debug)]
struct ConvShape {
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
}

impl ConvShape {
    /// 3x3, stride 1, padding 1: conv_block1-5.
    fn same(cin: i64, cout: i64) -> Self {
        ConvShape {
            cin,
            cout,
            k: 3,
            stride: 1,
            padding: 1,
        }
    }

    /// A k x k convolution of 512 channels with stride k: conv_block6 (3) and dense (2).
    fn strided_512(k: i64) -> Self {
        ConvShape {
            cin: 512,
            cout: 512,
            k,
            stride: k,
            padding: 0,
        }
    }
}

impl Conv {
    fn new(p: nn::Path, shape: ConvShape, init: InitScheme) -> Self {
        let ConvShape {
            cin,
            cout,
            k,
            stride,
            padding,
        } = shape;
        let c = nn::conv2d(
            p,
            cin,
            cout,
            k,
            nn::ConvConfig {
                stride,
                padding,
                ws_init: conv_init(init),
                bs_init: Init::Const(0.0),
                ..Default::default()
            },
        );
        Conv {
            ws: c.ws,
            bs: c.bs,
            stride,
            padding,
        }
    }

    fn forward(&self, xs: &Tensor, compute: Compute) -> Tensor {
        let ws = compute.weight(&self.ws);
        let bs = self.bs.as_ref().map(|b| compute.cast(b));
        xs.conv2d(
            &ws,
            bs.as_ref(),
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            1,
        )
    }
}

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

/// BatchNorm2d with the reference's buffers, `num_batches_tracked` included, so
/// checkpoints round-trip key for key.
#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm {
    fn new(p: nn::Path, c: i64, init: InitScheme) -> Self {
        let ws = match init {
            InitScheme::KaimingUniform => Init::Uniform { lo: 0.0, up: 1.0 },
            InitScheme::KaimingNormal => Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
        };
        BatchNorm {
            weight: p.var("weight", &[c], ws),
            bias: p.var("bias", &[c], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[c]),
            running_var: p.ones_no_train("running_var", &[c]),
            num_batches_tracked: p.add(
                "num_batches_tracked",
                Tensor::zeros([], (Kind::Int64, p.device())),
                false,
            ),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

fn conv_init(init: InitScheme) -> Init {
    let dist = match init {
        InitScheme::KaimingUniform => nn::init::NormalOrUniform::Uniform,
        InitScheme::KaimingNormal => nn::init::NormalOrUniform::Normal,
    };
    Init::Kaiming {
        dist,
        fan: nn::init::FanInOut::FanIn,
        non_linearity: nn::init::NonLinearity::ReLU,
    }
}

impl ConvBn {
    fn new(p: nn::Path, shape: ConvShape, init: InitScheme) -> Self {
        ConvBn {
            conv: Conv::new(&p / "0", shape, init),
            bn: BatchNorm::new(&p / "1", shape.cout, init),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool, compute: Compute) -> Tensor {
        self.pre_activation(xs, train, compute).relu()
    }

    /// conv + BN, then 2x2 max pooling, then ReLU: equal to pooling the block's output
    /// (ReLU is monotonic, and the gradient reaches the same arg-max positions), with
    /// the ReLU and its backward on a quarter of the values. Blocks 1 and 2 are only
    /// seen pooled, and theirs are the largest activations.
    fn forward_pooled(&self, xs: &Tensor, train: bool, compute: Compute) -> Tensor {
        max_pool2(&self.pre_activation(xs, train, compute)).relu()
    }

    fn pre_activation(&self, xs: &Tensor, train: bool, compute: Compute) -> Tensor {
        if train {
            self.bn.forward_t(&self.conv.forward(xs, compute), train)
        } else {
            // Inference: BatchNorm folded into the convolution, one pass fewer over the
            // activations. w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
            let bn = &self.bn;
            let scale = &bn.weight * (&bn.running_var + BN_EPS).rsqrt();
            let bias = match &self.conv.bs {
                Some(b) => (b - &bn.running_mean) * &scale + &bn.bias,
                None => -&bn.running_mean * &scale + &bn.bias,
            };
            let ws = &self.conv.ws * scale.view([-1, 1, 1, 1]);
            let folded = Conv {
                ws,
                bs: Some(bias),
                stride: self.conv.stride,
                padding: self.conv.padding,
            };
            folded.forward(xs, compute)
        }
    }
}

/// The reference needs g to be 1x1 (inputs 192..383). Larger inputs leave a spatial grid
/// after the dense layer: average it, which is the identity where the reference works.
fn global(g: Tensor) -> Tensor {
    let s = g.size();
    if s[2] != 1 || s[3] != 1 {
        g.adaptive_avg_pool2d([1, 1])
    } else {
        g
    }
}

fn max_pool2(t: &Tensor) -> Tensor {
    t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// What a forward pass returns.
pub struct Output {
    /// [N, 2] logits (NF, FL).
    pub logits: Tensor,
    /// The pre-softmax compatibility maps c1 [N,1,H/4,W/4], c2 [N,1,H/8,W/8],
    /// c3 [N,1,H/16,W/16] of the attention net; `None` for the standard CNN.
    pub maps: Option<[Tensor; 3]>,
    /// The last convolution block's output (conv_block6, 2x2 at 256), for Grad-CAM.
    pub features: Tensor,
    /// conv_block5's output l3 (16x16 at 256), the last map fine enough for Grad-CAM;
    /// `None` on the standard CNN's fast path, which only ever needs it pooled.
    pub l3: Option<Tensor>,
}

impl Output {
    /// P(FL) = softmax(logits)[:, 1], as f32 [N].
    pub fn flare_prob(&self) -> Tensor {
        self.logits
            .to_kind(Kind::Float)
            .softmax(-1, Kind::Float)
            .select(1, 1)
    }
}

/// The attention-based CNN (or standard CNN) of the paper.
#[derive(Debug)]
pub struct AttnNet {
    arch: Arch,
    blocks: [ConvBn; 5],
    block6: ConvBn,
    dense: Conv,
    attn: Option<attention::Estimators>,
    classify: nn::Linear,
    compute: Compute,
}

impl AttnNet {
    /// Builds the network under `p` (the root of a VarStore) with the reference's names.
    pub fn new(p: &nn::Path, arch: Arch, init: InitScheme) -> Self {
        let chans = [(1, 64), (64, 128), (128, 256), (256, 512), (512, 512)];
        let blocks = chans
            .map(|(cin, cout)| (cin, cout))
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                ConvBn::new(
                    p / format!("conv_block{}", i + 1),
                    ConvShape::same(cin, cout),
                    init,
                )
            })
            .collect::<Vec<_>>();
        let blocks: [ConvBn; 5] = blocks.try_into().expect("five conv blocks");
        let block6 = ConvBn::new(p / "conv_block6", ConvShape::strided_512(3), init);
        let dense = Conv::new(p / "dense", ConvShape::strided_512(2), init);
        let attn = arch
            .is_attention()
            .then(|| attention::Estimators::new(p, conv_init(init)));
        let in_features = if arch.is_attention() { 3 * 512 } else { 512 };
        let classify = nn::linear(
            p / "classify",
            in_features,
            2,
            nn::LinearConfig {
                ws_init: conv_init(init),
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        AttnNet {
            arch,
            blocks,
            block6,
            dense,
            attn,
            classify,
            compute: Compute::default(),
        }
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Sets the compute precision and layout of later forward passes; the variables stay
    /// float32 (mixed precision with float32 master weights).
    pub fn set_compute(&mut self, compute: Compute) {
        self.compute = compute;
    }

    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Forward pass on [N,1,H,W] inputs in [0,1]. `train` selects BatchNorm's batch
    /// statistics (and updates the running ones).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Output {
        self.forward_impl(xs, train, false)
    }

    /// The reference's attention block as written (materialising l + g and a * l); kept
    /// to test the fast path against and for benchmarks.
    pub fn forward_reference(&self, xs: &Tensor, train: bool) -> Output {
        self.forward_impl(xs, train, true)
    }

    fn forward_impl(&self, xs: &Tensor, train: bool, reference: bool) -> Output {
        let c = self.compute;
        let mut xs = c.cast(xs);
        if c.channels_last {
            xs = to_channels_last(&xs);
        }
        let pool = max_pool2;
        let x = self.blocks[0].forward_pooled(&xs, train, c);
        let x = self.blocks[1].forward_pooled(&x, train, c);
        if self.attn.is_none() && !reference {
            // The standard CNN only sees blocks 3-5 pooled, too.
            let x = self.blocks[2].forward_pooled(&x, train, c);
            let x = self.blocks[3].forward_pooled(&x, train, c);
            let x = self.blocks[4].forward_pooled(&x, train, c);
            let features = self.block6.forward_t(&x, train, c);
            let g = global(self.dense.forward(&features, c));
            return Output {
                logits: self.classify_f32(&g.flatten(1, -1)),
                maps: None,
                features,
                l3: None,
            };
        }
        let l1 = self.blocks[2].forward_t(&x, train, c);
        let l2 = self.blocks[3].forward_t(&pool(&l1), train, c);
        let l3 = self.blocks[4].forward_t(&pool(&l2), train, c);
        let features = self.block6.forward_t(&pool(&l3), train, c);
        let g = global(self.dense.forward(&features, c));
        match &self.attn {
            Some(est) => {
                let (feats, maps) = if reference {
                    est.forward_reference([&l1, &l2, &l3], &g, c.kind)
                } else {
                    est.forward([&l1, &l2, &l3], &g, c.kind)
                };
                let maps = maps.map(|m| m.to_kind(Kind::Float));
                Output {
                    logits: self.classify_f32(&feats),
                    maps: Some(maps),
                    features,
                    l3: Some(l3),
                }
            }
            None => Output {
                logits: self.classify_f32(&g.flatten(1, -1)),
                maps: None,
                features,
                l3: Some(l3),
            },
        }
    }
}

impl AttnNet {
    /// The classifier, always returning float32 logits (the loss wants full precision).
    fn classify_f32(&self, feats: &Tensor) -> Tensor {
        let c = self.compute;
        let ws = c.cast(&self.classify.ws);
        let bs = self.classify.bs.as_ref().map(|b| c.cast(b));
        feats.linear(&ws, bs.as_ref()).to_kind(Kind::Float)
    }
}

/// Checks that an input batch is [N,1,H,W] with H, W >= 192.
pub fn check_input(xs: &Tensor) -> Result<()> {
    let s = xs.size();
    if s.len() != 4 || s[1] != 1 {
        bail!("model input must be [N,1,H,W], got {s:?}");
    }
    if s[2] < MIN_IM_SIZE || s[3] < MIN_IM_SIZE {
        bail!(
            "model input {}x{} is smaller than the minimum {MIN_IM_SIZE}x{MIN_IM_SIZE}",
            s[2],
            s[3]
        );
    }
    Ok(())
}

/// Numeric precision of the compute (weights stay float32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    pub fn name(self) -> &'static str {
        self.spelled_name()
    }
}

impl Spelled for Precision {
    const SPELLINGS: &'static [(Self, &'static [&'static str])] = &[
        (Precision::F32, &["f32", "fp32", "float32"]),
        (Precision::Bf16, &["bf16", "bfloat16"]),
    ];
    const WHAT: &'static str = "precision";
    const EXPECTED: &'static str = "f32 or bf16";
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_spelled(s)
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
