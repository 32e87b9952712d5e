//! `AttnNet`: one network's parameters (in a VarStore, under the reference's names) and
//! the compute its forward passes use. `forward_t` runs the fast path; `reference()`
//! gives the reference network over the same tensors.

use super::layers::Layers;
use super::reference::Reference;
use super::vision::VisionNet;
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
        fast::forward_t(&self.layers, self.compute.pass(train), xs, train)
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

/// Any network flarecast runs: what every command sees. The paper's two keep their own
/// implementation (its reference and fused fast path); the others are torchvision's.
#[derive(Debug)]
pub enum Network {
    /// Both boxed: their layers' handles differ in size, and a model holds one network.
    Paper(Box<AttnNet>),
    Vision(Box<VisionNet>),
}

impl Network {
    /// Builds `arch` under `p`. `init` is the paper's scheme for its two networks; the
    /// others use torchvision's own.
    pub fn new(p: &nn::Path, arch: Arch, init: InitScheme) -> Self {
        if arch.is_paper() {
            Network::Paper(Box::new(AttnNet::new(p, arch, init)))
        } else {
            Network::Vision(Box::new(VisionNet::new(p, arch)))
        }
    }

    pub fn arch(&self) -> Arch {
        match self {
            Network::Paper(n) => n.arch(),
            Network::Vision(n) => n.arch(),
        }
    }

    /// Sets the compute precision and layout of later forward passes; the variables stay
    /// float32.
    pub fn set_compute(&mut self, compute: Compute) {
        match self {
            Network::Paper(n) => n.set_compute(compute),
            Network::Vision(n) => n.set_compute(compute),
        }
    }

    pub fn compute(&self) -> Compute {
        match self {
            Network::Paper(n) => n.compute(),
            Network::Vision(n) => n.compute(),
        }
    }

    /// Forward pass on [N,1,H,W] inputs in [0,1], in this net's compute.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Output {
        match self {
            Network::Paper(n) => n.forward_t(xs, train),
            Network::Vision(n) => n.forward_t(xs, train),
        }
    }

    /// The paper's network, where this is one of its two.
    pub fn paper(&self) -> Option<&AttnNet> {
        match self {
            Network::Paper(n) => Some(n.as_ref()),
            Network::Vision(_) => None,
        }
    }

    /// The torchvision network, where this is one.
    pub fn vision(&self) -> Option<&VisionNet> {
        match self {
            Network::Paper(_) => None,
            Network::Vision(n) => Some(n.as_ref()),
        }
    }
}
