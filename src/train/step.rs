//! One training step, the one `train` takes and `bench train` times: zero the gradients,
//! forward and backward of this process's share of the batch on the replicas, the
//! gradients (and the batch loss with them) summed over the process group, one update
//! of the recipe's optimizer, the weights copied back to the replicas.

use super::parallel::{Replicas, StepOutput};
use super::peers::Peers;
use super::sgd_update;
use crate::device::synchronize;
use crate::recipe::{Optimizer, Recipe};
use anyhow::Result;
use std::time::{Duration, Instant};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Plain SGD as the reference trains: no momentum, no dampening, L2 weight decay.
pub fn sgd(vs: &nn::VarStore, lr: f64, weight_decay: f64) -> Result<nn::Optimizer> {
    let sgd = nn::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        wd: weight_decay,
        nesterov: false,
    };
    Ok(sgd.build(vs, lr)?)
}

/// AdamW's eps, torch.optim.AdamW's default.
pub const ADAMW_EPS: f64 = 1e-8;

/// The recipe's optimizer over `vs`'s trainable variables at its rate, as torch.optim
/// has it: SGD with the recipe's momentum (no dampening, no Nesterov) and L2 weight decay
/// (the paper's with momentum 0: [`sgd`]), or AdamW with its betas, eps [`ADAMW_EPS`], no
/// AMSGrad, bias-corrected moments and decoupled weight decay (libtorch's
/// `torch::optim::AdamW`).
pub fn optimizer(vs: &nn::VarStore, recipe: &Recipe) -> Result<nn::Optimizer> {
    match recipe.optimizer {
        Optimizer::Sgd => {
            let sgd = nn::Sgd {
                momentum: recipe.momentum,
                dampening: 0.0,
                wd: recipe.weight_decay,
                nesterov: false,
            };
            Ok(sgd.build(vs, recipe.lr)?)
        }
        Optimizer::AdamW => {
            let adamw = nn::AdamW {
                beta1: recipe.betas.0,
                beta2: recipe.betas.1,
                wd: recipe.weight_decay,
                eps: ADAMW_EPS,
                amsgrad: false,
            };
            Ok(adamw.build(vs, recipe.lr)?)
        }
    }
}

/// The summed class weight of a batch of `batch_rows` rows over its rows, from its rows of
/// class 0 and 1, the weights taken as float32 as the loss takes them: what the step
/// divides a weighted loss summed over the rows by to make it the weighted mean.
pub fn batch_weight(class_weights: [f64; 2], class_rows: [f64; 2], batch_rows: usize) -> f64 {
    let w = class_weights.map(|w| f64::from(w as f32));
    (w[0] * class_rows[0] + w[1] * class_rows[1]) / batch_rows as f64
}

/// A recipe's optimizer as a step uses it: libtorch's, whose plain SGD (no momentum) update
/// runs as one pass over each parameter (`sgd_update`) where that applies, bitwise the
/// same.
pub struct StepOptimizer {
    opt: nn::Optimizer,
    /// (lr, weight decay) where the optimizer is plain SGD.
    plain_sgd: Option<(f64, f64)>,
}

impl StepOptimizer {
    /// The recipe's optimizer over `vs`'s trainable variables ([`optimizer`]).
    pub fn new(vs: &nn::VarStore, recipe: &Recipe) -> Result<Self> {
        let plain = recipe.optimizer == Optimizer::Sgd && recipe.momentum == 0.0;
        Ok(StepOptimizer {
            opt: optimizer(vs, recipe)?,
            plain_sgd: plain.then_some((recipe.lr, recipe.weight_decay)),
        })
    }

