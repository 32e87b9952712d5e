//! The training recipe: the settings of the protocol that shape a run's numbers. The
//! paper's is written here once; `train`'s flag defaults, the loader's defaults and the
//! benches read it.

use crate::bounded::Count;
use crate::im_size::ImSize;
use crate::setting;

/// An enum of a recipe setting: its variants' spellings, written once, are both the
/// flag's values (clap) and the names a run's configuration records (serde).
macro_rules! setting_enum {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $spelling:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Default,
            clap::ValueEnum,
            serde::Serialize,
            serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[value(name = $spelling)] #[serde(rename = $spelling)] $variant,)+
        }
    };
}

setting_enum! {
    /// The optimizer a run steps with.
    pub enum Optimizer {
        /// torch.optim.SGD: the weight decay added to the gradient as L2, heavy-ball momentum,
        /// no dampening, no Nesterov (the paper's, with momentum 0).
        #[default]
        Sgd = "sgd",
        /// torch.optim.AdamW: the betas, eps 1e-8, no AMSGrad, bias-corrected moments, and
        /// decoupled weight decay (the weights times lr * weight decay subtracted before the
        /// Adam update).
        AdamW = "adamw",
    }
}

setting_enum! {
    /// How the learning rate moves from epoch to epoch (after any warm-up).
    pub enum Schedule {
        /// lr * lr-gamma^floor(epoch / lr-step) (the paper's).
        #[default]
        Step = "step",
        /// Epoch e of E after W warm-up epochs: lr * (1 + cos(pi * (e - 1 - W) / (E - W))) / 2,
        /// torch's CosineAnnealingLR(T_max = E - W, eta_min = 0) stepped once an epoch from the
        /// warm-up's end.
        Cosine = "cosine",
    }
}

setting_enum! {
    /// How the training split's class imbalance is met.
    pub enum Balance {
        /// Each flare instance shown again, augmented, until FL == NF (the paper's).
        #[default]
        Oversample = "oversample",
        /// Every instance once, as it is; class c's cross-entropy weighted by n_total / (2 *
        /// n_c) of the training split, each batch's weighted sum divided by the sum of its
        /// rows' weights: torch's CrossEntropyLoss(weight=w).
        WeightedLoss = "weighted-loss",
        /// Every instance once, the plain mean cross-entropy.
        None = "none",
    }
}

setting_enum! {
    /// Which epoch's weights become `best`.
    pub enum Select {
        /// Validation TSS and HSS2 both beat the best epoch's (the paper's).
        #[default]
        Paper = "paper",
        /// Validation TSS beats the best epoch's.
        Tss = "tss",
        /// Validation HSS2 beats the best epoch's.
        Hss2 = "hss2",
        /// The validation loss falls below the best epoch's.
        Loss = "loss",
    }
}

/// What a training run does with its data, epoch by epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// Epochs run (exactly; the reference's loop runs one fewer), unless `patience` stops
    /// the run sooner.
    pub epochs: usize,
    /// Instances per optimizer step (the global batch in a process group).
    pub batch_size: usize,
    /// The network's input side.
    pub im_size: ImSize,
    /// The optimizer, its learning rate and weight decay (SGD: L2 added to the gradient;
    /// AdamW: decoupled), SGD's momentum and AdamW's betas.
    pub optimizer: Optimizer,
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub betas: (f64, f64),
    /// The schedule, its epochs between step decays and the factor, and the epochs of
    /// linear warm-up before it.
    pub schedule: Schedule,
    pub lr_step: usize,
    pub lr_gamma: f64,
    pub warmup_epochs: usize,
    /// Oversampling, a class-weighted loss, or neither.
    pub balance: Balance,
    /// The rule for `best`, and the epochs without a better one after which a run stops
    /// (None: it runs every epoch).
    pub select: Select,
    pub patience: Option<usize>,
    /// Seeds the initial weights and every choice of the loader (shuffle, augmentation).
    pub seed: u64,
}

