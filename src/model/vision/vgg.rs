//! torchvision's VGG16 without BatchNorm (`torchvision.models.vgg16`, configuration "D"):
//! thirteen 3x3 convolutions and five 2x2 max pools in `features`,
//! AdaptiveAvgPool2d((7, 7)), three Linears in `classifier` with dropout 0.5 after the
//! first two ReLUs. Convolutions kaiming_normal_(fan_out, relu) with zero bias, Linears
//! N(0, 0.01) with zero bias.

use super::classifier::{Classifier, Dropout};
use super::ops::{self, Conv2d, ConvSpec, LayerInit};
use crate::model::tap::Tap;
use crate::model::Compute;
use tch::{nn, Tensor};

/// The stages `forward` reports, in order: the last ReLU of `features`, then `features`.
pub(super) const STAGES: &[&str] = &["features.29", "features"];

/// Configuration "D": output channels of each convolution, 0 for a max pool.
const CFG: [i64; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

/// One module of `features`: a convolution (its ReLU follows at the next index) or a max pool.
#[derive(Debug)]
enum Feature {
    Conv(Conv2d),
    Pool,
}

#[derive(Debug)]
pub(super) struct Vgg16 {
    features: Vec<Feature>,
    classifier: Classifier,
}

impl Vgg16 {
    pub fn new(p: &nn::Path) -> Self {
        let f = p / "features";
        let mut features = Vec::with_capacity(CFG.len());
        let (mut index, mut cin) = (0, 1);
        for &cout in &CFG {
            if cout == 0 {
                features.push(Feature::Pool);
                index += 1;
            } else {
                let spec = ConvSpec::biased(cin, cout, 3, 1, 1);
                features.push(Feature::Conv(Conv2d::new(
                    &f / index.to_string(),
                    spec,
                    LayerInit::KaimingFanOut,
                )));
                // The convolution, then its ReLU.
                index += 2;
                cin = cout;
            }
        }
        debug_assert_eq!(index, 31);
        let classifier = Classifier::new(p, 512 * 7 * 7, Dropout::AfterRelu, LayerInit::Normal001);
        Vgg16 {
            features,
            classifier,
        }
    }

    /// (logits in the compute kind, the `features.29` stage's output).
    pub fn forward(
        &self,
        xs: &Tensor,
        train: bool,
        tap: &mut dyn Tap,
        c: Compute,
    ) -> (Tensor, Tensor) {
        let mut x = xs.shallow_clone();
        let mut last_relu = None;
        let n = self.features.len();
        for (i, feature) in self.features.iter().enumerate() {
            x = match feature {
                Feature::Pool => ops::max_pool2_t(&x, train),
                Feature::Conv(conv) => {
                    let out = ops::conv_relu(tap, conv, &x, train, c);
                    // The last convolution's ReLU is the last but one module.
                    if i == n - 2 {
                        let out = tap.stage(STAGES[0], out);
                        last_relu = Some(out.shallow_clone());
                        out
                    } else {
                        out
                    }
                }
            };
        }
        let x = tap.stage(STAGES[1], x);
        let x = x.adaptive_avg_pool2d([7, 7]).flatten(1, -1);
        let last_relu = last_relu.expect("VGG16's features end in a convolution and a pool");
        (self.classifier.forward(&x, train, tap, c), last_relu)
    }
}