    /// The paper's SGD ([`sgd`]).
    pub fn sgd(vs: &nn::VarStore, lr: f64, weight_decay: f64) -> Result<Self> {
        Ok(StepOptimizer {
            opt: sgd(vs, lr, weight_decay)?,
            plain_sgd: Some((lr, weight_decay)),
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
        if let Some((rate, _)) = &mut self.plain_sgd {
            *rate = lr;
        }
    }

    pub fn zero_grad(&mut self) {
        self.opt.zero_grad();
    }

    /// One update of `vs`'s trainable variables (those the optimizer was built over).
    pub fn step(&mut self, vs: &nn::VarStore) {
        if let Some((lr, wd)) = self.plain_sgd {
            if sgd_update::update(&vs.trainable_variables(), lr, wd) {
                return;
            }
        }
        self.opt.step();
    }

    /// zero_grad, backward of `loss`, step.
    pub fn backward_step(&mut self, vs: &nn::VarStore, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step(vs);
    }
}

/// The replicas, their optimizer and the peers they train with.
pub struct Stepper {
    pub replicas: Replicas,
    pub peers: Peers,
    opt: StepOptimizer,
    /// Time spent in the gradients' all-reduce, the device synchronised around it (only
    /// where `time_reduction` is set: a bench wants it, training does not wait for it).
    pub reducing: Duration,
    pub time_reduction: bool,
}

impl Stepper {
    /// The recipe's optimizer over the master replica's variables at its rate.
    pub fn new(replicas: Replicas, peers: Peers, recipe: &Recipe) -> Result<Stepper> {
        let opt = StepOptimizer::new(&replicas.master().vs, recipe)?;
        Ok(Stepper {
            replicas,
            peers,
            opt,
            reducing: Duration::ZERO,
            time_reduction: false,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
    }

    /// A step on this process's rows (`images`, `targets`) of a batch of `batch_rows` rows.
    /// Returns the whole batch's mean loss and this process's logits. The weights are
    /// updated only when that loss is finite, so a diverging step leaves them as they were
    /// and the caller reports it.
    pub fn step(
        &mut self,
        images: &Tensor,
        targets: &Tensor,
        batch_rows: usize,
        what: &str,
    ) -> Result<StepOutput> {
        self.opt.zero_grad();
        self.replicas.zero_replica_grads();
        // In a group the bucket's gradients are zeroed in place: a rank with no rows still
        // receives the others'.
        self.peers.prime();
        let out = if images.size()[0] == 0 {
            StepOutput {
                loss: 0.0,
                logits: Tensor::zeros([0, 2], (Kind::Float, Device::Cpu)),
                class_rows: [0.0; 2],
            }
        } else {
            self.replicas
                .forward_backward_share(images, targets, batch_rows as i64)?
        };
        // The batch loss (and with class weights the shares' rows of each class) rides in
        // the gradients' bucket: one all-reduce per step.
        let weights = self.replicas.class_weights;
        let (loss, class_rows) = if self.peers.is_group() {
            let device = images.device();
            if self.time_reduction {
                synchronize(device);
            }
            let t = Instant::now();
            let extra = match weights {
                Some(_) => vec![out.loss, out.class_rows[0], out.class_rows[1]],
                None => vec![out.loss],
            };
            let summed = self.peers.sum_gradients(&extra, what)?;
            if self.time_reduction {
                synchronize(device);
                self.reducing += t.elapsed();
            }
            let rows = match weights {
                Some(_) => [summed[1], summed[2]],
                None => [0.0; 2],
            };
            (summed[0], rows)
        } else {
            (out.loss, out.class_rows)
        };
        // The weighted mean: the sums over the batch's rows divided by its summed weight.
        let loss = match weights {
            Some(w) => {
                let weight = batch_weight(w, class_rows, batch_rows);
                self.replicas.scale_master_grads(1.0 / weight);
                loss / weight
            }
            None => loss,
        };
        if loss.is_finite() {
            self.opt.step(&self.replicas.master().vs);
            self.replicas.broadcast()?;
        }
        Ok(StepOutput {
            loss,
            logits: out.logits,
            class_rows,
        })
    }
}
