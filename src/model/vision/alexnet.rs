//! torchvision's AlexNet (`torchvision.models.alexnet`): five convolutions in
//! `features`, AdaptiveAvgPool2d((6, 6)), three Linears in `classifier` with dropout 0.5
//! before the first two. Every layer keeps PyTorch's default initialisation.

use super::classifier::{Classifier, Dropout};
use super::ops::{self, Conv2d, ConvSpec, LayerInit};
use crate::model::tap::Tap;
use crate::model::Compute;
use tch::{nn, Tensor};

/// The stages `forward` reports, in order: the last ReLU of `features`, then `features`.
pub(super) const STAGES: &[&str] = &["features.11", "features"];

#[derive(Debug)]
pub(super) struct AlexNet {
    /// features.0, .3, .6, .8, .10.
    convs: [Conv2d; 5],
    classifier: Classifier,
}

impl AlexNet {
    pub fn new(p: &nn::Path) -> Self {
        let f = p / "features";
        let conv = |i: &str, s| Conv2d::new(&f / i, s, LayerInit::Default);
        let convs = [
            conv("0", ConvSpec::biased(1, 64, 11, 4, 2)),
            conv("3", ConvSpec::biased(64, 192, 5, 1, 2)),
            conv("6", ConvSpec::biased(192, 384, 3, 1, 1)),
            conv("8", ConvSpec::biased(384, 256, 3, 1, 1)),
            conv("10", ConvSpec::biased(256, 256, 3, 1, 1)),
        ];
        let classifier = Classifier::new(p, 256 * 6 * 6, Dropout::BeforeLinear, LayerInit::Default);
        AlexNet { convs, classifier }
    }

    /// (logits in the compute kind, the `features.11` stage's output).
    pub fn forward(
        &self,
        xs: &Tensor,
        train: bool,
        tap: &mut dyn Tap,
        c: Compute,
    ) -> (Tensor, Tensor) {
        let [c0, c3, c6, c8, c10] = &self.convs;
        let x = ops::conv_relu(tap, c0, xs, train, c);
        let x = ops::max_pool(&x, 3, 2, 0);
        let x = ops::conv_relu(tap, c3, &x, train, c);
        let x = ops::max_pool(&x, 3, 2, 0);
        let x = ops::conv_relu(tap, c6, &x, train, c);
        let x = ops::conv_relu(tap, c8, &x, train, c);
        let x = ops::conv_relu(tap, c10, &x, train, c);
        let last_relu = tap.stage(STAGES[0], x);
        let x = tap.stage(STAGES[1], ops::max_pool(&last_relu, 3, 2, 0));
        let x = x.adaptive_avg_pool2d([6, 6]).flatten(1, -1);
        (self.classifier.forward(&x, train, tap, c), last_relu)
    }
}
