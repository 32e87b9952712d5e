//! Training's BatchNorm2d (batch statistics), 2x2 max pooling and ReLU as one autograd
//! function over a channels-last activation (`bn_pool_relu.cpp`): the same function as
//! the three ops, with two passes over the full-resolution tensor forward and two backward
//! where libtorch makes five each way. Taken for bf16 training, where those passes, not
//! the (AMX or AVX-512 BF16) convolutions, bound the step; float32 training keeps the
//! plain ops, whose results the paper's reproduction is checked against.

use super::super::layers::{BatchNorm, BN_EPS, BN_MOMENTUM};
use tch::{Device, Kind, Tensor};

/// relu(max_pool2d(batch_norm(xs), 2, 2)) in training mode, the running statistics and the
/// batch count updated as BatchNorm2d updates them; None where the fused function does
/// not apply (not a channels-last bf16 CPU tensor, a side under 2, or a build without the
/// shim), and the caller runs the plain ops.
pub(crate) fn bn_pool_relu(xs: &Tensor, bn: &BatchNorm) -> Option<Tensor> {
    if xs.kind() != Kind::BFloat16 {
        return None;
    }
    fused(xs, bn)
}

/// `bn_pool_relu` for float32 or bf16 activations.
fn fused(xs: &Tensor, bn: &BatchNorm) -> Option<Tensor> {
    let applies = xs.device() == Device::Cpu
        && matches!(xs.kind(), Kind::Float | Kind::BFloat16)
        && xs.dim() == 4
        && xs.size()[2] >= 2
        && xs.size()[3] >= 2
        && ffi::available();
    if !applies {
        return None;
    }
    let out = ffi::bn_pool_relu(xs, bn)?;
    bn.track_batch();
    Some(out)
}

#[cfg(flarecast_fused_conv)]
pub(super) mod ffi {
    use super::{BatchNorm, BN_EPS, BN_MOMENTUM};
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    /// A training BatchNorm2d as the fused shims take it: `FcBatchNorm` of
    /// `batch_norm_args.h`, its parameters and running buffers as at::Tensor handles.
    #[repr(C)]
    pub(in crate::model::fast) struct BatchNormArgs {
        gamma: *const c_void,
        beta: *const c_void,
        running_mean: *const c_void,
        running_var: *const c_void,
        momentum: f64,
        eps: f64,
    }

    impl BatchNormArgs {
        /// Valid while `bn` lives.
        pub(in crate::model::fast) fn of(bn: &BatchNorm) -> Self {
            let ptr = |t: &Tensor| t.as_ptr() as *const c_void;
            BatchNormArgs {
                gamma: ptr(&bn.weight),
                beta: ptr(&bn.bias),
                running_mean: ptr(&bn.running_mean),
                running_var: ptr(&bn.running_var),
                momentum: BN_MOMENTUM,
                eps: BN_EPS,
            }
        }
    }

