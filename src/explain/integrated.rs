//! Integrated Gradients as captum computes them: the path from a baseline to the input
//! sampled at Gauss-Legendre nodes (captum's default) or by the trapezoid rule, the
//! target logit's gradients weighted by the step sizes and summed, times
//! (input - baseline); the convergence delta is sum(attributions) - (F(input) - F(baseline)).

use super::target_logit;
use super::Graph;
use crate::bounded::Count;
use crate::model::Arch;
use anyhow::{bail, Result};
use std::collections::VecDeque;
use tch::{Kind, Tensor};

/// How the path integral is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Rule {
    /// Gauss-Legendre nodes on [0, 1] (captum's "gausslegendre", its default).
    GaussLegendre,
    /// Evenly spaced points, end points at half weight (captum's "riemann_trapezoid").
    Trapezoid,
}

/// Integrated Gradients of one input [1, 1, H, W].
pub struct Attribution {
    /// [1, 1, H, W]
    pub map: Tensor,
    /// sum(map) - (F(input) - F(baseline)) for the target logit F.
    pub delta: f64,
}

/// The nodes (alphas) and weights (step sizes) on [0, 1] of an `n`-point rule.
pub fn nodes(rule: Rule, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n < 2 {
        bail!("integrated gradients need at least 2 steps, got {n}");
    }
    Ok(match rule {
        Rule::Trapezoid => {
            let h = 1.0 / (n - 1) as f64;
            let alphas = (0..n).map(|i| i as f64 * h).collect();
            let mut steps = vec![h; n];
            steps[0] = 0.5 * h;
            steps[n - 1] = 0.5 * h;
            (alphas, steps)
        }
        Rule::GaussLegendre => {
            let (x, w) = gauss_legendre(n);
            (
                x.iter().map(|x| 0.5 * (1.0 + x)).collect(),
                w.iter().map(|w| 0.5 * w).collect(),
            )
        }
    })
}

/// Gauss-Legendre nodes on [-1, 1] in ascending order and their weights (Newton's method
/// on the Legendre polynomial, as numpy's leggauss gives them to double precision).
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n {
        // Root i of P_n (descending), Tricomi's initial guess.
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 1 { z } else { p1 };
            let pn1 = if n == 1 { 1.0 } else { p0 };
            dp = n as f64 * (z * pn - pn1) / (z * z - 1.0);
            let dz = pn / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        x[n - 1 - i] = z;
        w[n - 1 - i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    (x, w)
}

/// Integrated Gradients of the `target` logit for one input [1, 1, H, W] against
/// `baseline` (same shape), `steps` points, gradients taken `batch` points at a time.
pub fn integrated_gradients(
    net: Graph,
    input: &Tensor,
    baseline: &Tensor,
    target: i64,
    rule: Rule,
    steps: usize,
    batch: usize,
) -> Result<Attribution> {
    let mut paths = Paths::new(net, target, rule, steps, batch)?;
    let mut done = paths.push((), input, baseline)?;
    done.extend(paths.finish()?);
    let ((), a) = done.pop().expect("the one input's attribution");
    Ok(a)
}

/// Path points (of one image or several) per forward and backward pass a setting may give.
pub const INTERNAL_BATCH: Count<usize> =
    Count::new("internal_batch_size", "path points per pass", 1, 4096);

/// What the default number of path points per pass may keep for the backward pass.
pub const MEMORY_BUDGET: f64 = 2.0 * (1u64 << 30) as f64;

/// The default never exceeds this many points per pass: beyond it a pass is no faster per
/// point on a CPU, and the points of an image wait longer to be written.
pub const DEFAULT_MAX_POINTS: usize = 64;

/// Bytes the float32 graph of one path point keeps for its backward pass, per input pixel:
/// the growth of the peak resident memory of one forward and backward pass from 1 to 5
/// images of 256 x 256, as PyTorch runs the same networks, rounded up.
pub fn graph_bytes_per_pixel(arch: Arch) -> f64 {
    match arch {
        Arch::Attention => 2500.0,
        Arch::StandardCnn => 2200.0,
        Arch::AlexNet => 200.0,
        Arch::Vgg16 => 2500.0,
        Arch::ResNet18 => 700.0,
        Arch::ResNet34 => 1100.0,
        Arch::ResNet50 => 2100.0,
        Arch::MobileNetV2 => 1800.0,
    }
}

/// Path points per pass for `arch` on `side` x `side` images when none is given: as many
/// as [`MEMORY_BUDGET`] holds, at least 1 and at most [`DEFAULT_MAX_POINTS`].
pub fn default_internal_batch(arch: Arch, side: i64) -> usize {
    let per_point = graph_bytes_per_pixel(arch) * (side * side) as f64;
    let fit = (MEMORY_BUDGET / per_point).floor();
    if fit >= DEFAULT_MAX_POINTS as f64 {
        DEFAULT_MAX_POINTS
    } else {
        (fit as usize).max(1)
    }
}

/// An image whose path points are under way.
struct Pending<K> {
    key: K,
    input: Tensor,
    baseline: Tensor,
    diff: Tensor,
    /// The first path point not yet taken.
    next: usize,
    /// The step-weighted sum of the gradients so far.
    total: Option<Tensor>,
}

/// Integrated Gradients of a stream of inputs, the path points of consecutive images
/// taken `rows` at a time through one forward and backward pass: an image's points may
/// share a pass with the end of the one before and the start of the one after, so every
/// pass but the last is full. The network is in eval mode (BatchNorm's running
/// statistics, every row independent of the others), so each image's attribution is the
/// one it has alone, up to float rounding. `K` is what the caller keeps with each image.
pub struct Paths<'a, K> {
    net: Graph<'a>,
    target: i64,
    /// The rule's nodes and weights, as float32 (what the points and sums are made of).
    alphas: Vec<f32>,
    step_sizes: Vec<f32>,
    rows: usize,
    queue: VecDeque<Pending<K>>,
    /// Path points queued and not yet taken.
    queued: usize,
}

