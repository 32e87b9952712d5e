//! Forecast verification: the confusion matrix at a threshold and the skill scores the
//! paper reports (TSS, HSS2).

use serde::Serialize;

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
        let (tp, fp, tn, fn_) = (self.tp as f64, self.fp as f64, self.tn as f64, self.fn_ as f64);
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
        let c = Confusion { tp: 1760, fp: 2120, tn: 10334, fn_: 574 };
        assert!((c.tss() - 0.5838).abs() < 5e-5, "{}", c.tss());
        assert!((c.hss2() - 0.4600).abs() < 5e-5, "{}", c.hss2());
    }

    #[test]
    fn degenerate_denominators_are_zero() {
        let none = Confusion::default();
        assert_eq!(none.tss(), 0.0);
        assert_eq!(none.hss2(), 0.0);
        let all_neg = Confusion { tp: 0, fp: 3, tn: 7, fn_: 0 };
        assert!((all_neg.tss() + 0.3).abs() < 1e-12);
        let perfect = Confusion { tp: 5, fp: 0, tn: 5, fn_: 0 };
        assert_eq!(perfect.tss(), 1.0);
        assert_eq!(perfect.hss2(), 1.0);
    }

    #[test]
    fn threshold_is_inclusive() {
        let c = Confusion::from_probs(&[0.5, 0.49, 0.9, 0.1], &[true, true, false, false], 0.5);
        assert_eq!(c, Confusion { tp: 1, fp: 1, tn: 1, fn_: 1 });
    }
}
