//! A layer's inference weights (its BatchNorm folded in, cast to the compute's kind, in
//! its layout), made on the first pass and reused until a parameter changes. Made on every
//! pass, they read and wrote every weight each time: for ResNet-34 22-25 ms of a batch of
//! 16 at 256 (about 450 ms) in float32, and 18-21 ms of about 90 ms in bf16, on a 2-core
//! Intel Xeon.
//!
//! A weight is known unchanged by its storage and version counter, which every in-place
//! change through libtorch's ops bumps (an optimizer step, a load, a broadcast). The
//! BatchNorm's statistics are compared by value: libtorch's batch_norm, and the training
//! kernels of `model::fast`, update the running statistics without bumping their
//! counters, and they are a few values per channel.

use std::sync::{Mutex, PoisonError};
use tch::{Kind, Tensor};

/// What kept tensors were made from: the compute (kind, channels-last), each weight's
/// storage and version counter, and a copy of each statistic.
struct Key {
    compute: (Kind, bool),
    weights: Vec<(usize, i64)>,
    stats: Vec<Tensor>,
}

impl Key {
    fn holds_for(&self, other: &Key) -> bool {
        self.compute == other.compute
            && self.weights == other.weights
            && self.stats.len() == other.stats.len()
            && self.stats.iter().zip(&other.stats).all(|(a, b)| a.equal(b))
    }
}

/// One layer's kept inference weights (boxed: a layer holds one, and most never run at
/// inference).
#[derive(Default)]
pub struct Prepared(Mutex<Option<Box<Kept>>>);

/// The tensors made, and what from.
struct Kept {
    key: Key,
    made: Vec<Tensor>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

impl Prepared {
    /// `make()`'s tensors from `weights` and `stats` in the compute `(kind,
    /// channels_last)`: the kept ones while every weight is the same storage at the same
    /// version and every statistic holds the same values, else made now and kept. With
    /// autograd on (or without the shim that reads versions) they are made afresh: a kept
    /// tensor would carry a graph that the first backward pass frees.
    pub fn get(
        &self,
        weights: &[&Tensor],
        stats: &[&Tensor],
        compute: (Kind, bool),
        make: impl FnOnce() -> Vec<Tensor>,
    ) -> Vec<Tensor> {
        let Some(weights) = versions(weights) else {
            return make();
        };
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = Key {
            compute,
            weights,
            stats: stats.iter().map(|t| t.shallow_clone()).collect(),
        };
        if let Some(kept) = slot.as_deref() {
            if kept.key.holds_for(&key) {
                return kept.made.iter().map(Tensor::shallow_clone).collect();
            }
        }
        let made = make();
        // A copy of the statistics: the originals change in place.
        let key = Key {
            stats: stats.iter().map(|t| t.copy()).collect(),
            ..key
        };
        *slot = Some(Box::new(Kept {
            key,
            made: made.iter().map(Tensor::shallow_clone).collect(),
        }));
        made
    }
}

/// Each weight's storage and version, or None with autograd on or without the shim.
fn versions(weights: &[&Tensor]) -> Option<Vec<(usize, i64)>> {
    if shim::grad_enabled() {
        return None;
    }
    weights
        .iter()
        .map(|t| Some((t.data_ptr() as usize, shim::version(t)?)))
        .collect()
}

/// libtorch's grad mode and version counters, read through `src/model/fast/fused_conv.cpp`.
#[cfg(flarecast_fused_conv)]
mod shim {
    use std::ffi::{c_int, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_grad_enabled() -> c_int;
        fn fc_tensor_version(t: *const c_void) -> i64;
    }

    pub fn grad_enabled() -> bool {
        // SAFETY: reads libtorch's thread-local grad mode.
        unsafe { fc_grad_enabled() != 0 }
    }

    /// `t`'s version counter, which every in-place change (an optimizer step, a load)
    /// bumps.
    pub fn version(t: &Tensor) -> Option<i64> {
        // SAFETY: `t` is a live at::Tensor handle; the call only reads its counter.
        Some(unsafe { fc_tensor_version(t.as_ptr() as *const c_void) })
    }
}

/// Without the shim nothing is kept.
#[cfg(not(flarecast_fused_conv))]
mod shim {
    pub fn grad_enabled() -> bool {
        true
    }

    pub fn version(_: &tch::Tensor) -> Option<i64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const F32: (Kind, bool) = (Kind::Float, false);

