//! Forecast verification: the confusion matrix at a threshold and the skill scores the
//! paper reports (TSS, HSS2), plus probabilistic scores (Brier score and skill score,
//! ROC curve and its area, reliability bins) and the threshold that maximises TSS.

use serde::Serialize;

/// The decision threshold on P(FL) the paper scores at (a flare is forecast when P >= 0.5).
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Counts of a binary forecast against outcomes (positive = flare, FL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    /// Counts one forecast.
    pub fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fn_ += 1,
        }
    }

    /// From probabilities of the positive class and 0/1 outcomes: positive when
    /// `prob >= threshold`.
    pub fn from_probs(probs: &[f64], targets: &[bool], threshold: f64) -> Self {
        let mut c = Confusion::default();
        for (p, t) in probs.iter().zip(targets) {
            c.add(*p >= threshold, *t);
        }
        c
    }

    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// True skill statistic: TP/(TP+FN) - FP/(FP+TN). A term whose denominator is zero
    /// (no positives, or no negatives) counts as 0.
    pub fn tss(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_) - ratio(self.fp, self.fp + self.tn)
    }

    /// Heidke skill score (HSS2):
    /// 2 (TP TN - FN FP) / ((TP+FN)(FN+TN) + (TP+FP)(FP+TN)); 0 when the denominator is 0.
    pub fn hss2(&self) -> f64 {
        let (tp, fp, tn, fn_) = (
            self.tp as f64,
            self.fp as f64,
            self.tn as f64,
            self.fn_ as f64,
        );
        let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
        if den == 0.0 {
            0.0
        } else {
            2.0 * (tp * tn - fn_ * fp) / den
        }
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.n())
    }

    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

/// Brier score: the mean of `(prob - outcome)^2`; 0 for no forecasts.
pub fn brier(probs: &[f64], targets: &[bool]) -> f64 {
    if probs.is_empty() {
        return 0.0;
    }
    let sum: f64 = probs
        .iter()
        .zip(targets)
        .map(|(p, &t)| (p - if t { 1.0 } else { 0.0 }).powi(2))
        .sum();
    sum / probs.len() as f64
}

/// Brier skill score against climatology: `1 - BS / BS_clim`, where `BS_clim = r (1 - r)`
/// is the Brier score of always forecasting the sample's own event rate `r`. 0 when the
/// sample holds one class only (`BS_clim` = 0: no skill is measurable).
pub fn brier_skill(probs: &[f64], targets: &[bool]) -> f64 {
    if probs.is_empty() {
        return 0.0;
    }
    let rate = targets.iter().filter(|&&t| t).count() as f64 / targets.len() as f64;
    let reference = rate * (1.0 - rate);
    if reference == 0.0 {
        0.0
    } else {
        1.0 - brier(probs, targets) / reference
    }
}

/// Area under the ROC curve from ranks (the Mann-Whitney statistic): the probability that
/// a random positive gets a higher probability than a random negative, ties counting half.
/// 0.5 when either class is absent.
pub fn roc_auc(probs: &[f64], targets: &[bool]) -> f64 {
    let n_pos = targets.iter().filter(|&&t| t).count() as f64;
    let n_neg = targets.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return 0.5;
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));
    // Ranks are 1-based; a run of equal probabilities shares the mean of its ranks.
    let mut pos_rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && probs[order[j]] == probs[order[i]] {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        let pos_in_run = order[i..j].iter().filter(|&&k| targets[k]).count() as f64;
        pos_rank_sum += mean_rank * pos_in_run;
        i = j;
    }
    (pos_rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// One operating point: forecasting positive when `prob >= threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub confusion: Confusion,
}

impl OperatingPoint {
    /// False-positive rate (ROC x axis).
    pub fn fpr(&self) -> f64 {
        ratio(self.confusion.fp, self.confusion.fp + self.confusion.tn)
    }

