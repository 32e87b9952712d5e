//! What a gradient method sees of a forward pass, as captum's module hooks see it: each
//! call of an `nn.ReLU`, the output of each named stage, each dropout. A network's
//! forward calls its tap at those points and continues with what the tap returns, so an
//! explanation can cut the graph at a ReLU (guided backpropagation) or keep a stage's
//! output (Grad-CAM), and a parity test can replay PyTorch's dropout masks.

use tch::Tensor;

pub trait Tap {
    /// Whether `relu` needs a ReLU's input as well as its output. Where it does not, the
    /// network applies ReLU in place, as torchvision's `nn.ReLU(inplace=True)`: the same
    /// values and gradients with one activation-sized buffer fewer.
    fn reads_relu_input(&self) -> bool {
        true
    }

    /// An `nn.ReLU` call: `pre` its input, `out` its output.
    fn relu(&mut self, pre: &Tensor, out: Tensor) -> Tensor {
        let _ = pre;
        out
    }

    /// The output of the stage named as in the network's state dict (`layer4`,
    /// `features`, ...).
    fn stage(&mut self, name: &str, out: Tensor) -> Tensor {
        let _ = name;
        out
    }

    /// `nn.Dropout(p)`.
    fn dropout(&mut self, xs: &Tensor, p: f64, train: bool) -> Tensor {
        xs.dropout(p, train)
    }
}

/// The plain forward pass: nothing tapped.
pub struct NoTap;

impl Tap for NoTap {
    fn reads_relu_input(&self) -> bool {
        false
    }
}
