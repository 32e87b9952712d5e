//! Class balancing of the training set (validation is never balanced).
//!
//! The reference shows every flare (FL) instance six times: original, horizontal flip,
//! vertical flip, a random rotation in [-5, +5] degrees, horizontal flip again and the
//! original again, then adds further originals until FL == NF. Generalised here so the
//! count never exceeds NF: with `k = min(6, NF / FL)` (integer division, at least 1)
//! each FL instance gets the first `k` entries of that sequence, then `NF - k * FL`
//! originals are added, drawn by the seeded RNG as successive random permutations of
//! the FL instances (no instance is repeated before every one was used). With FL >= NF
//! nothing is added. Every NF instance appears once, as it is.

use anyhow::{bail, Result};
use rand::seq::SliceRandom;

use super::rng::{rng, Stream};

/// How an instance is shown to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Augment {
    Original,
    HFlip,
    VFlip,
    /// Rotation by an angle drawn uniformly from [-5, +5) degrees for each epoch and item
    /// (nearest neighbour, fill 0), as torchvision's `RandomRotation(5)`.
    RandomRotation,
}

/// The sequence of views of each FL instance, in the reference's order.
pub const FL_SEQUENCE: [Augment; 6] = [
    Augment::Original,
    Augment::HFlip,
    Augment::VFlip,
    Augment::RandomRotation,
    Augment::HFlip,
    Augment::Original,
];

/// One entry of an epoch's data: which instance, and which view of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Index into the sample list.
    pub index: usize,
    pub augment: Augment,
}

/// The balanced training plan and its counts.
#[derive(Debug, Clone)]
pub struct Balanced {
    pub items: Vec<Item>,
    /// Negative (NF) and positive (FL) instances before balancing.
    pub nf: usize,
    pub fl: usize,
    /// Entries of [`FL_SEQUENCE`] each FL instance got.
    pub copies_per_fl: usize,
    /// Extra originals added after the sequences.
    pub top_up: usize,
}

impl Balanced {
    /// FL entries in the plan (`copies_per_fl * fl + top_up`).
    pub fn fl_items(&self) -> usize {
        self.copies_per_fl * self.fl + self.top_up
    }
}

/// Every instance once, as it is (validation, or training without balancing).
pub fn plain_items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|index| Item {
            index,
            augment: Augment::Original,
        })
        .collect()
}

/// The positives' indices of a training set, refused when there is none.
fn positives(targets: &[i64]) -> Result<Vec<usize>> {
    let fl_idx: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] == 1).collect();
    if fl_idx.is_empty() {
        bail!("the training set has no positive (flare) instance; cannot train a classifier");
    }
    Ok(fl_idx)
}

/// A training set as it is, every instance once without augmentation: the plan of a run
/// that does not oversample. Errors when there is no positive.
pub fn unbalanced(targets: &[i64]) -> Result<Balanced> {
    let fl = positives(targets)?.len();
    Ok(Balanced {
        items: plain_items(targets.len()),
        nf: targets.len() - fl,
        fl,
        copies_per_fl: 1,
        top_up: 0,
    })
}

/// The cross-entropy's weights of classes 0 and 1 for a training set of 0/1 `targets`:
/// n / (2 n_c), sklearn's "balanced" (both classes then weigh n / 2 in all). Errors when a
/// class is missing.
pub fn class_weights(targets: &[i64]) -> Result<[f64; 2]> {
    let fl = positives(targets)?.len();
    let (n, nf) = (targets.len(), targets.len() - fl);
    if nf == 0 {
        bail!("the training set has no negative (no-flare) instance; cannot weigh the classes");
    }
    Ok([n as f64 / (2 * nf) as f64, n as f64 / (2 * fl) as f64])
}

