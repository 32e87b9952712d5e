//! The training recipe: the settings of the protocol that shape a run's numbers. The
//! paper's is written here once; `train`'s flag defaults, the loader's defaults and the
//! benches read it.

use crate::bounded::Count;
use crate::im_size::ImSize;

/// What a training run does with its data, epoch by epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// Epochs run (exactly; the reference's loop runs one fewer).
    pub epochs: usize,
    /// Instances per optimizer step (the global batch in a process group).
    pub batch_size: usize,
    /// The network's input side.
    pub im_size: ImSize,
    /// SGD's learning rate and L2 weight decay.
    pub lr: f64,
    pub weight_decay: f64,
    /// Epochs between learning-rate decays, and the factor.
    pub lr_step: usize,
    pub lr_gamma: f64,
    /// Seeds the initial weights and every choice of the loader (shuffle, augmentation).
    pub seed: u64,
}

impl Recipe {
    /// The paper's `train.py`: batch 128 at 256 px, plain SGD (lr 0.001, weight decay 0.5),
    /// the rate halved every 3 epochs, seed 4, 30 epochs.
    pub const PAPER: Recipe = Recipe {
        epochs: 30,
        batch_size: 128,
        im_size: ImSize::PAPER,
        lr: 1e-3,
        weight_decay: 0.5,
        lr_step: 3,
        lr_gamma: 0.5,
        seed: 4,
    };

    /// Epochs a run may ask for: a long run of the paper's is 30.
    pub const EPOCHS: Count<usize> = Count::new("epochs", "epochs", 1, 100_000);
    /// Instances per step: a batch of 65536 at the smallest side is 9 GiB of input alone.
    pub const BATCH_SIZE: Count<usize> = Count::new("batch_size", "batch size", 1, 65_536);
    /// Epochs between decays (0: never decay).
    pub const LR_STEP: Count<usize> = Count::new("lr_step", "epochs between decays", 0, 100_000);

    /// Learning rate of 1-based `epoch`: lr * gamma^floor(epoch / step), so with step 3
    /// epochs 1-2 run at lr, 3-5 at lr/2, 6-8 at lr/4 (the reference's schedule).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let decays = epoch.checked_div(self.lr_step).unwrap_or(0);
        self.lr
            * self
                .lr_gamma
                .powi(i32::try_from(decays).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_schedule_halves_every_third_epoch() {
        let r = Recipe::PAPER;
        let rates: Vec<f64> = (1..=7).map(|e| r.lr_at(e)).collect();
        assert_eq!(rates, [1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4]);
        let never = Recipe { lr_step: 0, ..r };
        assert_eq!(never.lr_at(30), 1e-3);
    }
}