    /// True-positive rate (ROC y axis).
    pub fn tpr(&self) -> f64 {
        self.confusion.recall()
    }
}

/// Every distinct operating point, from the strictest (threshold above every probability:
/// all negative, threshold `+inf`) down to the lowest probability (all positive). Each
/// other threshold is one of the probabilities.
pub fn operating_points(probs: &[f64], targets: &[bool]) -> Vec<OperatingPoint> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let n_pos = targets.iter().filter(|&&t| t).count() as u64;
    let n_neg = targets.len() as u64 - n_pos;
    let mut c = Confusion {
        tp: 0,
        fp: 0,
        tn: n_neg,
        fn_: n_pos,
    };
    let mut points = vec![OperatingPoint {
        threshold: f64::INFINITY,
        confusion: c,
    }];
    let mut i = 0;
    while i < order.len() {
        let t = probs[order[i]];
        while i < order.len() && probs[order[i]] == t {
            if targets[order[i]] {
                c.tp += 1;
                c.fn_ -= 1;
            } else {
                c.fp += 1;
                c.tn -= 1;
            }
            i += 1;
        }
        points.push(OperatingPoint {
            threshold: t,
            confusion: c,
        });
    }
    points
}

/// The threshold whose forecast (`prob >= threshold`) has the highest TSS, and that TSS.
/// Among equal TSS the highest threshold wins; with no forecasts, `(1.0, 0.0)`.
pub fn best_tss_threshold(probs: &[f64], targets: &[bool]) -> (f64, f64) {
    let mut best = (1.0, 0.0);
    let mut best_tss = f64::NEG_INFINITY;
    for p in operating_points(probs, targets).iter().skip(1) {
        let tss = p.confusion.tss();
        if tss > best_tss {
            best_tss = tss;
            best = (p.threshold, tss);
        }
    }
    best
}

/// One bin of a reliability diagram.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
    /// Mean forecast probability in the bin (0 when empty).
    pub mean_prob: f64,
    /// Fraction of the bin's instances that were events (0 when empty).
    pub observed: f64,
}

