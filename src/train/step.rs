//! One training step, the one `train` takes and `bench train` times: zero the gradients,
//! forward and backward of this process's share of the batch on the replicas, the
//! gradients (and the batch loss with them) summed over the process group, one SGD
//! update, the weights copied back to the replicas.

use super::parallel::{Replicas, StepOutput};
use super::peers::Peers;
use crate::device::synchronize;
use crate::recipe::Recipe;
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

/// The replicas, their optimizer and the peers they train with.
pub struct Stepper {
    pub replicas: Replicas,
    pub peers: Peers,
    opt: nn::Optimizer,
    /// Time spent in the gradients' all-reduce, the device synchronised around it (only
    /// where `time_reduction` is set: a bench wants it, training does not wait for it).
    pub reducing: Duration,
    pub time_reduction: bool,
}

impl Stepper {
    /// SGD over the master replica's variables at `recipe`'s rate and weight decay.
    pub fn new(replicas: Replicas, peers: Peers, recipe: &Recipe) -> Result<Stepper> {
        let opt = sgd(&replicas.master().vs, recipe.lr, recipe.weight_decay)?;
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
            }
        } else {
            self.replicas
                .forward_backward_share(images, targets, batch_rows as i64)?
        };
        // The batch loss rides in the gradients' bucket: one all-reduce per step.
        let loss = if self.peers.is_group() {
            let device = images.device();
            if self.time_reduction {
                synchronize(device);
            }
            let t = Instant::now();
            let summed = self.peers.sum_gradients(&[out.loss], what)?;
            if self.time_reduction {
                synchronize(device);
                self.reducing += t.elapsed();
            }
            summed[0]
        } else {
            out.loss
        };
        if loss.is_finite() {
            self.opt.step();
            self.replicas.broadcast()?;
        }
        Ok(StepOutput {
            loss,
            logits: out.logits,
        })
    }
}