    /// Made once while the sources are unchanged; made again after an in-place update of
    /// a weight (as an optimizer step does), after its storage changes, in another
    /// compute, and when a statistic's values change; never kept with autograd on.
    #[test]
    fn kept_until_the_source_changes() {
        let w = Tensor::ones([4], (Kind::Float, Device::Cpu));
        let prepared = Prepared::default();
        let made = std::cell::Cell::new(0);
        let stat = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let get = |w: &Tensor, c: (Kind, bool)| {
            prepared.get(&[w], &[&stat], c, || {
                made.set(made.get() + 1);
                vec![w * 2.0]
            })
        };
        tch::no_grad(|| {
            let first = get(&w, F32);
            let again = get(&w, F32);
            assert_eq!(made.get(), 1);
            assert_eq!(first[0].data_ptr(), again[0].data_ptr());
            let _ = w.shallow_clone().fill_(3.0);
            let after = get(&w, F32);
            assert_eq!(made.get(), 2);
            assert_eq!(after[0].double_value(&[0]), 6.0);
            let bf16 = (Kind::BFloat16, false);
            get(&w, bf16);
            assert_eq!(made.get(), 3);
            let moved = w.copy();
            get(&moved, bf16);
            assert_eq!(made.get(), 4);
            // A statistic written behind its version counter, as batch_norm does.
            get(&w, F32);
            assert_eq!(made.get(), 5);
            let _ = stat.shallow_clone().fill_(0.5);
            get(&w, F32);
            get(&w, F32);
            assert_eq!(made.get(), 6);
        });
        get(&w, F32);
        get(&w, F32);
        assert_eq!(made.get(), 8);
    }

    /// A network's inference after training-mode passes (running statistics updated by
    /// libtorch's batch_norm or flarecast's training kernels, behind their version
    /// counters) and an optimizer-like update equals a fresh copy's, for the paper's
    /// network and torchvision's (AlexNet for its classifier's kept bf16 Linears), in
    /// float32 and bf16 channels-last.
    #[test]
    fn inference_sees_updated_statistics_and_weights() {
        use crate::model::{Arch, Compute, InitScheme, Network};
        use tch::nn;
        tch::manual_seed(3);
        let xs = Tensor::rand([2, 1, 192, 192], (Kind::Float, Device::Cpu));
        let other = Tensor::rand([2, 1, 192, 192], (Kind::Float, Device::Cpu));
        for arch in [
            Arch::Attention,
            Arch::ResNet18,
            Arch::MobileNetV2,
            Arch::AlexNet,
        ] {
            for kind in [Kind::Float, Kind::BFloat16] {
                let compute = Compute::new(kind, true);
                let vs = nn::VarStore::new(Device::Cpu);
                let mut net = Network::new(&vs.root(), arch, InitScheme::KaimingUniform);
                net.set_compute(compute);
                let logits = |net: &Network| tch::no_grad(|| net.forward_t(&xs, false).logits);
                let before = logits(&net);
                assert!(before.equal(&logits(&net)), "{arch:?} {kind:?}");
                // Training-mode passes move the running statistics only.
                tch::no_grad(|| {
                    net.forward_t(&other, true);
                    net.forward_t(&(&other * 0.5), true);
                });
                let after_stats = logits(&net);
                // A network built now with `vs`'s values: nothing kept from before.
                let fresh = |vs: &nn::VarStore| {
                    let mut fresh_vs = nn::VarStore::new(Device::Cpu);
                    let mut fresh =
                        Network::new(&fresh_vs.root(), arch, InitScheme::KaimingUniform);
                    fresh.set_compute(compute);
                    fresh_vs.copy(vs).unwrap();
                    logits(&fresh)
                };
                // AlexNet has no BatchNorm: nothing for those passes to move.
                let has_bn = arch != Arch::AlexNet;
                assert_eq!(!after_stats.equal(&before), has_bn, "{arch:?} {kind:?}");
                assert!(after_stats.equal(&fresh(&vs)), "{arch:?} {kind:?}");
                // An in-place update of every weight, as an optimizer step makes.
                tch::no_grad(|| {
                    for (_, mut v) in vs.variables() {
                        if v.kind() == Kind::Float {
                            let _ = v.g_mul_scalar_(0.9);
                        }
                    }
                });
                let after_step = logits(&net);
                assert!(!after_step.equal(&after_stats), "{arch:?} {kind:?}");
                assert!(after_step.equal(&fresh(&vs)), "{arch:?} {kind:?}");
            }
        }
    }
}
