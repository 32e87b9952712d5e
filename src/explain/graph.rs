//! The reference network as an explicit graph over a model's named weights, in float32
//! with BatchNorm unfolded: the module structure captum's hooks see (each block conv ->
//! BN -> ReLU, then 2x2 max pooling), with the ReLU outputs exposed so guided
//! backpropagation can change their gradients.

use crate::model::LoadedModel;
use anyhow::{Context, Result};
use std::collections::HashMap;
use tch::{Kind, Tensor};

const BN_EPS: f64 = 1e-5;

/// The weights of one model, by their reference names.
pub struct Graph {
    vars: HashMap<String, Tensor>,
    attention: bool,
}

/// One forward pass: the six blocks' pre-activations and ReLU outputs, and the logits.
pub struct Pass {
    pub pre: Vec<Tensor>,
    pub relu: Vec<Tensor>,
    pub logits: Tensor,
}

impl Graph {
    pub fn new(model: &LoadedModel) -> Result<Self> {
        let vars = model.vs.variables();
        let graph = Graph {
            vars,
            attention: model.net.arch().is_attention(),
        };
        for k in 1..=6 {
            graph.var(&format!("conv_block{k}.0.weight"))?;
        }
        Ok(graph)
    }

    pub fn is_attention(&self) -> bool {
        self.attention
    }

    fn var(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .get(name)
            .with_context(|| format!("the model has no weight {name}"))
    }

    fn w(&self, name: &str) -> Tensor {
        // Names are checked in `new` (blocks) or belong to the detected architecture.
        self.vars[name].to_kind(Kind::Float)
    }

    /// Block k's (1-based) conv + BN on its input (pooled output of block k-1, or the image).
    fn pre_activation(&self, k: usize, x: &Tensor) -> Tensor {
        let (stride, pad) = if k == 6 { (3, 0) } else { (1, 1) };
        let p = format!("conv_block{k}");
        let bias = self
            .vars
            .get(&format!("{p}.0.bias"))
            .map(|b| b.to_kind(Kind::Float));
        let y = x.conv2d(
            &self.w(&format!("{p}.0.weight")),
            bias.as_ref(),
            [stride; 2],
            [pad; 2],
            [1, 1],
            1,
        );
        Tensor::batch_norm(
            &y,
            Some(&self.w(&format!("{p}.1.weight"))),
            Some(&self.w(&format!("{p}.1.bias"))),
            Some(&self.w(&format!("{p}.1.running_mean"))),
            Some(&self.w(&format!("{p}.1.running_var"))),
            false,
            0.1,
            BN_EPS,
            false,
        )
    }

    /// Logits from the block outputs l1 = relu[2], l2 = relu[3], l3 = relu[4] and the
    /// last block's output relu[5].
    pub fn head(&self, relu: &[Tensor]) -> Tensor {
        let g = relu[5].conv2d(
            &self.w("dense.weight"),
            Some(&self.w("dense.bias")),
            [2, 2],
            [0, 0],
            [1, 1],
            1,
        );
        let g = if g.size()[2] != 1 || g.size()[3] != 1 {
            g.adaptive_avg_pool2d([1, 1])
        } else {
            g
        };
        let feats = if self.attention {
            let op = |x: &Tensor, name: &str| {
                x.conv2d(&self.w(name), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
            };
            let est = |l: &Tensor, name: &str| {
                let (n, c, h, w) = l.size4().expect("4-d feature map");
                let a = op(&(l + &g), name)
                    .view([n, 1, -1])
                    .softmax(2, Kind::Float)
                    .view([n, 1, h, w]);
                (a.expand_as(l) * l)
                    .view([n, c, -1])
                    .sum_dim_intlist(2, false, None)
            };
            let l1 = op(&relu[2], "projector1.op.weight");
            Tensor::cat(
                &[
                    est(&l1, "attn1.op.weight"),
                    est(&relu[3], "attn2.op.weight"),
                    est(&relu[4], "attn3.op.weight"),
                ],
                1,
            )
        } else {
            g.flatten(1, -1)
        };
        feats.linear(&self.w("classify.weight"), Some(&self.w("classify.bias")))
    }

    /// Forward pass on [N,1,H,W]. With `cut`, every ReLU output is a fresh leaf that
    /// requires grad, so each block can be back-propagated on its own.
    pub fn forward(&self, x: &Tensor, cut: bool) -> Pass {
        let x = x.to_kind(Kind::Float);
        let mut pre = Vec::with_capacity(6);
        let mut relu: Vec<Tensor> = Vec::with_capacity(6);
        for k in 1..=6 {
            let input = match relu.last() {
                None => x.shallow_clone(),
                Some(r) => pool(r),
            };
            let z = self.pre_activation(k, &input);
            let r = z.relu();
            relu.push(if cut {
                r.detach().set_requires_grad(true)
            } else {
                r
            });
            pre.push(z);
        }
        let logits = self.head(&relu);
        Pass { pre, relu, logits }
    }

    /// The target logit of each row, [N], of a forward pass without the intermediates.
    pub fn score(&self, x: &Tensor, target: i64) -> Tensor {
        self.forward(x, false).logits.select(1, target)
    }
}

pub fn pool(t: &Tensor) -> Tensor {
    t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}
