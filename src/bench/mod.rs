//! Throughput benchmarks, one file per `flarecast bench` target. They sit apart from the
//! modules they measure (which never depend on them), take every input as an argument,
//! and return `Serialize` rows for the CLI to print.

pub mod child;
pub mod convert;
pub mod download;
pub mod epoch;
pub mod evaluate;
pub mod explain;
pub mod fold;
pub mod label;
pub mod loader;
pub mod model;
pub mod paper_loop;
pub mod python;
pub mod torch_baseline;
pub mod train;

use serde::Serialize;

/// What a network benchmark times: a forward pass, or forward + backward + SGD step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Inference,
    Train,
}

/// The processor a device's work runs on: the CPU's model name and cores, or the CUDA
/// device's name; every bench prints it with its figures.
pub fn processor(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => format!(
            "{}, {} cores",
            crate::hardware::cpu_model(),
            crate::hardware::cores()
        ),
        other => crate::device::device_name(other),
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Images/s of one program: the median over rounds and every round's figure.
#[derive(Debug, Serialize)]
pub struct Rate {
    pub images_per_s: f64,
    pub rounds: Vec<f64>,
}

impl Rate {
    pub fn of(rounds: Vec<f64>) -> Self {
        Rate {
            images_per_s: median(&rounds),
            rounds,
        }
    }
}

/// Runs two programs `rounds` times each, the order swapped every other round so that
/// neither always runs first: `run(true, round)` is flarecast's turn, `run(false, round)`
/// the other program's.
pub fn alternate(
    rounds: usize,
    mut run: impl FnMut(bool, usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for round in 0..rounds {
        for turn in 0..2 {
            run((round + turn) % 2 == 0, round)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_rounds() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(Rate::of(vec![3.0, 1.0, 2.0]).rounds, vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn rounds_alternate_which_program_runs_first() {
        let mut turns = Vec::new();
        alternate(3, |ours, round| {
            turns.push((round, ours));
            Ok(())
        })
        .unwrap();
        let firsts: Vec<bool> = turns.chunks(2).map(|r| r[0].1).collect();
        assert_eq!(firsts, [true, false, true]);
        assert!(turns.chunks(2).all(|r| r[0].1 != r[1].1));
    }
}
