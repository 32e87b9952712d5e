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
    /// With class weights, on a share of a batch: the share's summed row weights over the
    /// batch's rows. The loss and gradients are sums over the batch's rows, so the group's
    /// sum of these is what they still have to be divided by to be the weighted mean. 1
    /// when the loss is already the batch's mean (the whole batch here, or no weights).
    pub weight: f64,
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
    /// With class weights the mean is torch's `CrossEntropyLoss(weight=w)`: the rows'
    /// weighted cross-entropy summed over the sum of their weights, the whole batch's. A
    /// whole batch divides by its own; a share divides by `batch` and reports its weights'
    /// sum over `batch` (`StepOutput::weight`), for the group to divide by once summed.
    pub fn forward_backward_share(
        &mut self,
        images: &Tensor,
        targets: &Tensor,
        batch: i64,
    ) -> Result<StepOutput> {
        let rows = images.size()[0];
        let n = self.replicas.len().min(rows.max(1) as usize);
        let weights = self
            .class_weights
            .map(|w| Tensor::from_slice(&w).to_kind(Kind::Float));
        let (denominator, weight) = match &weights {
            None => (batch as f64, 1.0),
            Some(w) => {
                let rows_weight = w
                    .index_select(0, &targets.to_device(Device::Cpu))
                    .sum(Kind::Double)
                    .double_value(&[]);
                if rows == batch {
                    (rows_weight, 1.0)
                } else {
                    (batch as f64, rows_weight / batch as f64)
                }
            }
        };
        if n <= 1 && rows == batch {
            let r = &self.replicas[0];
            let dev = r.device();
            let out = r.net.forward_t(&images.to_device(dev), true);
            let targets = targets.to_device(dev);
            let loss = match &weights {
                None => out.logits.cross_entropy_for_logits(&targets),
                Some(w) => out.logits.log_softmax(-1, Kind::Float).g_nll_loss(
                    &targets,
                    Some(w.to_device(dev)),
                    tch::Reduction::Mean,
                    -100,
                ),
            };
            loss.backward();
            return Ok(StepOutput {
                loss: loss.double_value(&[]),
                logits: out.logits.detach(),
                weight,
            });
        }
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
                        // Sum over the shard / the batch's denominator: the shards'
                        // gradients add up to the gradient of the batch mean.
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
                        ) / denominator;
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
            weight,
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
