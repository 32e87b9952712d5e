//! The network's parameters, laid out as the reference's modules and created under its
//! state-dict names (`conv_block1.0.weight`, `conv_block1.1.running_mean`, `dense.bias`,
//! `projector1.op.weight`, `attn1.op.weight`, `classify.weight`, ...), so a PyTorch
//! checkpoint loads key for key. `reference` and `fast` both compute with these tensors.

use super::prepared::Prepared;
use super::{Arch, InitScheme};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// BatchNorm2d's defaults, as the reference builds its blocks.
pub(super) const BN_EPS: f64 = 1e-5;
pub(super) const BN_MOMENTUM: f64 = 0.1;

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

/// nn.Conv2d's parameters (`weight`, `bias`) and geometry.
#[derive(Debug)]
pub(super) struct Conv {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
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
                ws_init: init.weights(),
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

    /// This convolution's geometry with the given weight and bias (the layer's own, or
    /// ones derived from them).
    pub fn with(&self, xs: &Tensor, ws: &Tensor, bs: Option<&Tensor>) -> Tensor {
        xs.conv2d(ws, bs, [self.stride; 2], [self.padding; 2], [1, 1], 1)
    }

    /// nn.Conv2d's forward.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        super::layout::keep_layout(&self.ws, false);
        self.with(xs, &self.ws, self.bs.as_ref())
    }
}

/// BatchNorm2d with the reference's buffers, `num_batches_tracked` included, so
/// checkpoints round-trip key for key.
#[derive(Debug)]
pub(super) struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    num_batches_tracked: Tensor,
}

impl BatchNorm {
    pub(super) fn new(p: nn::Path, c: i64, init: InitScheme) -> Self {
        BatchNorm {
            weight: p.var("weight", &[c], init.bn_weight()),
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

    /// BatchNorm2d's forward: batch statistics in train mode (updating the running ones
    /// and the batch count), the running statistics in eval mode.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            self.track_batch();
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

    /// Counts one training batch in `num_batches_tracked`, as BatchNorm2d does.
    pub fn track_batch(&self) {
        tch::no_grad(|| {
            let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
        });
    }
}

/// One `conv_blockK` of the reference: `nn.Sequential(Conv2d, BatchNorm2d, ReLU)`,
/// parameters `conv_blockK.0.*` and `conv_blockK.1.*`.
#[derive(Debug)]
pub(super) struct ConvBlock {
    pub conv: Conv,
    pub bn: BatchNorm,
    /// The convolution's inference weights, the BatchNorm folded in.
    pub prepared: Prepared,
    /// That weight in oneDNN's blocked layout, for the fused convolution.
    pub packed: Prepared,
}

impl ConvBlock {
    fn new(p: nn::Path, shape: ConvShape, init: InitScheme) -> Self {
        ConvBlock {
            conv: Conv::new(&p / "0", shape, init),
            bn: BatchNorm::new(&p / "1", shape.cout, init),
            prepared: Prepared::default(),
            packed: Prepared::default(),
        }
    }
}

/// The attention block's 1x1 convolutions (no bias): `projector1.op.weight` [512, 256,
/// 1, 1] maps l1's channels to g's, `attn{1,2,3}.op.weight` [1, 512, 1, 1] score l + g.
#[derive(Debug)]
pub(super) struct Attention {
    pub projector: Tensor,
    pub ops: [Tensor; 3],
}

impl Attention {
    fn new(p: &nn::Path, init: InitScheme) -> Self {
        let op = |name: &str, cin: i64, cout: i64| {
            (p / name / "op").var("weight", &[cout, cin, 1, 1], init.weights())
        };
        Attention {
            projector: op("projector1", 256, 512),
            ops: [
                op("attn1", 512, 1),
                op("attn2", 512, 1),
                op("attn3", 512, 1),
            ],
        }
    }
}

/// Every parameter of one network.
#[derive(Debug)]
pub(super) struct Layers {
    pub arch: Arch,
    /// conv_block1..6; block 6 is the 3x3 stride-3 one.
    pub blocks: [ConvBlock; 6],
    pub dense: Conv,
    pub attention: Option<Attention>,
    pub classify: nn::Linear,
}

impl Layers {
    pub fn new(p: &nn::Path, arch: Arch, init: InitScheme) -> Self {
        let shapes = [
            ConvShape::same(1, 64),
            ConvShape::same(64, 128),
            ConvShape::same(128, 256),
            ConvShape::same(256, 512),
            ConvShape::same(512, 512),
            ConvShape::strided_512(3),
        ];
        let blocks = std::array::from_fn(|i| {
            ConvBlock::new(p / format!("conv_block{}", i + 1), shapes[i], init)
        });
        let dense = Conv::new(p / "dense", ConvShape::strided_512(2), init);
        let attention = arch.is_attention().then(|| Attention::new(p, init));
        let in_features = if arch.is_attention() { 3 * 512 } else { 512 };
        let classify = nn::linear(
            p / "classify",
            in_features,
            2,
            nn::LinearConfig {
                ws_init: init.weights(),
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        Layers {
            arch,
            blocks,
            dense,
            attention,
            classify,
        }
    }
}

/// F.max_pool2d(kernel_size=2, stride=2).
pub(super) fn max_pool2(t: &Tensor) -> Tensor {
    t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// The reference needs g to be 1x1 (inputs 192..383). Larger inputs leave a spatial grid
/// after the dense layer: average it, which is the identity where the reference works.
pub(super) fn global(g: Tensor) -> Tensor {
    let s = g.size();
    if s[2] != 1 || s[3] != 1 {
        g.adaptive_avg_pool2d([1, 1])
    } else {
        g
    }
}