impl Recipe {
    /// The paper's `train.py`: batch 128 at 256 px, plain SGD (lr 0.001, weight decay 0.5,
    /// no momentum), the rate halved every 3 epochs, flare instances oversampled, `best`
    /// when TSS and HSS2 both improve, seed 4, 30 epochs. AdamW's betas are torch's
    /// defaults, unused by SGD.
    pub const PAPER: Recipe = Recipe {
        epochs: 30,
        batch_size: 128,
        im_size: ImSize::PAPER,
        optimizer: Optimizer::Sgd,
        lr: 1e-3,
        weight_decay: 0.5,
        momentum: 0.0,
        betas: (0.9, 0.999),
        schedule: Schedule::Step,
        lr_step: 3,
        lr_gamma: 0.5,
        warmup_epochs: 0,
        balance: Balance::Oversample,
        select: Select::Paper,
        patience: None,
        seed: 4,
    };

    /// Epochs a run may ask for: a long run of the paper's is 30.
    pub const EPOCHS: Count<usize> = Count::new("epochs", "epochs", 1, 100_000);
    /// Instances per step: a batch of 65536 at the smallest side is 9 GiB of input alone.
    pub const BATCH_SIZE: Count<usize> = Count::new("batch_size", "batch size", 1, 65_536);
    /// Epochs between decays (0: never decay).
    pub const LR_STEP: Count<usize> = Count::new("lr_step", "epochs between decays", 0, 100_000);
    /// Epochs of warm-up (0: none); fewer than the run's epochs (`Recipe::check`).
    pub const WARMUP_EPOCHS: Count<usize> =
        Count::new("warmup_epochs", "warm-up epochs", 0, 100_000);
    /// Epochs without a better `best` before a run stops.
    pub const PATIENCE: Count<usize> =
        Count::new("patience", "epochs without improvement", 1, 100_000);

