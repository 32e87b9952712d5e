//! `auto`, `f32` or `bf16`: the precision asked for, and the one the hardware gets.

use crate::hardware;
use crate::model::Precision;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::Device;

/// A requested precision: `auto` picks bf16 where the hardware computes it natively and
/// faster than f32 (CUDA compute capability 8.0+, CPUs with AMX-BF16, AMD CPUs with
/// AVX512_BF16), f32 elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PrecisionChoice {
    #[default]
    Auto,
    Fixed(Precision),
}

impl std::str::FromStr for PrecisionChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(PrecisionChoice::Auto);
        }
        s.parse::<Precision>()
            .map(PrecisionChoice::Fixed)
            .map_err(|_| anyhow::anyhow!("unknown precision {s:?}: expected auto, f32 or bf16"))
    }
}

/// The precision a run uses and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub precision: Precision,
    /// e.g. "auto: AVX512_BF16", "auto: this CPU has neither AVX512_BF16 nor AMX-BF16",
    /// "requested".
    pub reason: String,
}

static EMULATION_WARNED: AtomicBool = AtomicBool::new(false);

/// Resolves `choice` for `device`. An explicit bf16 where the hardware only emulates it
/// (many times slower than f32) prints one warning per process on stderr.
pub fn choose(choice: PrecisionChoice, device: Device) -> Chosen {
    let native = || hardware::bf16_support(device);
    match choice {
        PrecisionChoice::Auto => match hardware::bf16_faster(device) {
            Ok(feature) => Chosen {
                precision: Precision::Bf16,
                reason: format!("auto: {feature}"),
            },
            Err(missing) => Chosen {
                precision: Precision::F32,
                reason: format!("auto: {missing}"),
            },
        },
        PrecisionChoice::Fixed(Precision::Bf16) => {
            if let Err(missing) = native() {
                if !EMULATION_WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "warning: bf16 is emulated here ({missing}): expect it to run many times slower than f32"
                    );
                }
            }
            Chosen {
                precision: Precision::Bf16,
                reason: "requested".into(),
            }
        }
        PrecisionChoice::Fixed(p) => Chosen {
            precision: p,
            reason: "requested".into(),
        },
    }
}

/// The distinct precisions a list of choices resolves to on `device`, in order.
pub fn choose_all(choices: &[PrecisionChoice], device: Device) -> Vec<Chosen> {
    let mut out: Vec<Chosen> = Vec::new();
    for &c in choices {
        let chosen = choose(c, device);
        if !out.iter().any(|o| o.precision == chosen.precision) {
            out.push(chosen);
        }
    }
    out
}

/// "f32 (auto: ...)" for each, comma-separated: what a benchmark's header says.
pub fn describe(chosen: &[Chosen]) -> String {
    chosen
        .iter()
        .map(|c| format!("{} ({})", c.precision.name(), c.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auto_and_the_fixed_precisions() {
        assert_eq!(
            "auto".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Auto
        );
        assert_eq!(
            "BF16".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Fixed(Precision::Bf16)
        );
        let e = "fp8".parse::<PrecisionChoice>().unwrap_err().to_string();
        assert_eq!(e, "unknown precision \"fp8\": expected auto, f32 or bf16");
    }

    #[test]
    fn auto_follows_the_hardware_and_explicit_choices_stand() {
        let auto = choose(PrecisionChoice::Auto, Device::Cpu);
        match hardware::bf16_faster(Device::Cpu) {
            Ok(f) => assert_eq!(
                (auto.precision, auto.reason),
                (Precision::Bf16, format!("auto: {f}"))
            ),
            Err(m) => assert_eq!(
                (auto.precision, auto.reason),
                (Precision::F32, format!("auto: {m}"))
            ),
        }
        let f32 = choose(PrecisionChoice::Fixed(Precision::F32), Device::Cpu);
        assert_eq!(f32.precision, Precision::F32);
        assert_eq!(f32.reason, "requested");
    }
}
