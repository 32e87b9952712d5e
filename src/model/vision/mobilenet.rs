//! torchvision's MobileNetV2 (`torchvision.models.mobilenet_v2`, width 1.0): `features.0`
//! a 3x3 stride-2 Conv2dNormActivation to 32 channels, `features.1`..`features.17` the
//! inverted residual blocks, `features.18` a 1x1 Conv2dNormActivation to 1280 channels,
//! then adaptive_avg_pool2d((1, 1)) and `classifier` (dropout 0.2, Linear). Activations
//! are ReLU6, which is not an nn.ReLU: the tap does not see them. Convolutions
//! kaiming_normal_(fan_out), BatchNorm weight 1 bias 0, the Linear N(0, 0.01) bias 0.

use super::super::layers::BatchNorm;
use super::ops::{self, Conv2d, ConvSpec, LayerInit, Linear};
use crate::model::tap::Tap;
use crate::model::Compute;
use tch::{nn, Tensor};

/// The stages `forward` reports.
pub(super) const STAGES: &[&str] = &["features"];

const DROPOUT: f64 = 0.2;

/// The inverted residual setting: expansion t, channels c, repeats n, first stride s.
const SETTING: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

const FIRST: i64 = 32;
const LAST: i64 = 1280;

/// Conv2d (no bias) and BatchNorm2d: `<p>.0` and `<p>.1`.
#[derive(Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(p: nn::Path, spec: ConvSpec) -> Self {
        ConvBn {
            conv: Conv2d::new(&p / "0", spec, LayerInit::KaimingFanOut),
            bn: ops::batch_norm(&p / "1", spec.cout),
        }
    }

    /// Conv2dNormActivation with ReLU6.
    fn forward_relu6(&self, xs: &Tensor, train: bool, c: Compute) -> Tensor {
        ops::conv_bn_relu6(&self.conv, &self.bn, xs, train, c)
    }
}

/// A k x k Conv2dNormActivation's convolution: padding (k - 1) / 2, no bias.
fn spec(cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> ConvSpec {
    ConvSpec {
        groups,
        ..ConvSpec::plain(cin, cout, k, stride, (k - 1) / 2)
    }
}

/// InvertedResidual: `conv.0` the 1x1 expansion (absent where t = 1), then the 3x3
/// depthwise Conv2dNormActivation, then the linear 1x1 projection and its BatchNorm
/// (`conv.K` and `conv.K+1`, plain modules rather than a Conv2dNormActivation).
#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: Conv2d,
    project_bn: BatchNorm,
    residual: bool,
}

impl InvertedResidual {
    fn new(p: nn::Path, inp: i64, oup: i64, stride: i64, t: i64) -> Self {
        let p = &p / "conv";
        let hidden = inp * t;
        let expand = (t != 1).then(|| ConvBn::new(&p / "0", spec(inp, hidden, 1, 1, 1)));
        let k = i64::from(expand.is_some());
        let depthwise = ConvBn::new(&p / k.to_string(), spec(hidden, hidden, 3, stride, hidden));
        let project = Conv2d::new(
            &p / (k + 1).to_string(),
            spec(hidden, oup, 1, 1, 1),
            LayerInit::KaimingFanOut,
        );
        let project_bn = ops::batch_norm(&p / (k + 2).to_string(), oup);
        InvertedResidual {
            expand,
            depthwise,
            project,
            project_bn,
            residual: stride == 1 && inp == oup,
        }
    }

    fn forward(&self, xs: &Tensor, train: bool, c: Compute) -> Tensor {
        let h = match &self.expand {
            Some(e) => e.forward_relu6(xs, train, c),
            None => xs.shallow_clone(),
        };
        let h = self.depthwise.forward_relu6(&h, train, c);
        let residual = self.residual.then_some(xs);
        ops::conv_bn_add(&self.project, &self.project_bn, &h, residual, train, c)
    }
}

#[derive(Debug)]
pub(super) struct MobileNetV2 {
    /// features.0.
    first: ConvBn,
    /// features.1..=17.
    blocks: Vec<InvertedResidual>,
    /// features.18.
    last: ConvBn,
    /// classifier.1.
    fc: Linear,
}

impl MobileNetV2 {
    pub fn new(p: &nn::Path) -> Self {
        let f = p / "features";
        let first = ConvBn::new(&f / "0", spec(1, FIRST, 3, 2, 1));
        let mut blocks = Vec::new();
        let mut cin = FIRST;
        for (t, cout, n, s) in SETTING {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let name = (blocks.len() + 1).to_string();
                blocks.push(InvertedResidual::new(&f / name, cin, cout, stride, t));
                cin = cout;
            }
        }
        let last = ConvBn::new(
            &f / (blocks.len() + 1).to_string(),
            spec(cin, LAST, 1, 1, 1),
        );
        let fc = Linear::new(p / "classifier" / "1", LAST, 2, LayerInit::Normal001);
        MobileNetV2 {
            first,
            blocks,
            last,
            fc,
        }
    }

    /// (logits in the compute kind, `features`' output).
    pub fn forward(
        &self,
        xs: &Tensor,
        train: bool,
        tap: &mut dyn Tap,
        c: Compute,
    ) -> (Tensor, Tensor) {
        let mut x = self.first.forward_relu6(xs, train, c);
        for block in &self.blocks {
            x = block.forward(&x, train, c);
        }
        let x = tap.stage(STAGES[0], self.last.forward_relu6(&x, train, c));
        let pooled = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let pooled = tap.dropout(&pooled, DROPOUT, train);
        (self.fc.forward(&pooled, c), x)
    }
}
