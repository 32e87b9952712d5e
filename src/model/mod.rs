//! The paper's networks: `AttnNet` with `attention: true` (three linear-attention
//! estimators on l1, l2, l3) or `false` (the standard CNN), with the reference's
//! parameter names so PyTorch state_dicts load unchanged.
//!
//! | file | job |
//! |---|---|
//! | `names.rs` | `Arch`, `Precision` and their spellings |
//! | `init.rs` | the reference's initialisation schemes |
//! | `limits.rs` | the input sizes the network runs |
//! | `layers.rs` | the parameters, as the reference's modules under its state-dict names |
//! | `reference.rs` | the reference network as written: the oracle, and what `explain` differentiates |
//! | `fast/` | the same function fused and rewritten: what training and inference run |
//! | `network.rs` | `AttnNet`: the parameters and the compute a forward pass uses |
//! | `weights.rs`, `pth/` | checkpoints: safetensors with `ModelMeta`, PyTorch's zip + pickle |

mod fast;
mod init;
mod layers;
mod limits;
mod names;
mod network;
mod output;
pub mod pth;
pub mod reference;
pub mod weights;

pub use fast::{to_channels_last, Compute};
pub use init::InitScheme;
pub use limits::check_input;
pub use names::{Arch, Precision};
pub use network::AttnNet;
pub use output::Output;
pub use reference::Reference;
pub use weights::{load_model, save_model, LoadedModel, ModelMeta};
