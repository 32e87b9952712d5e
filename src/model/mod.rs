//! The networks. The paper's: `AttnNet` with `attention: true` (three linear-attention
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
//! | `network.rs` | `AttnNet`: the parameters and the compute a forward pass uses; `Network`: any network, as every command sees it |
//! | `vision/` | torchvision's AlexNet, VGG16, ResNet-18/34/50 and MobileNetV2 (one channel in, two classes out) |
//! | `tap.rs` | `Tap`: a forward pass's ReLUs, stages and dropouts, as captum's hooks see them |
//! | `pretrained.rs` | a torchvision ImageNet checkpoint as a start (`train --pretrained`) |
//! | `weights.rs`, `pth/` | checkpoints: safetensors with `ModelMeta`, PyTorch's zip + pickle |

mod fast;
mod init;
mod layers;
mod layout;
mod limits;
mod names;
mod network;
mod output;
mod prepared;
pub mod pretrained;
pub mod pth;
pub mod reference;
mod tap;
pub mod vision;
pub mod weights;

pub use fast::fused::plain_ops;
pub use fast::Compute;
pub use init::InitScheme;
pub use layout::{keep_layout, to_channels_last};
pub use limits::check_input;
pub use names::{Arch, Precision};
pub use network::{AttnNet, Network};
pub use output::Output;
pub use reference::Reference;
pub use tap::{NoTap, Tap};
pub use vision::VisionNet;
pub use weights::{load_model, save_model, LoadedModel, ModelMeta};