/// Forecasts grouped into `bins` equal-width probability bins on [0, 1] (1.0 falls in the
/// last bin).
pub fn reliability(probs: &[f64], targets: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut sums = vec![(0u64, 0.0f64, 0u64); bins];
    for (&p, &t) in probs.iter().zip(targets) {
        let k = ((p * bins as f64) as usize).min(bins - 1);
        sums[k].0 += 1;
        sums[k].1 += p;
        sums[k].2 += u64::from(t);
    }
    sums.iter()
        .enumerate()
        .map(|(k, &(count, psum, events))| ReliabilityBin {
            lo: k as f64 / bins as f64,
            hi: (k + 1) as f64 / bins as f64,
            count,
            mean_prob: if count == 0 { 0.0 } else { psum / count as f64 },
            observed: ratio(events, count),
        })
        .collect()
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_fold1_scores() {
        // The paper's attention model, fold 1 (TP FP TN FN = 1760 2120 10334 574).
        let c = Confusion {
            tp: 1760,
            fp: 2120,
            tn: 10334,
            fn_: 574,
        };
        assert!((c.tss() - 0.5838).abs() < 5e-5, "{}", c.tss());
        assert!((c.hss2() - 0.4600).abs() < 5e-5, "{}", c.hss2());
    }

    #[test]
    fn degenerate_denominators_are_zero() {
        let none = Confusion::default();
        assert_eq!(none.tss(), 0.0);
        assert_eq!(none.hss2(), 0.0);
        let all_neg = Confusion {
            tp: 0,
            fp: 3,
            tn: 7,
            fn_: 0,
        };
        assert!((all_neg.tss() + 0.3).abs() < 1e-12);
        let perfect = Confusion {
            tp: 5,
            fp: 0,
            tn: 5,
            fn_: 0,
        };
        assert_eq!(perfect.tss(), 1.0);
        assert_eq!(perfect.hss2(), 1.0);
    }

    #[test]
    fn threshold_is_inclusive() {
        let c = Confusion::from_probs(&[0.5, 0.49, 0.9, 0.1], &[true, true, false, false], 0.5);
        assert_eq!(
            c,
            Confusion {
                tp: 1,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
    }

    #[test]
    fn brier_and_skill_by_hand() {
        // (0.9-1)^2 + (0.2-0)^2 + (0.6-0)^2 + (0.4-1)^2 = 0.01 + 0.04 + 0.36 + 0.36 = 0.77
        let probs = [0.9, 0.2, 0.6, 0.4];
        let targets = [true, false, false, true];
        assert!((brier(&probs, &targets) - 0.1925).abs() < 1e-12);
        // rate 0.5: reference 0.25, BSS = 1 - 0.1925 / 0.25 = 0.23
        assert!((brier_skill(&probs, &targets) - 0.23).abs() < 1e-12);
        // One class only: no measurable skill.
        assert_eq!(brier_skill(&[0.1, 0.3], &[false, false]), 0.0);
    }

    #[test]
    fn roc_auc_by_hand_with_ties() {
        // Positives 0.9, 0.4; negatives 0.6, 0.4, 0.1. Pairs (pos > neg): 0.9 beats all 3,
        // 0.4 beats 0.1, ties 0.4 (half): (3 + 1 + 0.5) / 6 = 0.75.
        let probs = [0.9, 0.4, 0.6, 0.4, 0.1];
        let targets = [true, true, false, false, false];
        assert!((roc_auc(&probs, &targets) - 0.75).abs() < 1e-12);
        // The trapezoid area under the operating points is the same number.
        let pts = operating_points(&probs, &targets);
        let area: f64 = pts
            .windows(2)
            .map(|w| (w[1].fpr() - w[0].fpr()) * (w[1].tpr() + w[0].tpr()) / 2.0)
            .sum();
        assert!((area - 0.75).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.2, 0.3], &[true, true]), 0.5);
    }

    #[test]
    fn operating_points_and_best_tss() {
        let probs = [0.9, 0.4, 0.6, 0.4, 0.1];
        let targets = [true, true, false, false, false];
        let pts = operating_points(&probs, &targets);
        let thresholds: Vec<f64> = pts.iter().map(|p| p.threshold).collect();
        assert_eq!(thresholds, vec![f64::INFINITY, 0.9, 0.6, 0.4, 0.1]);
        assert_eq!(
            pts[0].confusion,
            Confusion {
                tp: 0,
                fp: 0,
                tn: 3,
                fn_: 2
            }
        );
        assert_eq!(
            pts[3].confusion,
            Confusion {
                tp: 2,
                fp: 2,
                tn: 1,
                fn_: 0
            }
        );
        // TSS at 0.9: 1/2 - 0 = 0.5; at 0.6: 0.5 - 1/3; at 0.4: 1 - 2/3; at 0.1: 0.
        let (t, tss) = best_tss_threshold(&probs, &targets);
        assert_eq!(t, 0.9);
        assert!((tss - 0.5).abs() < 1e-12);
        // Each point agrees with counting at its threshold.
        for p in &pts[1..] {
            assert_eq!(
                p.confusion,
                Confusion::from_probs(&probs, &targets, p.threshold)
            );
        }
    }

    #[test]
    fn reliability_bins_by_hand() {
        let bins = reliability(
            &[0.05, 0.15, 0.12, 1.0, 0.95],
            &[false, true, false, true, false],
            10,
        );
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[0].count, 1);
        assert_eq!(bins[1].count, 2);
        assert!((bins[1].mean_prob - 0.135).abs() < 1e-12);
        assert!((bins[1].observed - 0.5).abs() < 1e-12);
        assert_eq!(bins[9].count, 2);
        assert!((bins[9].observed - 0.5).abs() < 1e-12);
        assert_eq!(bins[5].count, 0);
    }
}