impl<'a, K> Paths<'a, K> {
    /// `steps` points of `rule` per image, `rows` points per pass.
    pub fn new(net: Graph<'a>, target: i64, rule: Rule, steps: usize, rows: usize) -> Result<Self> {
        let (alphas, step_sizes) = nodes(rule, steps)?;
        Ok(Paths {
            net,
            target,
            alphas: alphas.iter().map(|&a| a as f32).collect(),
            step_sizes: step_sizes.iter().map(|&s| s as f32).collect(),
            rows: rows.max(1),
            queue: VecDeque::new(),
            queued: 0,
        })
    }

    /// Queues one input [1, 1, H, W] and its baseline (same shape) and runs every full
    /// pass the queue now holds; returns the images those passes completed, in order.
    pub fn push(
        &mut self,
        key: K,
        input: &Tensor,
        baseline: &Tensor,
    ) -> Result<Vec<(K, Attribution)>> {
        if input.size()[0] != 1 || input.size() != baseline.size() {
            bail!(
                "integrated gradients take one input and a baseline of its shape, got {:?} and {:?}",
                input.size(),
                baseline.size()
            );
        }
        if let Some(first) = self.queue.front() {
            if first.input.size() != input.size() {
                bail!(
                    "the inputs of one pass must share a shape, got {:?} and {:?}",
                    first.input.size(),
                    input.size()
                );
            }
        }
        let input = input.to_kind(Kind::Float);
        let baseline = baseline.to_kind(Kind::Float);
        let diff = &input - &baseline;
        self.queue.push_back(Pending {
            key,
            input,
            baseline,
            diff,
            next: 0,
            total: None,
        });
        self.queued += self.alphas.len();
        let mut done = Vec::new();
        while self.queued >= self.rows {
            done.extend(self.pass()?);
        }
        Ok(done)
    }

    /// Runs what is queued (the last pass may be short) and returns the rest of the
    /// images, in order.
    pub fn finish(&mut self) -> Result<Vec<(K, Attribution)>> {
        let mut done = Vec::new();
        while self.queued > 0 {
            done.extend(self.pass()?);
        }
        Ok(done)
    }