    /// Learning rate of 1-based `epoch`. The step schedule: lr * gamma^floor(epoch / step),
    /// so with step 3 epochs 1-2 run at lr, 3-5 at lr/2, 6-8 at lr/4 (the reference's).
    /// Cosine, with W warm-up epochs of E: epoch e > W runs at
    /// lr * (1 + cos(pi * (e - 1 - W) / (E - W))) / 2, torch's CosineAnnealingLR(T_max =
    /// E - W, eta_min = 0) stepped once per epoch from the warm-up's end. A warm-up epoch
    /// e <= W runs at e / (W + 1) of the schedule's rate (cosine's is lr there): torch's
    /// LinearLR(start_factor = 1 / (W + 1), total_iters = W) before the schedule, as
    /// SequentialLR(milestones = [W]) chains them; torch's epoch i is flarecast's i + 1.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let warmup = self.warmup_epochs;
        let rate = match self.schedule {
            Schedule::Step => {
                let decays = epoch.checked_div(self.lr_step).unwrap_or(0);
                self.lr
                    * self
                        .lr_gamma
                        .powi(i32::try_from(decays).unwrap_or(i32::MAX))
            }
            Schedule::Cosine if epoch > warmup => {
                let t = (epoch - 1 - warmup) as f64;
                let span = self.epochs.saturating_sub(warmup).max(1) as f64;
                self.lr * (1.0 + (std::f64::consts::PI * t / span).cos()) / 2.0
            }
            Schedule::Cosine => self.lr,
        };
        if epoch <= warmup {
            rate * epoch as f64 / (warmup + 1) as f64
        } else {
            rate
        }
    }

    /// Refuses a recipe no run can follow, naming the setting: counts outside their
    /// ranges, a warm-up as long as the run, momentum or betas outside [0, 1), or an
    /// optimizer's setting given to the other one.
    pub fn check(&self) -> anyhow::Result<()> {
        Self::EPOCHS.check(self.epochs)?;
        Self::BATCH_SIZE.check(self.batch_size)?;
        Self::LR_STEP.check(self.lr_step)?;
        Self::WARMUP_EPOCHS.check(self.warmup_epochs)?;
        if let Some(p) = self.patience {
            Self::PATIENCE.check(p)?;
        }
        if self.warmup_epochs >= self.epochs {
            return Err(setting::bad(
                "warmup_epochs",
                format!(
                    "a warm-up of {} epochs leaves none of the run's {} to the schedule",
                    self.warmup_epochs, self.epochs
                ),
            ));
        }
        let unit = |v: f64| (0.0..1.0).contains(&v);
        match self.optimizer {
            Optimizer::Sgd => {
                if !unit(self.momentum) {
                    return Err(setting::bad(
                        "momentum",
                        format!("momentum {} is outside [0, 1)", self.momentum),
                    ));
                }
                if self.betas != Self::PAPER.betas {
                    return Err(setting::bad("betas", "betas are AdamW's; SGD takes none"));
                }
            }
            Optimizer::AdamW => {
                if self.momentum != 0.0 {
                    return Err(setting::bad(
                        "momentum",
                        "momentum is SGD's; AdamW's first moment decays by the first of its betas",
                    ));
                }
                let (b1, b2) = self.betas;
                if !unit(b1) || !unit(b2) {
                    return Err(setting::bad(
                        "betas",
                        format!("betas {b1},{b2}: each must be in [0, 1)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the optimizer carries state from step to step (momentum, Adam's moments)
    /// that a checkpoint does not hold: libtorch keeps it inside its optimizer, and tch
    /// neither saves nor restores it.
    pub fn optimizer_state(&self) -> Option<&'static str> {
        match self.optimizer {
            Optimizer::AdamW => Some("AdamW's moment estimates"),
            Optimizer::Sgd if self.momentum != 0.0 => Some("SGD's momentum buffers"),
            Optimizer::Sgd => None,
        }
    }

    /// The settings as JSON, under the names `train`'s run configuration records (the
    /// schedule's and the selection's included).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "im_size": self.im_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "betas": [self.betas.0, self.betas.1],
            "schedule": self.schedule,
            "lr_step": self.lr_step,
            "lr_gamma": self.lr_gamma,
            "warmup_epochs": self.warmup_epochs,
            "balance": self.balance,
            "select": self.select,
            "patience": self.patience,
            "seed": self.seed,
        })
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

    #[test]
    fn a_warm_up_ramps_to_the_schedules_rate() {
        // Step schedule, 2 warm-up epochs: 1/3 and 2/3 of epochs 1-2's rate, then as ever.
        let r = Recipe {
            warmup_epochs: 2,
            ..Recipe::PAPER
        };
        let rates: Vec<f64> = (1..=4).map(|e| r.lr_at(e)).collect();
        assert_eq!(rates, [1e-3 / 3.0, 2e-3 / 3.0, 5e-4, 5e-4]);
        // Cosine over epochs 3..=6 after 2 warm-up epochs of 6: lr, lr (1 + cos(pi/4)) / 2, ...
        let c = Recipe {
            epochs: 6,
            schedule: Schedule::Cosine,
            ..r
        };
        let cos = |t: f64| 1e-3 * (1.0 + (std::f64::consts::PI * t / 4.0).cos()) / 2.0;
        let rates: Vec<f64> = (1..=6).map(|e| c.lr_at(e)).collect();
        assert_eq!(
            rates,
            [
                1e-3 / 3.0,
                2e-3 / 3.0,
                cos(0.0),
                cos(1.0),
                cos(2.0),
                cos(3.0)
            ]
        );
    }

    #[test]
    fn recipes_no_run_can_follow_are_refused_naming_the_setting() {
        let bad = |r: Recipe| crate::setting::find(&r.check().unwrap_err()).map(|b| b.setting);
        let p = Recipe::PAPER;
        assert!(p.check().is_ok());
        assert_eq!(
            bad(Recipe {
                warmup_epochs: 30,
                ..p
            }),
            Some("warmup_epochs")
        );
        assert_eq!(
            bad(Recipe {
                patience: Some(0),
                ..p
            }),
            Some("patience")
        );
        assert_eq!(bad(Recipe { momentum: 1.0, ..p }), Some("momentum"));
        assert_eq!(
            bad(Recipe {
                betas: (0.5, 0.9),
                ..p
            }),
            Some("betas")
        );
        let adamw = Recipe {
            optimizer: Optimizer::AdamW,
            ..p
        };
        assert!(adamw.check().is_ok());
        assert_eq!(
            bad(Recipe {
                momentum: 0.9,
                ..adamw
            }),
            Some("momentum")
        );
        assert_eq!(
            bad(Recipe {
                betas: (0.9, 1.0),
                ..adamw
            }),
            Some("betas")
        );
        assert_eq!(p.optimizer_state(), None);
        assert!(adamw.optimizer_state().is_some());
        assert!(Recipe { momentum: 0.5, ..p }.optimizer_state().is_some());
    }
}
