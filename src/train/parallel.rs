//! Data-parallel replicas, as `nn.DataParallel`: the batch is split across devices, each
//! replica runs forward and backward on its share in its own thread, the gradients are
//! summed on the first device, one optimizer step is taken there, and the weights (and
//! BatchNorm running statistics, hence replica 0's) are broadcast back.

use crate::model::{Arch, Compute, InitScheme, Network};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

/// One copy of the network on one device.
pub struct Replica {
    pub vs: nn::VarStore,
    pub net: Network,
}

impl Replica {
    pub fn new(device: Device, arch: Arch, init: InitScheme, compute: Compute) -> Self {
        let vs = nn::VarStore::new(device);
        let mut net = Network::new(&vs.root(), arch, init);
        net.set_compute(compute);
        Replica { vs, net }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }
}

/// The replicas; `replicas[0]` holds the master weights the optimizer updates.
pub struct Replicas {
    pub replicas: Vec<Replica>,
    /// The cross-entropy's weights of classes 0 and 1 (`--balance weighted-loss`); None:
    /// every row counts alike.
    pub class_weights: Option<[f64; 2]>,
}

/// What one training step returns: the mean loss over the whole batch and the logits of
/// every row (on the first device, in batch order).
pub struct StepOutput {
    pub loss: f64,
    pub logits: Tensor,
    /// With class weights, this share's rows of class 0 and of class 1: whole numbers, so
    /// summed over a group they give every rank, and any split of the batch, the same
    /// summed weight for the step to divide by (`step::batch_weight`).
    pub class_rows: [f64; 2],
}

impl Replicas {
    /// One replica per device, all with the same initial weights as the first.
    pub fn new(devices: &[Device], arch: Arch, init: InitScheme, compute: Compute) -> Result<Self> {
        if devices.is_empty() {
            bail!("no device to train on");
        }
        let replicas = devices
            .iter()
            .map(|&d| Replica::new(d, arch, init, compute))
            .collect();
        let r = Replicas {
            replicas,
            class_weights: None,
        };
        r.broadcast()?;
        Ok(r)
    }

    pub fn master(&self) -> &Replica {
        &self.replicas[0]
    }

    pub fn master_mut(&mut self) -> &mut Replica {
        &mut self.replicas[0]
    }

    /// Copies every variable and buffer of replica 0 to the others.
    pub fn broadcast(&self) -> Result<()> {
        if self.replicas.len() < 2 {
            return Ok(());
        }
        let src = self.replicas[0].vs.variables();
        tch::no_grad(|| -> Result<()> {
            for r in &self.replicas[1..] {
                let mut dst = r.vs.variables();
                for (name, t) in &src {
                    let d = dst
                        .get_mut(name)
                        .context("replicas differ in their variables")?;
                    d.f_copy_(&t.to_device(d.device()))?;
                }
            }
            Ok(())
        })
    }

    /// Forward and backward of one batch, leaving the summed gradients on replica 0's
    /// variables (the caller zeroes gradients before and steps the optimizer after).
    /// The loss is the mean cross-entropy over the whole batch, as with one device.
    pub fn forward_backward(&mut self, images: &Tensor, targets: &Tensor) -> Result<StepOutput> {
        let rows = images.size()[0];
        self.forward_backward_share(images, targets, rows)
    }

