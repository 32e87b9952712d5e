//! Weight initialisation schemes of the reference (`initialize.py`).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// kaiming_uniform_(fan_in, relu) for conv/linear, BN weight U(0,1); the default.
    #[default]
    KaimingUniform,
    /// kaiming_normal_(fan_in, relu), BN weight N(0, 0.01).
    KaimingNormal,
}

impl InitScheme {
    /// Convolution and linear weights.
    pub(super) fn weights(self) -> Init {
        let dist = match self {
            InitScheme::KaimingUniform => nn::init::NormalOrUniform::Uniform,
            InitScheme::KaimingNormal => nn::init::NormalOrUniform::Normal,
        };
        Init::Kaiming {
            dist,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ReLU,
        }
    }

    /// BatchNorm's scale (gamma).
    pub(super) fn bn_weight(self) -> Init {
        match self {
            InitScheme::KaimingUniform => Init::Uniform { lo: 0.0, up: 1.0 },
            InitScheme::KaimingNormal => Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
        }
    }
}