    extern "C" {
        fn fc_bn_pool_relu(
            x: *const c_void,
            bn: *const BatchNormArgs,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    pub fn available() -> bool {
        true
    }

    pub fn bn_pool_relu(xs: &Tensor, bn: &BatchNorm) -> Option<Tensor> {
        let args = BatchNormArgs::of(bn);
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handles are live at::Tensor objects for the call's duration; the
        // shim returns a new handle that Tensor::from_ptr takes ownership of.
        let out = unsafe { fc_bn_pool_relu(xs.as_ptr() as *const c_void, &args, &mut err) };
        // None: a layout or parameter the shim does not take (activations not
        // channels-last, parameters not float32), and the plain ops compute the same.
        super::super::fused::ffi::shim_result(out, err)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use super::BatchNorm;
    use tch::Tensor;

    pub fn available() -> bool {
        false
    }

    /// Never called: `available` is false.
    pub fn bn_pool_relu(_: &Tensor, _: &BatchNorm) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::to_channels_last;
    use crate::model::InitScheme;
    use tch::nn;

    /// BatchNorm2d's four per-channel tensors: gamma, beta, running mean and variance.
    pub(in crate::model::fast) type Params = [Tensor; 4];

    /// Non-trivial affine parameters and running statistics for `c` channels. Drawn once
    /// and copied into each run: tests share libtorch's generator across threads.
    pub(in crate::model::fast) fn params(c: i64) -> Params {
        let cpu = (Kind::Float, Device::Cpu);
        [
            Tensor::rand([c], cpu) + 0.5,
            Tensor::randn([c], cpu),
            Tensor::randn([c], cpu),
            Tensor::rand([c], cpu) + 0.5,
        ]
    }

    pub(in crate::model::fast) fn batch_norm(vs: &nn::VarStore, p: &Params) -> BatchNorm {
        let bn = BatchNorm::new(vs.root() / "bn", p[0].size()[0], InitScheme::KaimingUniform);
        tch::no_grad(|| {
            for (dst, src) in [&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var]
                .into_iter()
                .zip(p)
            {
                dst.shallow_clone().copy_(src);
            }
        });
        bn
    }

    fn plain(xs: &Tensor, bn: &BatchNorm) -> Tensor {
        bn.forward_t(xs, true)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            .relu()
    }

    pub(in crate::model::fast) fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().to_kind(Kind::Double).double_value(&[])
    }

    pub(in crate::model::fast) struct Run {
        pub out: Tensor,
        pub dx: Tensor,
        pub dres: Option<Tensor>,
        pub dgamma: Tensor,
        pub dbeta: Tensor,
        pub running: (Tensor, Tensor),
    }

    pub(in crate::model::fast) type Forward<'a> =
        &'a dyn Fn(&Tensor, &BatchNorm, Option<&Tensor>) -> Tensor;

    /// Forward and backward of `f` on copies of `x0` and `r0` with the loss
    /// sum(out * weights).
    pub(in crate::model::fast) fn run(
        x0: &Tensor,
        r0: Option<&Tensor>,
        p: &Params,
        weights: &Tensor,
        f: Forward,
    ) -> Run {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(&vs, p);
        let xs = x0.detach().set_requires_grad(true);
        let rs = r0.map(|r| r.detach().set_requires_grad(true));
        let out = f(&xs, &bn, rs.as_ref());
        (out.to_kind(Kind::Float) * weights)
            .sum(Kind::Float)
            .backward();
        Run {
            out: out.detach(),
            dx: xs.grad(),
            dres: rs.map(|r| r.grad()),
            dgamma: bn.weight.grad(),
            dbeta: bn.bias.grad(),
            running: (bn.running_mean.copy(), bn.running_var.copy()),
        }
    }

    /// The fused function equals BatchNorm2d (training) -> max_pool2d(2) -> ReLU in
    /// float32: output, input gradient, gamma's and beta's gradients and the running
    /// statistics, on odd and even sides (an odd side's last row and column are in no
    /// window but still in the statistics), with a large channel mean.
    #[test]
    fn fused_equals_batch_norm_max_pool_relu_in_float32() {
        let cpu = (Kind::Float, Device::Cpu);
        for (n, c, h, w) in [(2, 16, 8, 8), (3, 32, 9, 7), (1, 8, 2, 3)] {
            let x0 = to_channels_last(&(Tensor::randn([n, c, h, w], cpu) * 2.0 + 30.0));
            let p = params(c);
            let weights = Tensor::randn([n, c, h / 2, w / 2], cpu);
            let want = run(&x0, None, &p, &weights, &|x, bn, _| plain(x, bn));
            let got = run(&x0, None, &p, &weights, &|x, bn, _| {
                fused(x, bn).expect("the shim is built")
            });
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                let tol = 2e-5 * max_abs(b).max(1.0);
                let d = max_abs(&(a - b));
                assert!(d <= tol, "{n}x{c}x{h}x{w} {what}: {d} > {tol}");
            };
            close(&got.out, &want.out, "output");
            close(&got.dx, &want.dx, "input gradient");
            close(&got.dgamma, &want.dgamma, "gamma's gradient");
            close(&got.dbeta, &want.dbeta, "beta's gradient");
            close(&got.running.0, &want.running.0, "running mean");
            close(&got.running.1, &want.running.1, "running var");
        }
    }

    /// In bf16 it is the float32 function rounded: against the plain ops in float32 on the
    /// same (bf16) values, output and input gradient agree to bf16's rounding. (The plain
    /// bf16 ops round BatchNorm's output before pooling, so where two values of a window
    /// round to the same bf16 their gradient can go to the other one.) NaN reaches the
    /// output, as with torch's ReLU, so a diverged network's loss is NaN.
    #[test]
    fn bf16_agrees_to_its_rounding_and_keeps_nan() {
        let cpu = (Kind::Float, Device::Cpu);
        let x0 = to_channels_last(&Tensor::randn([4, 64, 16, 16], cpu).to_kind(Kind::BFloat16));
        let p = params(64);
        let weights = Tensor::randn([4, 64, 8, 8], cpu);
        let x32 = to_channels_last(&x0.to_kind(Kind::Float));
        let want = run(&x32, None, &p, &weights, &|x, bn, _| plain(x, bn));
        let got = run(&x0, None, &p, &weights, &|x, bn, _| {
            bn_pool_relu(x, bn).expect("bf16 takes the fused path")
        });
        for (a, b, what) in [
            (&got.out, &want.out, "output"),
            (&got.dx, &want.dx, "input gradient"),
        ] {
            let d = max_abs(&(a.to_kind(Kind::Float) - b.to_kind(Kind::Float)));
            let tol = 2.0f64.powi(-6) * max_abs(b).max(1.0);
            assert!(d <= tol, "{what}: {d} > {tol}");
        }
        let rel = max_abs(&(&got.dgamma - &want.dgamma)) / max_abs(&want.dgamma);
        assert!(rel <= 1e-2, "gamma's gradient: {rel}");

        let _ = x0.get(1).get(5).get(3).get(4).fill_(f64::NAN);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(&vs, &p);
        let out = bn_pool_relu(&x0, &bn).unwrap();
        let nans = out.isnan().sum(Kind::Int64).int64_value(&[]);
        assert!(nans > 0, "NaN reaches the output");
        // float32 stays on the plain ops.
        assert!(bn_pool_relu(&x0.to_kind(Kind::Float), &bn).is_none());
    }
}
