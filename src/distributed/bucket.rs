//! Tensors as one flat buffer per collective, as DDP's buckets: gradients (and the
//! step's loss) in one all-reduce per step, weights and buffers in one broadcast per
//! element type. Variables are taken in name order: `VarStore::variables` is a HashMap,
//! and ranks that iterated it in their own orders would reduce mismatched buffers.

use super::Group;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

/// `vs`'s variables sorted by name.
fn sorted(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|(a, _), (b, _)| a.cmp(b));
    v
}

/// The trainable variables of a network whose gradients travel together.
pub struct GradBucket {
    vars: Vec<(String, Tensor)>,
    kind: Kind,
    device: Device,
}

impl GradBucket {
    pub fn new(vs: &nn::VarStore) -> Result<GradBucket> {
        let vars: Vec<_> = sorted(vs)
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let Some((_, first)) = vars.first() else {
            bail!("the network has no trainable variables");
        };
        let kind = first.kind();
        if let Some((name, t)) = vars.iter().find(|(_, t)| t.kind() != kind) {
            bail!("variable {name} is {:?}, the others {kind:?}", t.kind());
        }
        Ok(GradBucket {
            device: first.device(),
            vars,
            kind,
        })
    }

    /// Elements of the flat buffer without the extra values.
    pub fn numel(&self) -> usize {
        self.vars.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Gives every variable a (zero) gradient, so a rank whose share of a batch is empty
    /// still has gradients to receive the others' into.
    pub fn prime(&self) {
        tch::no_grad(|| {
            for (_, t) in &self.vars {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        });
        let undefined: Vec<&Tensor> = (self.vars.iter().map(|(_, t)| t))
            .filter(|t| !t.grad().defined())
            .collect();
        if !undefined.is_empty() {
            let zero = undefined
                .iter()
                .map(|t| t.sum(self.kind))
                .fold(Tensor::zeros([], (self.kind, self.device)), |a, b| a + b)
                * 0.0;
            zero.backward();
        }
    }

    /// The gradients in name order, then `extra`, as one 1-D tensor.
    pub fn flatten(&self, extra: &[f64]) -> Tensor {
        let mut parts: Vec<Tensor> = self
            .vars
            .iter()
            .map(|(_, t)| {
                let g = t.grad();
                if g.defined() {
                    g.detach().reshape([-1])
                } else {
                    Tensor::zeros([t.numel() as i64], (self.kind, self.device))
                }
            })
            .collect();
        if !extra.is_empty() {
            parts.push(
                Tensor::from_slice(extra)
                    .to_kind(self.kind)
                    .to_device(self.device),
            );
        }
        Tensor::cat(&parts, 0)
    }

    /// Writes `flat` (as [`GradBucket::flatten`] laid it out) back into the gradients and
    /// returns its extra values.
    pub fn unflatten(&self, flat: &Tensor) -> Result<Vec<f64>> {
        let flat = flat.to_device(self.device);
        let n = self.numel() as i64;
        let total = flat.size1()?;
        if total < n {
            bail!("a bucket of {total} values for {n} gradient elements");
        }
        tch::no_grad(|| -> Result<()> {
            let mut off = 0i64;
            for (name, t) in &self.vars {
                let k = t.numel() as i64;
                let mut g = t.grad();
                if !g.defined() {
                    bail!("variable {name} has no gradient to receive into");
                }
                g.f_copy_(&flat.narrow(0, off, k).view_as(&g))?;
                off += k;
            }
            Ok(())
        })?;
        Ok(Vec::<f64>::try_from(
            flat.narrow(0, n, total - n).to_kind(Kind::Double),
        )?)
    }

    /// Sums every rank's gradients (and `extra`) in one all-reduce; returns the summed
    /// extra values.
    pub fn all_reduce(&self, group: &Group, extra: &[f64], what: &str) -> Result<Vec<f64>> {
        let mut flat = self.flatten(extra);
        group.all_reduce_sum(&mut flat, what)?;
        self.unflatten(&flat)
    }
}

/// Copies rank 0's variables (weights and BatchNorm buffers) into every rank's `vs`: one
/// broadcast per element type, in name order.
pub fn broadcast_variables(group: &Group, vs: &nn::VarStore, what: &str) -> Result<()> {
    let mut by_kind: BTreeMap<String, Vec<(String, Tensor)>> = BTreeMap::new();
    for (name, t) in sorted(vs) {
        by_kind
            .entry(format!("{:?}", t.kind()))
            .or_default()
            .push((name, t));
    }
    for vars in by_kind.values() {
        let parts: Vec<Tensor> = vars.iter().map(|(_, t)| t.detach().reshape([-1])).collect();
        let mut flat = Tensor::cat(&parts, 0);
        group.broadcast(&mut flat, 0, what)?;
        tch::no_grad(|| -> Result<()> {
            let mut off = 0i64;
            for (_, t) in vars {
                let k = t.numel() as i64;
                let mut dst = t.shallow_clone();
                dst.f_copy_(&flat.narrow(0, off, k).view_as(t).to_device(t.device()))?;
                off += k;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Sums `values` over the group (in f64), in one all-reduce.
pub fn all_reduce_values(group: &Group, values: &[f64], what: &str) -> Result<Vec<f64>> {
    let mut t = Tensor::from_slice(values);
    group.all_reduce_sum(&mut t, what)?;
    Ok(Vec::<f64>::try_from(t.to_device(Device::Cpu))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_and_unflatten_round_trip_in_name_order() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        // Created out of name order.
        let b = root.var("b", &[2, 3], nn::Init::Const(0.0));
        let a = root.var("a", &[4], nn::Init::Const(0.0));
        let _buffer = root.zeros_no_train("c_running", &[5]);
        let bucket = GradBucket::new(&vs).unwrap();
        assert_eq!(bucket.numel(), 10);
        bucket.prime();
        assert!(a.grad().defined() && b.grad().defined());
        let loss = (&a * 2.0).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float);
        loss.backward();
        let flat = bucket.flatten(&[7.5]);
        let v = Vec::<f64>::try_from(flat.to_kind(Kind::Double)).unwrap();
        assert_eq!(v, [2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 7.5]);
        let doubled = &flat * 2.0;
        assert_eq!(bucket.unflatten(&doubled).unwrap(), vec![15.0]);
        assert_eq!(a.grad().sum(Kind::Float).double_value(&[]), 16.0);
        assert_eq!(b.grad().sum(Kind::Float).double_value(&[]), 36.0);
        assert!(bucket
            .unflatten(&Tensor::zeros([3], (Kind::Float, Device::Cpu)))
            .is_err());
    }
}
