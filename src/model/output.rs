//! What a forward pass returns, on either implementation.

use tch::{Kind, Tensor};

pub struct Output {
    /// [N, 2] logits (NF, FL), float32.
    pub logits: Tensor,
    /// The pre-softmax compatibility maps c1 [N,1,H/4,W/4], c2 [N,1,H/8,W/8],
    /// c3 [N,1,H/16,W/16] of the attention net; `None` for the standard CNN.
    pub maps: Option<[Tensor; 3]>,
    /// The last convolution block's output (conv_block6, 2x2 at 256), for Grad-CAM.
    pub features: Tensor,
    /// conv_block5's output l3 (16x16 at 256), the last map fine enough for Grad-CAM;
    /// `None` on the standard CNN's fast path, which only ever needs it pooled.
    pub l3: Option<Tensor>,
}

impl Output {
    /// P(FL) = softmax(logits)[:, 1], as f32 [N].
    pub fn flare_prob(&self) -> Tensor {
        self.logits
            .to_kind(Kind::Float)
            .softmax(-1, Kind::Float)
            .select(1, 1)
    }
}
