//! Which epoch's weights become `best` (`Recipe::select`) and when a run stops early
//! (`Recipe::patience`): one rule, applied epoch by epoch to the state `last` keeps, so a
//! resumed run decides as an uninterrupted one.

use super::checkpoint::ResumeState;
use crate::recipe::Select;

/// One epoch's validation scores.
#[derive(Clone, Copy, Debug)]
pub struct Scores {
    pub tss: f64,
    pub hss2: f64,
    pub loss: f64,
}

/// Whether `s` beats the best epoch so far under `select`. TSS and HSS2 need a validation
/// split with both classes (`two_classes`); the loss does not. A NaN never improves.
pub fn improves(select: Select, state: &ResumeState, s: &Scores, two_classes: bool) -> bool {
    match select {
        Select::Paper => two_classes && s.tss > state.best_tss && s.hss2 > state.best_hss2,
        Select::Tss => two_classes && s.tss > state.best_tss,
        Select::Hss2 => two_classes && s.hss2 > state.best_hss2,
        Select::Loss => s.loss < state.best_loss,
    }
}

/// Takes `epoch`'s scores into the state: when they improve, the epoch becomes the best
/// (its TSS, HSS2 and loss kept). Returns whether it did.
pub fn observe(
    state: &mut ResumeState,
    select: Select,
    epoch: usize,
    s: &Scores,
    two_classes: bool,
) -> bool {
    let best = improves(select, state, s, two_classes);
    if best {
        state.best_tss = s.tss;
        state.best_hss2 = s.hss2;
        state.best_loss = s.loss;
        state.best_epoch = Some(epoch);
    }
    best
}

/// Epochs since the best one, at the end of `epoch` (all of them when none was best).
pub fn stale_epochs(state: &ResumeState, epoch: usize) -> usize {
    epoch.saturating_sub(state.best_epoch.unwrap_or(0))
}

/// Whether a run with `patience` stops at the end of `epoch`: that many epochs have
/// passed without a better one. Without patience a run never stops early.
pub fn stops(state: &ResumeState, epoch: usize, patience: Option<usize>) -> bool {
    patience.is_some_and(|p| stale_epochs(state, epoch) >= p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Val (TSS, HSS2, loss) of epochs 1, 2, ...
    const SCRIPT: [(f64, f64, f64); 7] = [
        (0.30, 0.20, 0.70),
        (0.40, 0.25, 0.65), // both scores and the loss improve
        (0.45, 0.24, 0.66), // TSS alone
        (0.38, 0.30, 0.60), // HSS2 and the loss
        (0.39, 0.29, 0.61), // nothing
        (0.44, 0.24, 0.62), // nothing
        (0.50, 0.35, 0.59), // everything
    ];

    /// The trainer's loop over `SCRIPT`: the best epochs in order, and the epoch it stops
    /// at (None: it ran them all).
    fn run(
        select: Select,
        patience: Option<usize>,
        two_classes: bool,
    ) -> (Vec<usize>, Option<usize>) {
        let mut state = ResumeState::fresh();
        let mut bests = vec![];
        for (i, &(tss, hss2, loss)) in SCRIPT.iter().enumerate() {
            let epoch = i + 1;
            if observe(
                &mut state,
                select,
                epoch,
                &Scores { tss, hss2, loss },
                two_classes,
            ) {
                bests.push(epoch);
            }
            if stops(&state, epoch, patience) {
                return (bests, Some(epoch));
            }
        }
        (bests, None)
    }

    #[test]
    fn each_rule_picks_its_epochs() {
        assert_eq!(run(Select::Paper, None, true).0, [1, 2, 7]);
        assert_eq!(run(Select::Tss, None, true).0, [1, 2, 3, 7]);
        assert_eq!(run(Select::Hss2, None, true).0, [1, 2, 4, 7]);
        assert_eq!(run(Select::Loss, None, true).0, [1, 2, 4, 7]);
        // One class in validation: TSS and HSS2 choose nothing, the loss still does.
        assert_eq!(run(Select::Paper, None, false).0, Vec::<usize>::new());
        assert_eq!(run(Select::Tss, None, false).0, Vec::<usize>::new());
        assert_eq!(run(Select::Loss, None, false).0, [1, 2, 4, 7]);
    }

    #[test]
    fn the_best_epochs_scores_are_kept() {
        let mut state = ResumeState::fresh();
        for (i, &(tss, hss2, loss)) in SCRIPT[..4].iter().enumerate() {
            observe(
                &mut state,
                Select::Tss,
                i + 1,
                &Scores { tss, hss2, loss },
                true,
            );
        }
        assert_eq!(state.best_epoch, Some(3));
        assert_eq!(
            (state.best_tss, state.best_hss2, state.best_loss),
            SCRIPT[2]
        );
    }

    #[test]
    fn patience_stops_after_that_many_epochs_without_a_better_one() {
        // The paper's rule: best at 1 and 2, then 3, 4, 5, 6 do not improve.
        assert_eq!(run(Select::Paper, Some(1), true), (vec![1, 2], Some(3)));
        assert_eq!(run(Select::Paper, Some(3), true), (vec![1, 2], Some(5)));
        assert_eq!(run(Select::Paper, Some(4), true), (vec![1, 2], Some(6)));
        assert_eq!(run(Select::Paper, Some(5), true), (vec![1, 2, 7], None));
        // TSS: best at 3, then 4, 5, 6 without.
        assert_eq!(run(Select::Tss, Some(2), true), (vec![1, 2, 3], Some(5)));
        // The loss: best at 4, then 5 and 6 without.
        assert_eq!(run(Select::Loss, Some(2), true), (vec![1, 2, 4], Some(6)));
        assert_eq!(run(Select::Loss, Some(3), true), (vec![1, 2, 4, 7], None));
        // No epoch can be best: the run stops after `patience` epochs.
        assert_eq!(run(Select::Tss, Some(2), false), (vec![], Some(2)));
        // Without patience every epoch runs.
        assert_eq!(run(Select::Paper, None, true).1, None);
    }
}
