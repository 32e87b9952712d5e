//! The calibration map from a network's P(flare) to a calibrated probability, as it rides
//! in a model's metadata: Platt scaling (a logistic curve on the logit) or isotonic
//! regression (a non-decreasing piecewise-linear curve through the pool-adjacent-violators
//! blocks). Both are fitted here on (probability, target) pairs.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Most points an isotonic map may hold (one per distinct probability at most).
const MAX_POINTS: usize = 1 << 20;
/// Probabilities are kept this far from 0 and 1 before taking their logit.
const EPS: f64 = 1e-7;

/// How probabilities are mapped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Map {
    /// `sigmoid(a * logit(p) + b)`.
    Platt { a: f64, b: f64 },
    /// Linear between the points `(x[i], y[i])` (x increasing, y non-decreasing), flat
    /// beyond the first and last.
    Isotonic { x: Vec<f64>, y: Vec<f64> },
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Map {
    pub fn method(&self) -> &'static str {
        match self {
            Map::Platt { .. } => "platt",
            Map::Isotonic { .. } => "isotonic",
        }
    }

    /// The calibrated probability of a raw one.
    pub fn apply(&self, p: f64) -> f64 {
        match self {
            Map::Platt { a, b } => sigmoid(a * logit(p) + b),
            Map::Isotonic { x, y } => {
                let k = x.partition_point(|&v| v <= p);
                if k == 0 {
                    y[0]
                } else if k == x.len() {
                    y[x.len() - 1]
                } else {
                    let (x0, x1, y0, y1) = (x[k - 1], x[k], y[k - 1], y[k]);
                    y0 + (y1 - y0) * (p - x0) / (x1 - x0)
                }
            }
        }
    }

    /// What a map read from a file must satisfy to be applied.
    pub fn check(&self) -> Result<()> {
        match self {
            Map::Platt { a, b } => {
                if !a.is_finite() || !b.is_finite() {
                    bail!("Platt calibration coefficients a={a}, b={b} are not finite");
                }
            }
            Map::Isotonic { x, y } => {
                if x.is_empty() || x.len() != y.len() || x.len() > MAX_POINTS {
                    bail!(
                        "isotonic calibration has {} x and {} y points (need 1..={MAX_POINTS}, as many of each)",
                        x.len(),
                        y.len()
                    );
                }
                // NaN compares as neither: refused with the rest.
                if x.windows(2)
                    .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
                    || x.iter().any(|v| !(0.0..=1.0).contains(v))
                {
                    bail!("isotonic calibration points are not increasing probabilities");
                }
                if y.windows(2)
                    .any(|w| w[0].partial_cmp(&w[1]).is_none_or(|o| o.is_gt()))
                    || y.iter().any(|v| !(0.0..=1.0).contains(v))
                {
                    bail!("isotonic calibration values are not non-decreasing probabilities");
                }
            }
        }
        Ok(())
    }
}

/// Platt scaling by maximum likelihood (Newton's method with step halving), on Platt's
/// smoothed targets ((N+ + 1) / (N+ + 2) and 1 / (N- + 2)) so a separable set does not
/// send the slope to infinity.
pub fn fit_platt(probs: &[f64], targets: &[bool]) -> Map {
    let pos = targets.iter().filter(|&&t| t).count() as f64;
    let neg = targets.len() as f64 - pos;
    let (hi, lo) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let z: Vec<f64> = probs.iter().map(|&p| logit(p)).collect();
    let t: Vec<f64> = targets.iter().map(|&y| if y { hi } else { lo }).collect();
    let nll = |a: f64, b: f64| -> f64 {
        z.iter()
            .zip(&t)
            .map(|(&z, &t)| {
                let s = a * z + b;
                // -[t log q + (1 - t) log(1 - q)] with q = sigmoid(s), stable for large |s|.
                s.max(0.0) - t * s + (-s.abs()).exp().ln_1p()
            })
            .sum()
    };
    let (mut a, mut b) = (1.0, 0.0);
    let mut f = nll(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&z, &t) in z.iter().zip(&t) {
            let q = sigmoid(a * z + b);
            let (d, w) = (q - t, (q * (1.0 - q)).max(1e-12));
            ga += d * z;
            gb += d;
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-300 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-10 {
            let (na, nb) = (a - step * da, b - step * db);
            let nf = nll(na, nb);
            if nf < f {
                (a, b, f, improved) = (na, nb, nf, true);
                break;
            }
            step /= 2.0;
        }
        if !improved || (da.abs() + db.abs()) * step < 1e-10 {
            break;
        }
    }
    Map::Platt { a, b }
}

/// Isotonic regression of the targets on the probabilities (pool adjacent violators over
/// the distinct probabilities), as points of a piecewise-linear map: each block's
/// smallest and largest probability at the block's event rate.
pub fn fit_isotonic(probs: &[f64], targets: &[bool]) -> Map {
    let mut pairs: Vec<(f64, f64)> = probs
        .iter()
        .zip(targets)
        .map(|(&p, &t)| (p.clamp(0.0, 1.0), f64::from(u8::from(t))))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks: (lowest x, highest x, sum of targets, count).
    let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
    for (x, y) in pairs {
        match blocks.last_mut() {
            Some(last) if last.1 == x => {
                last.2 += y;
                last.3 += 1.0;
            }
            _ => blocks.push((x, x, y, 1.0)),
        }
        while blocks.len() > 1 {
            let n = blocks.len();
            let (prev, last) = (blocks[n - 2], blocks[n - 1]);
            if prev.2 / prev.3 < last.2 / last.3 {
                break;
            }
            blocks.pop();
            blocks[n - 2] = (prev.0, last.1, prev.2 + last.2, prev.3 + last.3);
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (lo, hi, sum, n) in blocks {
        let v = sum / n;
        x.push(lo);
        y.push(v);
        if hi > lo {
            x.push(hi);
            y.push(v);
        }
    }
    Map::Isotonic { x, y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_logistic_curve_and_isotonic_pools_violators() {
        // Targets drawn deterministically at rate sigmoid(0.5 * logit(p) - 1) per p.
        let (mut probs, mut targets) = (Vec::new(), Vec::new());
        for i in 1..100 {
            let p = i as f64 / 100.0;
            let rate = sigmoid(0.5 * logit(p) - 1.0);
            for k in 0..200 {
                probs.push(p);
                targets.push((k as f64 + 0.5) / 200.0 < rate);
            }
        }
        let Map::Platt { a, b } = fit_platt(&probs, &targets) else {
            unreachable!()
        };
        assert!(
            (a - 0.5).abs() < 0.02 && (b + 1.0).abs() < 0.03,
            "a {a} b {b}"
        );

        let m = fit_isotonic(
            &[0.1, 0.2, 0.3, 0.4, 0.9],
            &[false, true, false, true, true],
        );
        // 0.2 (1) and 0.3 (0) violate the order: pooled to 0.5 over [0.2, 0.3].
        assert_eq!(
            m,
            Map::Isotonic {
                x: vec![0.1, 0.2, 0.3, 0.4, 0.9],
                y: vec![0.0, 0.5, 0.5, 1.0, 1.0]
            }
        );
        m.check().unwrap();
        assert_eq!(m.apply(0.05), 0.0);
        assert!((m.apply(0.35) - 0.75).abs() < 1e-12);
        assert_eq!(m.apply(0.95), 1.0);
        let bad = Map::Isotonic {
            x: vec![0.3, 0.2],
            y: vec![0.1, 0.2],
        };
        assert!(bad.check().is_err());
        assert!(Map::Platt {
            a: f64::NAN,
            b: 0.0
        }
        .check()
        .is_err());
    }
}
