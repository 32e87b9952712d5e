//! Integrated Gradients as captum computes them: the path from a baseline to the input
//! sampled at Gauss-Legendre nodes (captum's default) or by the trapezoid rule, the
//! target logit's gradients weighted by the step sizes and summed, times
//! (input - baseline); the convergence delta is sum(attributions) - (F(input) - F(baseline)).

use super::target_logit;
use super::Graph;
use anyhow::{bail, Result};
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
    if input.size()[0] != 1 || input.size() != baseline.size() {
        bail!(
            "integrated gradients take one input and a baseline of its shape, got {:?} and {:?}",
            input.size(),
            baseline.size()
        );
    }
    let (alphas, step_sizes) = nodes(rule, steps)?;
    let input = input.to_kind(Kind::Float);
    let baseline = baseline.to_kind(Kind::Float);
    let diff = &input - &baseline;
    let mut total = input.zeros_like();
    for (a_chunk, s_chunk) in alphas
        .chunks(batch.max(1))
        .zip(step_sizes.chunks(batch.max(1)))
    {
        let points: Vec<Tensor> = a_chunk
            .iter()
            .map(|&a| &baseline + (&diff * (a as f32 as f64)))
            .collect();
        let xs = Tensor::cat(&points, 0).set_requires_grad(true);
        let score = target_logit(net, &xs, target).sum(Kind::Float);
        let grads = Tensor::run_backward(&[&score], &[&xs], false, false)
            .pop()
            .expect("one gradient");
        let s: Vec<f32> = s_chunk.iter().map(|&s| s as f32).collect();
        let weights = Tensor::from_slice(&s)
            .to_device(grads.device())
            .view([-1, 1, 1, 1]);
        total += (grads * weights).sum_dim_intlist(0, true, Kind::Float);
    }
    let map = total * &diff;
    let (f_in, f_base) = tch::no_grad(|| {
        (
            target_logit(net, &input, target).double_value(&[0]),
            target_logit(net, &baseline, target).double_value(&[0]),
        )
    });
    let delta = map.sum(Kind::Double).double_value(&[]) - (f_in - f_base);
    Ok(Attribution { map, delta })
}

#[cfg(test)]
mod tests {
    use super::*;

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
