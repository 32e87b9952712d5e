//! The three linear-attention estimators (`projector1`, `attn1..3`).
//!
//! Reference block: c = op(l + g); a = softmax of c over positions; g_out = sum(a * l).
//! `op` is a 1x1 convolution without bias, i.e. linear in the channels, so
//! op(l + g) = op(l) + op(g), and the weighted sum is a batched matmul. For estimator 1,
//! l = projector(l1) is linear too, so sum(a * P l1) = P sum(a * l1) and the
//! N x 512 x 64 x 64 projection is never materialised.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

#[derive(Debug)]
pub(super) struct Estimators {
    /// projector1.op.weight [512, 256, 1, 1]
    projector: Tensor,
    /// attn{1,2,3}.op.weight [1, 512, 1, 1]
    ops: [Tensor; 3],
}

fn op_weight(p: nn::Path, cin: i64, cout: i64, init: Init) -> Tensor {
    (p / "op").var("weight", &[cout, cin, 1, 1], init)
}

/// concat(g1, g2, g3) [N, 1536] and the compatibility maps [c1, c2, c3].
pub(super) type Attended = (Tensor, [Tensor; 3]);

impl Estimators {
    pub(super) fn new(p: &nn::Path, init: Init) -> Self {
        Estimators {
            projector: op_weight(p / "projector1", 256, 512, init),
            ops: [
                op_weight(p / "attn1", 512, 1, init),
                op_weight(p / "attn2", 512, 1, init),
                op_weight(p / "attn3", 512, 1, init),
            ],
        }
    }

    /// Fast path.
    pub(super) fn forward(&self, [l1, l2, l3]: [&Tensor; 3], g: &Tensor, kind: Kind) -> Attended {
        let gv = g.flatten(1, -1); // [N, 512]
        let proj = self.projector.flatten(1, -1).to_kind(kind); // [512, 256]
        let w: Vec<Tensor> = self
            .ops
            .iter()
            .map(|o| o.flatten(1, -1).to_kind(kind))
            .collect(); // [1, 512]
                        // Estimator 1 in l1's 256 channels: the compatibility weight folded through P.
        let w1_l1 = w[0].matmul(&proj); // [1, 256]
        let (c1, s1) = Self::attend(l1, &w1_l1, &gv.matmul(&w[0].tr()));
        let g1 = s1.matmul(&proj.tr()); // [N, 512]
        let (c2, g2) = Self::attend(l2, &w[1], &gv.matmul(&w[1].tr()));
        let (c3, g3) = Self::attend(l3, &w[2], &gv.matmul(&w[2].tr()));
        (Tensor::cat(&[g1, g2, g3], 1), [c1, c2, c3])
    }

    /// c = w . l + bias (per sample), a = softmax(c), returns (c [N,1,H,W], sum(a * l) [N,C]).
    fn attend(l: &Tensor, w: &Tensor, bias: &Tensor) -> (Tensor, Tensor) {
        let (n, _c, h, wd) = l.size4().expect("4-d feature map");
        let lf = l.flatten(2, -1); // [N, C, HW]
        let c = w.matmul(&lf) + bias.unsqueeze(-1); // [N, 1, HW]
                                                    // Softmax in f32 even under bf16: the maps are 4096 positions wide.
        let a = c.softmax(-1, Kind::Float).to_kind(lf.kind());
        let pooled = lf.matmul(&a.transpose(1, 2)).squeeze_dim(-1); // [N, C]
        (c.view([n, 1, h, wd]), pooled)
    }

    /// The reference's block, op(l + g) and sum(a * l) materialised.
    pub(super) fn forward_reference(
        &self,
        [l1, l2, l3]: [&Tensor; 3],
        g: &Tensor,
        kind: Kind,
    ) -> Attended {
        let conv = |x: &Tensor, w: &Tensor| {
            x.conv2d(&w.to_kind(kind), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
        };
        let block = |l: &Tensor, w: &Tensor| {
            let (n, c, h, wd) = l.size4().expect("4-d feature map");
            let comp = conv(&(l + g), w);
            let a = comp
                .view([n, 1, -1])
                .softmax(2, Kind::Float)
                .to_kind(kind)
                .view([n, 1, h, wd]);
            let pooled = (a.expand_as(l) * l)
                .view([n, c, -1])
                .sum_dim_intlist(2, false, None);
            (comp.view([n, 1, h, wd]), pooled)
        };
        let (c1, g1) = block(&conv(l1, &self.projector), &self.ops[0]);
        let (c2, g2) = block(l2, &self.ops[1]);
        let (c3, g3) = block(l3, &self.ops[2]);
        (Tensor::cat(&[g1, g2, g3], 1), [c1, c2, c3])
    }
}