/// Balances a training set given its 0/1 targets. Errors when there is no positive.
pub fn balance(targets: &[i64], seed: u64) -> Result<Balanced> {
    let fl_idx = positives(targets)?;
    let (fl, nf) = (fl_idx.len(), targets.len() - fl_idx.len());
    let k = (nf / fl).clamp(1, FL_SEQUENCE.len());
    let top_up = nf.saturating_sub(k * fl);
    let mut items: Vec<Item> = (0..targets.len())
        .filter(|&i| targets[i] != 1)
        .map(|index| Item {
            index,
            augment: Augment::Original,
        })
        .collect();
    for &index in &fl_idx {
        items.extend(
            FL_SEQUENCE[..k]
                .iter()
                .map(|&augment| Item { index, augment }),
        );
    }
    let mut rng = rng(seed, Stream::Balance, 0, 0);
    let mut pool = Vec::new();
    for _ in 0..top_up {
        if pool.is_empty() {
            pool = fl_idx.clone();
            pool.shuffle(&mut rng);
        }
        let index = pool.pop().expect("refilled above");
        items.push(Item {
            index,
            augment: Augment::Original,
        });
    }
    Ok(Balanced {
        items,
        nf,
        fl,
        copies_per_fl: k,
        top_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(nf: usize, fl: usize) -> Vec<i64> {
        // Interleave so indices of both classes are mixed.
        let mut t = vec![0; nf];
        for i in 0..fl {
            t.insert((i * 7) % (t.len() + 1), 1);
        }
        t
    }

    fn count(b: &Balanced, t: &[i64], target: i64, aug: Augment) -> usize {
        b.items
            .iter()
            .filter(|it| t[it.index] == target && it.augment == aug)
            .count()
    }

    #[test]
    fn ten_fl_hundred_nf() {
        let t = targets(100, 10);
        let b = balance(&t, 4).unwrap();
        assert_eq!((b.copies_per_fl, b.top_up), (6, 40));
        assert_eq!(b.items.len(), 200);
        assert_eq!(count(&b, &t, 1, Augment::Original), 20 + 40);
        assert_eq!(count(&b, &t, 1, Augment::HFlip), 20);
        assert_eq!(count(&b, &t, 1, Augment::VFlip), 10);
        assert_eq!(count(&b, &t, 1, Augment::RandomRotation), 10);
        assert_eq!(count(&b, &t, 0, Augment::Original), 100);
        // 40 top-ups over 10 instances: each exactly 4 times (successive permutations).
        for i in (0..t.len()).filter(|&i| t[i] == 1) {
            let n = b.items.iter().filter(|it| it.index == i).count();
            assert_eq!(n, 6 + 4, "instance {i}");
        }
    }

    #[test]
    fn thirty_fl_hundred_nf() {
        let t = targets(100, 30);
        let b = balance(&t, 4).unwrap();
        assert_eq!((b.copies_per_fl, b.top_up), (3, 10));
        assert_eq!(b.items.len(), 200);
        assert_eq!(count(&b, &t, 1, Augment::Original), 30 + 10);
        assert_eq!(count(&b, &t, 1, Augment::HFlip), 30);
        assert_eq!(count(&b, &t, 1, Augment::VFlip), 30);
        assert_eq!(count(&b, &t, 1, Augment::RandomRotation), 0);
        // 10 top-ups from 30 instances: 10 different ones.
        let mut topped: Vec<usize> = b.items[100 + 90..].iter().map(|it| it.index).collect();
        topped.sort();
        topped.dedup();
        assert_eq!(topped.len(), 10);
    }

    #[test]
    fn more_fl_than_nf_adds_nothing() {
        let t = targets(5, 8);
        let b = balance(&t, 4).unwrap();
        assert_eq!((b.copies_per_fl, b.top_up, b.items.len()), (1, 0, 13));
    }

    #[test]
    fn top_ups_depend_on_the_seed_only() {
        let t = targets(100, 30);
        assert_eq!(balance(&t, 4).unwrap().items, balance(&t, 4).unwrap().items);
        assert_ne!(balance(&t, 4).unwrap().items, balance(&t, 5).unwrap().items);
    }

    #[test]
    fn no_positive_is_an_error() {
        let e = balance(&[0, 0, 0], 4).unwrap_err();
        assert!(e.to_string().contains("no positive"));
        assert!(unbalanced(&[0, 0]).is_err());
        assert!(class_weights(&[0, 0]).is_err());
        assert!(class_weights(&[1, 1]).is_err());
    }

    #[test]
    fn unbalanced_keeps_every_instance_once_and_weights_make_the_classes_equal() {
        let t = targets(100, 20);
        let b = unbalanced(&t).unwrap();
        assert_eq!(
            (b.nf, b.fl, b.items.len(), b.fl_items()),
            (100, 20, 120, 20)
        );
        assert!(b.items.iter().all(|it| it.augment == Augment::Original));
        let w = class_weights(&t).unwrap();
        assert_eq!(w, [120.0 / 200.0, 120.0 / 40.0]);
        assert_eq!(w[0] * 100.0, w[1] * 20.0);
    }
}