    /// As [`Replicas::forward_backward`] on this process's share of a batch of `batch`
    /// rows (the rest are other ranks'): the loss is the share's summed cross-entropy
    /// over `batch`, so the ranks' gradients add up to those of the batch mean.
    ///
    /// With class weights the loss is the rows' weighted cross-entropy summed over
    /// `batch`, and the step divides it (and the gradients) by the batch's summed weight
    /// over its rows: torch's `CrossEntropyLoss(weight=w)`, whose mean is taken over the
    /// rows' weights. Replicas in one process and ranks of a group take the same
    /// arithmetic.
    pub fn forward_backward_share(
        &mut self,
        images: &Tensor,
        targets: &Tensor,
        batch: i64,
    ) -> Result<StepOutput> {
        let rows = images.size()[0];
        let n = self.replicas.len().min(rows.max(1) as usize);
        if n <= 1 && rows == batch && self.class_weights.is_none() {
            let r = &self.replicas[0];
            let out = r.net.forward_t(&images.to_device(r.device()), true);
            let loss = out
                .logits
                .cross_entropy_for_logits(&targets.to_device(r.device()));
            loss.backward();
            return Ok(StepOutput {
                loss: loss.double_value(&[]),
                logits: out.logits.detach(),
                class_rows: [0.0; 2],
            });
        }
        let class_rows = match self.class_weights {
            None => [0.0; 2],
            Some(_) => {
                let t = Vec::<i64>::try_from(targets.to_device(Device::Cpu))?;
                let positive = t.iter().filter(|&&y| y == 1).count();
                [(t.len() - positive) as f64, positive as f64]
            }
        };
        // Shards of (nearly) equal size, as torch.chunk / DataParallel's scatter.
        let image_shards = images.chunk(n as i64, 0);
        let target_shards = targets.chunk(n as i64, 0);
        let class_weights = self.class_weights;
        let results: Vec<Result<(f64, Tensor)>> = std::thread::scope(|s| {
            let handles: Vec<_> = self.replicas[..image_shards.len()]
                .iter_mut()
                .zip(image_shards.into_iter().zip(target_shards))
                .map(|(r, (x, y))| {
                    s.spawn(move || -> Result<(f64, Tensor)> {
                        let dev = r.device();
                        let out = r.net.forward_t(&x.to_device(dev), true);
                        // Sum over the shard / whole batch: the shards' gradients add up
                        // to the gradient of the batch mean (with weights, to it times
                        // the batch's summed weight over its rows).
                        let w = class_weights.map(|w| {
                            Tensor::from_slice(&w)
                                .to_kind(out.logits.kind())
                                .to_device(dev)
                        });
                        let loss = out.logits.cross_entropy_loss(
                            &y.to_device(dev),
                            w,
                            tch::Reduction::Sum,
                            -100,
                            0.0,
                        ) / batch as f64;
                        loss.backward();
                        Ok((loss.double_value(&[]), out.logits.detach()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a replica thread panicked"))
                })
                .collect()
        });
        let mut loss = 0.0;
        let mut logits = Vec::new();
        let dev0 = self.replicas[0].device();
        for r in results {
            let (l, lg) = r?;
            loss += l;
            logits.push(lg.to_device(dev0));
        }
        self.reduce_gradients()?;
        Ok(StepOutput {
            loss,
            logits: Tensor::cat(&logits, 0),
            class_rows,
        })
    }

    /// Adds every replica's gradients into replica 0's.
    fn reduce_gradients(&self) -> Result<()> {
        let master: HashMap<String, Tensor> = self.replicas[0].vs.variables();
        tch::no_grad(|| -> Result<()> {
            for r in &self.replicas[1..] {
                for (name, t) in r.vs.variables() {
                    if !t.requires_grad() {
                        continue;
                    }
                    let g = t.grad();
                    if !g.defined() {
                        continue;
                    }
                    let m = master
                        .get(&name)
                        .context("replicas differ in their variables")?;
                    let mut mg = m.grad();
                    if mg.defined() {
                        let _ = mg.f_add_(&g.to_device(m.device()))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Multiplies replica 0's gradients by `factor`.
    pub fn scale_master_grads(&self, factor: f64) {
        tch::no_grad(|| {
            for t in self.replicas[0].vs.trainable_variables() {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(factor);
                }
            }
        });
    }

    /// Zeroes the gradients of the non-master replicas (the optimizer zeroes the master's).
    pub fn zero_replica_grads(&self) {
        for r in &self.replicas[1..] {
            for t in r.vs.trainable_variables() {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
    }
}

/// Cross-entropy summed over a batch, in f64 for accumulation.
pub fn summed_loss(logits: &Tensor, targets: &Tensor) -> f64 {
    logits
        .to_kind(Kind::Float)
        .cross_entropy_loss::<Tensor>(targets, None, tch::Reduction::Sum, -100, 0.0)
        .double_value(&[])
}
