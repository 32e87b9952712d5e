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

/// Balances a training set given its 0/1 targets. Errors when there is no positive.
pub fn balance(targets: &[i64], seed: u64) -> Result<Balanced> {
    let fl_idx: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] == 1).collect();
    let (fl, nf) = (fl_idx.len(), targets.len() - fl_idx.len());
    if fl == 0 {
        bail!("the training set has no positive (flare) instance; cannot train a classifier");
    }
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
    }
}
