//! The three linear-attention estimators, rewritten as matmuls.
//!
//! Reference block: c = op(l + g); a = softmax of c over positions; g_out = sum(a * l).
//! `op` is a 1x1 convolution without bias, i.e. linear in the channels, so
//! op(l + g) = op(l) + op(g), and the weighted sum is a batched matmul. For estimator 1,
//! l = projector(l1) is linear too, so sum(a * P l1) = P sum(a * l1) and the
//! N x 512 x 64 x 64 projection is never materialised.

use crate::model::layers::Attention;
use tch::{Kind, Tensor};

/// concat(g1, g2, g3) [N, 1536] and the compatibility maps [c1, c2, c3].
pub(super) fn forward(
    attn: &Attention,
    [l1, l2, l3]: [&Tensor; 3],
    g: &Tensor,
    kind: Kind,
) -> (Tensor, [Tensor; 3]) {
    let gv = g.flatten(1, -1); // [N, 512]
    let proj = attn.projector.flatten(1, -1).to_kind(kind); // [512, 256]
    let w: Vec<Tensor> = attn
        .ops
        .iter()
        .map(|o| o.flatten(1, -1).to_kind(kind))
        .collect(); // [1, 512]
                    // Estimator 1 in l1's 256 channels: the compatibility weight folded through P.
    let w1_l1 = w[0].matmul(&proj); // [1, 256]
    let (c1, s1) = attend(l1, &w1_l1, &gv.matmul(&w[0].tr()));
    let g1 = s1.matmul(&proj.tr()); // [N, 512]
    let (c2, g2) = attend(l2, &w[1], &gv.matmul(&w[1].tr()));
    let (c3, g3) = attend(l3, &w[2], &gv.matmul(&w[2].tr()));
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
