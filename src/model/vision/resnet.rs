//! torchvision's ResNet-18, -34 (BasicBlock) and -50 (Bottleneck, stride on the 3x3 as
//! torchvision's "V1.5"): a 7x7 stride-2 stem with BatchNorm, ReLU and a 3x3 stride-2
//! max pool, `layer1`..`layer4`, AdaptiveAvgPool2d((1, 1)) and `fc`. Convolutions
//! kaiming_normal_(fan_out, relu), BatchNorm weight 1 bias 0 (zero_init_residual False),
//! `fc` PyTorch's default.

use super::super::layers::BatchNorm;
use super::ops::{self, Conv2d, ConvSpec, LayerInit, Linear};
use crate::model::tap::Tap;
use crate::model::Compute;
use tch::{nn, Tensor};

/// The stages `forward` reports, in order.
pub(super) const STAGES: &[&str] = &["layer1", "layer2", "layer3", "layer4"];

/// The two block types and how many of each layer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Depth {
    R18,
    R34,
    R50,
}

impl Depth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == Depth::R50
    }

    /// Output channels over `planes`.
    fn expansion(self) -> i64 {
        if self.bottleneck() {
            4
        } else {
            1
        }
    }
}

fn conv(p: nn::Path, spec: ConvSpec) -> Conv2d {
    Conv2d::new(p, spec, LayerInit::KaimingFanOut)
}

/// Conv, then BatchNorm in `train`'s mode.
fn conv_bn(conv: &Conv2d, bn: &BatchNorm, xs: &Tensor, train: bool, c: Compute) -> Tensor {
    ops::conv_bn(conv, bn, xs, train, c)
}

/// BasicBlock (conv1 3x3, conv2 3x3) or Bottleneck (conv1 1x1, conv2 3x3, conv3 1x1),
/// with `downsample` (1x1 conv and BatchNorm) where the shape changes.
#[derive(Debug)]
struct Block {
    /// (convK, bnK) for K = 1, 2 (and 3 in a Bottleneck).
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn new(p: nn::Path, depth: Depth, inplanes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * depth.expansion();
        let specs = if depth.bottleneck() {
            vec![
                ConvSpec::plain(inplanes, planes, 1, 1, 0),
                ConvSpec::plain(planes, planes, 3, stride, 1),
                ConvSpec::plain(planes, out, 1, 1, 0),
            ]
        } else {
            vec![
                ConvSpec::plain(inplanes, planes, 3, stride, 1),
                ConvSpec::plain(planes, planes, 3, 1, 1),
            ]
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                (
                    conv(&p / format!("conv{}", i + 1), spec),
                    ops::batch_norm(&p / format!("bn{}", i + 1), spec.cout),
                )
            })
            .collect();
        let downsample = (stride != 1 || inplanes != out).then(|| {
            let d = &p / "downsample";
            (
                conv(&d / "0", ConvSpec::plain(inplanes, out, 1, stride, 0)),
                ops::batch_norm(&d / "1", out),
            )
        });
        Block { convs, downsample }
    }

    fn forward(&self, xs: &Tensor, train: bool, tap: &mut dyn Tap, c: Compute) -> Tensor {
        let (last, inner) = self.convs.split_last().expect("a block has convolutions");
        let mut out = xs.shallow_clone();
        for (conv, bn) in inner {
            out = ops::conv_bn_relu(tap, conv, bn, &out, train, c);
        }
        let identity = match &self.downsample {
            Some((conv, bn)) => conv_bn(conv, bn, xs, train, c),
            None => xs.shallow_clone(),
        };
        ops::conv_bn_add_relu(tap, &last.0, &last.1, &out, Some(&identity), train, c)
    }
}

#[derive(Debug)]
pub(super) struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: [Vec<Block>; 4],
    fc: Linear,
}

impl ResNet {
    pub fn new(p: &nn::Path, depth: Depth) -> Self {
        let conv1 = conv(p / "conv1", ConvSpec::plain(1, 64, 7, 2, 3));
        let bn1 = ops::batch_norm(p / "bn1", 64);
        let mut inplanes = 64;
        let layers = std::array::from_fn(|l| {
            let planes = 64 << l;
            let stride = if l == 0 { 1 } else { 2 };
            let lp = p / STAGES[l];
            (0..depth.blocks()[l])
                .map(|b| {
                    let block = Block::new(
                        &lp / b.to_string(),
                        depth,
                        inplanes,
                        planes,
                        if b == 0 { stride } else { 1 },
                    );
                    inplanes = planes * depth.expansion();
                    block
                })
                .collect()
        });
        let fc = Linear::new(p / "fc", 512 * depth.expansion(), 2, LayerInit::Default);
        ResNet {
            conv1,
            bn1,
            layers,
            fc,
        }
    }

    /// (logits in the compute kind, `layer4`'s output).
    pub fn forward(
        &self,
        xs: &Tensor,
        train: bool,
        tap: &mut dyn Tap,
        c: Compute,
    ) -> (Tensor, Tensor) {
        let x = ops::conv_bn_relu(tap, &self.conv1, &self.bn1, xs, train, c);
        let mut x = ops::max_pool(&x, 3, 2, 1);
        for (name, layer) in STAGES.iter().zip(&self.layers) {
            for block in layer {
                x = block.forward(&x, train, tap, c);
            }
            x = tap.stage(name, x);
        }
        let pooled = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        (self.fc.forward(&pooled, c), x)
    }
}
