//! `AttnNet`: one network's parameters (in a VarStore, under the reference's names) and
//! the compute its forward passes use. `forward_t` runs the fast path; `reference()`
//! gives the reference network over the same tensors.

use super::layers::Layers;
use super::reference::Reference;
use super::{fast, Arch, Compute, InitScheme, Output};
use tch::{nn, Tensor};

/// The attention-based CNN (or standard CNN) of the paper.
#[derive(Debug)]
pub struct AttnNet {
    layers: Layers,
    compute: Compute,
}

impl AttnNet {
    /// Builds the network under `p` (the root of a VarStore) with the reference's names.
    pub fn new(p: &nn::Path, arch: Arch, init: InitScheme) -> Self {
        AttnNet {
            layers: Layers::new(p, arch, init),
            compute: Compute::default(),
        }
    }

    pub fn arch(&self) -> Arch {
        self.layers.arch
    }

    /// Sets the compute precision and layout of later forward passes; the variables stay
    /// float32 (mixed precision with float32 master weights).
    pub fn set_compute(&mut self, compute: Compute) {
        self.compute = compute;
    }

    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Forward pass on [N,1,H,W] inputs in [0,1] (the fast path, in this net's compute).
    /// `train` selects BatchNorm's batch statistics (and updates the running ones).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Output {
        fast::forward_t(&self.layers, self.compute, xs, train)
    }

    /// The reference network over these weights (float32, as the paper's code).
    pub fn reference(&self) -> Reference<'_> {
        Reference::new(&self.layers)
    }

    /// `reference().forward_t(xs, train)`.
    pub fn forward_reference(&self, xs: &Tensor, train: bool) -> Output {
        self.reference().forward_t(xs, train)
    }
}
