//! The names of the model's options and their accepted spellings: the architecture
//! (`Arch`) and the compute precision (`Precision`).

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Which network: the paper's two, or one of the architectures the field compares them
/// with, each as torchvision 0.28 defines it (one input channel, two classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "attention")]
    Attention,
    #[serde(rename = "standard_cnn")]
    StandardCnn,
    #[serde(rename = "alexnet")]
    AlexNet,
    #[serde(rename = "vgg16")]
    Vgg16,
    #[serde(rename = "resnet18")]
    ResNet18,
    #[serde(rename = "resnet34")]
    ResNet34,
    #[serde(rename = "resnet50")]
    ResNet50,
    #[serde(rename = "mobilenet_v2")]
    MobileNetV2,
}

impl Arch {
    /// Every network, the paper's two first.
    pub const ALL: [Arch; 8] = [
        Arch::Attention,
        Arch::StandardCnn,
        Arch::AlexNet,
        Arch::Vgg16,
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::MobileNetV2,
    ];

    pub fn from_attention(attention: bool) -> Self {
        if attention {
            Arch::Attention
        } else {
            Arch::StandardCnn
        }
    }

    /// Whether the network computes attention maps (the paper's attention network only).
    pub fn is_attention(self) -> bool {
        self == Arch::Attention
    }

    /// One of the paper's two networks (the others are torchvision's).
    pub fn is_paper(self) -> bool {
        matches!(self, Arch::Attention | Arch::StandardCnn)
    }

    /// The name used in JSON output, flags and (but for the paper's two) checkpoint
    /// directories.
    pub fn name(self) -> &'static str {
        self.spelled_name()
    }

    /// The checkpoint sub-directory: the reference's for the paper's two networks, the
    /// network's name for the others.
    pub fn dir_name(self) -> &'static str {
        match self {
            Arch::Attention => "attention",
            Arch::StandardCnn => "no_attention",
            other => other.name(),
        }
    }

    /// The network a checkpoint sub-directory holds (`dir_name`'s inverse).
    pub fn from_dir_name(dir: &str) -> Option<Self> {
        Arch::ALL.into_iter().find(|a| a.dir_name() == dir)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Spelled for Arch {
    const SPELLINGS: &'static [(Self, &'static [&'static str])] = &[
        (Arch::Attention, &["attention", "attn"]),
        (
            Arch::StandardCnn,
            &["standard_cnn", "standard", "cnn", "noattn", "no_attention"],
        ),
        (Arch::AlexNet, &["alexnet"]),
        (Arch::Vgg16, &["vgg16"]),
        (Arch::ResNet18, &["resnet18"]),
        (Arch::ResNet34, &["resnet34"]),
        (Arch::ResNet50, &["resnet50"]),
        (Arch::MobileNetV2, &["mobilenet_v2", "mobilenetv2"]),
    ];
    const WHAT: &'static str = "architecture";
    const EXPECTED: &'static str =
        "attention, standard, alexnet, vgg16, resnet18, resnet34, resnet50 or mobilenet_v2";
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_spelled(s)
    }
}

/// Numeric precision of the compute (weights stay float32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    pub fn name(self) -> &'static str {
        self.spelled_name()
    }
}

impl Spelled for Precision {
    const SPELLINGS: &'static [(Self, &'static [&'static str])] = &[
        (Precision::F32, &["f32", "fp32", "float32"]),
        (Precision::Bf16, &["bf16", "bfloat16"]),
    ];
    const WHAT: &'static str = "precision";
    const EXPECTED: &'static str = "f32 or bf16";
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_spelled(s)
    }
}

/// An option's values: the first spelling is the name printed, and every spelling
/// (lower case) is accepted, case-insensitively.
trait Spelled: Copy + PartialEq + 'static {
    const SPELLINGS: &'static [(Self, &'static [&'static str])];
    /// What the value is, and the choices, for the error message.
    const WHAT: &'static str;
    const EXPECTED: &'static str;

    fn spelled_name(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(value, _)| *value == self)
            .map_or("", |(_, names)| names[0])
    }

    fn parse_spelled(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::SPELLINGS
            .iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|&(value, _)| value)
            .ok_or_else(|| {
                anyhow::anyhow!("unknown {} {s:?}: expected {}", Self::WHAT, Self::EXPECTED)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_case_insensitively_and_the_first_is_printed() {
        assert_eq!("ATTN".parse::<Arch>().unwrap(), Arch::Attention);
        assert_eq!("no_attention".parse::<Arch>().unwrap(), Arch::StandardCnn);
        assert_eq!(Arch::StandardCnn.name(), "standard_cnn");
        assert_eq!("BFloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!(Precision::F32.name(), "f32");
        let e = "vit".parse::<Arch>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown architecture \"vit\": expected attention, standard, alexnet, vgg16, resnet18, resnet34, resnet50 or mobilenet_v2"
        );
    }
}