    /// One forward and backward pass over the next `rows` queued points (or all of them).
    fn pass(&mut self) -> Result<Vec<(K, Attribution)>> {
        let steps = self.alphas.len();
        let device = self.queue.front().map(|p| p.input.device());
        let Some(device) = device else {
            return Ok(Vec::new());
        };
        // (queue index, first point, points) of each image in this pass.
        let mut segments = Vec::new();
        let mut left = self.rows;
        for (i, p) in self.queue.iter().enumerate() {
            if left == 0 {
                break;
            }
            let n = (steps - p.next).min(left);
            segments.push((i, p.next, n));
            left -= n;
        }
        let points: Vec<Tensor> = segments
            .iter()
            .map(|&(i, from, n)| {
                let p = &self.queue[i];
                if n == 1 {
                    &p.baseline + (&p.diff * f64::from(self.alphas[from]))
                } else {
                    let a = Tensor::from_slice(&self.alphas[from..from + n])
                        .to_device(device)
                        .view([-1, 1, 1, 1]);
                    &p.baseline + (&p.diff * a)
                }
            })
            .collect();
        let xs = Tensor::cat(&points, 0).set_requires_grad(true);
        drop(points);
        let score = target_logit(self.net, &xs, self.target).sum(Kind::Float);
        let grads = Tensor::run_backward(&[&score], &[&xs], false, false)
            .pop()
            .expect("one gradient");
        drop(xs);
        let mut row = 0;
        for &(i, from, n) in &segments {
            let w = Tensor::from_slice(&self.step_sizes[from..from + n])
                .to_device(device)
                .view([-1, 1, 1, 1]);
            let part =
                (grads.narrow(0, row as i64, n as i64) * w).sum_dim_intlist(0, true, Kind::Float);
            let p = &mut self.queue[i];
            p.total = Some(match p.total.take() {
                Some(t) => t + part,
                None => part,
            });
            p.next += n;
            row += n;
        }
        self.queued -= row;
        let mut finished = Vec::new();
        while self.queue.front().is_some_and(|p| p.next == steps) {
            finished.push(self.queue.pop_front().expect("a front"));
        }
        self.complete(finished)
    }

    /// The maps and convergence deltas of images whose points are all taken, F(input)
    /// and F(baseline) of them all in one forward pass.
    fn complete(&self, finished: Vec<Pending<K>>) -> Result<Vec<(K, Attribution)>> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let n = finished.len();
        let ends: Vec<&Tensor> = finished
            .iter()
            .map(|p| &p.input)
            .chain(finished.iter().map(|p| &p.baseline))
            .collect();
        let f = tch::no_grad(|| target_logit(self.net, &Tensor::cat(&ends, 0), self.target))
            .to_kind(Kind::Double)
            .to_device(tch::Device::Cpu);
        let f = Vec::<f64>::try_from(&f)?;
        Ok(finished
            .into_iter()
            .enumerate()
            .map(|(k, p)| {
                let map = p.total.expect("every point taken") * &p.diff;
                let delta = map.sum(Kind::Double).double_value(&[]) - (f[k] - f[n + k]);
                (p.key, Attribution { map, delta })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_points_per_pass_follow_memory() {
        assert_eq!(default_internal_batch(Arch::Attention, 256), 13);
        assert_eq!(default_internal_batch(Arch::Attention, 192), 23);
        assert_eq!(default_internal_batch(Arch::ResNet18, 256), 46);
        assert_eq!(
            default_internal_batch(Arch::ResNet18, 192),
            DEFAULT_MAX_POINTS
        );
        assert_eq!(default_internal_batch(Arch::Vgg16, 2048), 1);
    }

    #[test]
    fn gauss_legendre_matches_numpy() {
        // numpy.polynomial.legendre.leggauss(3)
        let (x, w) = gauss_legendre(3);
        let r = (0.6f64).sqrt();
        for (a, b) in x.iter().zip([-r, 0.0, r]) {
            assert!((a - b).abs() < 1e-15, "{x:?}");
        }
        for (a, b) in w.iter().zip([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0]) {
            assert!((a - b).abs() < 1e-15, "{w:?}");
        }
        // The weights on [0, 1] integrate a constant exactly, for any n.
        let (_, s) = nodes(Rule::GaussLegendre, 50).unwrap();
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-13);
        let (a, s) = nodes(Rule::Trapezoid, 5).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(s, vec![0.125, 0.25, 0.25, 0.25, 0.125]);
    }
}
