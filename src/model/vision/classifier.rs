//! torchvision's `classifier` of AlexNet and VGG (an nn.Sequential): three Linears, a
//! ReLU after each of the first two, and dropout 0.5 before each of the first two Linears
//! (AlexNet) or after each of their ReLUs (VGG).

use super::ops::{self, LayerInit, Linear};
use crate::model::tap::Tap;
use crate::model::Compute;
use tch::{nn, Tensor};

const DROPOUT: f64 = 0.5;

/// Where a family puts its two dropouts, which sets the Linears' indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dropout {
    /// Before each of the first two Linears: classifier.1, .4, .6 (AlexNet).
    BeforeLinear,
    /// After each of the first two ReLUs: classifier.0, .3, .6 (VGG).
    AfterRelu,
}

#[derive(Debug)]
pub(super) struct Classifier {
    fcs: [Linear; 3],
    dropout: Dropout,
}

impl Classifier {
    /// The Linears under `p`'s `classifier`, `cin` inputs to 4096, 4096, 2 outputs.
    pub fn new(p: &nn::Path, cin: i64, dropout: Dropout, init: LayerInit) -> Self {
        let c = p / "classifier";
        let fc = |i: &str, cin, cout| Linear::new(&c / i, cin, cout, init);
        let [first, second, last] = match dropout {
            Dropout::BeforeLinear => ["1", "4", "6"],
            Dropout::AfterRelu => ["0", "3", "6"],
        };
        let fcs = [
            fc(first, cin, 4096),
            fc(second, 4096, 4096),
            fc(last, 4096, 2),
        ];
        Classifier { fcs, dropout }
    }

    /// The logits (in the compute kind) of flattened features `x`.
    pub fn forward(&self, x: &Tensor, train: bool, tap: &mut dyn Tap, c: Compute) -> Tensor {
        let [first, second, last] = &self.fcs;
        let mut x = x.shallow_clone();
        for fc in [first, second] {
            if self.dropout == Dropout::BeforeLinear {
                x = tap.dropout(&x, DROPOUT, train);
            }
            x = ops::relu(tap, fc.forward(&x, c));
            if self.dropout == Dropout::AfterRelu {
                x = tap.dropout(&x, DROPOUT, train);
            }
        }
        last.forward(&x, c)
    }
}
