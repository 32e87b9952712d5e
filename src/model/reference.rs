//! The reference network, transcribed from the paper's PyTorch code
//! (`scripts/reference_model.py` is the same code): every block Conv2d -> BatchNorm2d ->
//! ReLU, then 2x2 max pooling; the attention block as written, c = op(l + g),
//! a = softmax(c) over positions, g_out = sum(a * l). Float32, NCHW, nothing fused.
//!
//! This is the oracle: tests hold it to the golden PyTorch outputs and the fast path
//! (`super::fast`) to it, and `explain`'s gradient methods run on it, so that their
//! graph is the one captum's hooks see.

use super::layers::{global, max_pool2, ConvBlock, Layers};
use super::{Arch, Output};
use tch::{Kind, Tensor};

/// The reference network over a model's parameters (the same tensors the fast path
/// computes with).
#[derive(Clone, Copy)]
pub struct Reference<'a> {
    layers: &'a Layers,
}

/// Called with each conv block's number (1..=6), its conv + BN output and its ReLU
/// output; what it returns is the block's output from then on (a forward hook on the
/// block's ReLU, as captum registers them).
pub type BlockHook<'h> = dyn FnMut(usize, &Tensor, Tensor) -> Tensor + 'h;

impl<'a> Reference<'a> {
    pub(super) fn new(layers: &'a Layers) -> Self {
        Reference { layers }
    }

    pub fn arch(&self) -> Arch {
        self.layers.arch
    }

    /// `AttnNet.forward` on [N,1,H,W] inputs in [0,1]; `train` is `net.train()`
    /// (BatchNorm on batch statistics, updating the running ones) or `net.eval()`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Output {
        self.forward_hooked(x, train, &mut |_, _, out| out)
    }

    /// `forward_t` with `hook` on every conv block's output.
    pub fn forward_hooked(&self, x: &Tensor, train: bool, hook: &mut BlockHook<'_>) -> Output {
        let mut block = |k: usize, x: &Tensor| {
            let pre = conv_bn(&self.layers.blocks[k - 1], x, train);
            let out = pre.relu();
            hook(k, &pre, out)
        };
        let pool = max_pool2;
        let x = x.to_kind(Kind::Float);
        let x = pool(&block(1, &x));
        let x = pool(&block(2, &x));
        let l1 = block(3, &x);
        let l2 = block(4, &pool(&l1));
        let l3 = block(5, &pool(&l2));
        let x = block(6, &pool(&l3));
        let g = global(self.layers.dense.forward(&x));
        let classify = &self.layers.classify;
        let (logits, maps) = match &self.layers.attention {
            None => (g.flatten(1, -1).apply(classify), None),
            Some(attn) => {
                // ProjectorBlock: l1's 256 channels onto g's 512.
                let projected = conv1x1(&l1, &attn.projector);
                let (c1, g1) = linear_attention(&attn.ops[0], &projected, &g);
                let (c2, g2) = linear_attention(&attn.ops[1], &l2, &g);
                let (c3, g3) = linear_attention(&attn.ops[2], &l3, &g);
                let logits = Tensor::cat(&[g1, g2, g3], 1).apply(classify);
                (logits, Some([c1, c2, c3]))
            }
        };
        Output {
            logits,
            maps,
            features: x,
            l3: Some(l3),
        }
    }
}

/// A conv block before its ReLU: Conv2d, then BatchNorm2d.
fn conv_bn(block: &ConvBlock, x: &Tensor, train: bool) -> Tensor {
    block.bn.forward_t(&block.conv.forward(x), train)
}

/// `LinearAttentionBlock.forward(l, g)`: (c [N,1,H,W], sum(a * l) [N,C]).
fn linear_attention(op: &Tensor, l: &Tensor, g: &Tensor) -> (Tensor, Tensor) {
    let (n, c, h, w) = l.size4().expect("4-d feature map");
    let comp = conv1x1(&(l + g), op);
    let a = comp
        .view([n, 1, -1])
        .softmax(2, Kind::Float)
        .view([n, 1, h, w]);
    let out = (a.expand_as(l) * l)
        .view([n, c, -1])
        .sum_dim_intlist(2, false, None);
    (comp.view([n, 1, h, w]), out)
}

/// `nn.Conv2d(cin, cout, kernel_size=1, bias=False)`.
fn conv1x1(x: &Tensor, weight: &Tensor) -> Tensor {
    x.conv2d(weight, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
}
