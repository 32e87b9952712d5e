//! The paper's first block without its full-resolution activation (`first_block.cpp`):
//! the 3x3 convolution of the one-channel image, BatchNorm, ReLU and 2x2 max pooling in
//! one pass writing only the pooled output. oneDNN computes a one-input-channel
//! convolution at a small share of its speed on the others (about 20 GFLOP/s against 300
//! on a 2-core Xeon, a tenth of a float32 validation pass for a hundredth of its
//! arithmetic), and writes the network's largest activation for BatchNorm and pooling to
//! read again.
//! - Inference: BatchNorm folded into the convolution (`pooled`).
//! - bf16 training (`train`): an autograd function on batch statistics, which (the
//!   convolution being linear in its 3x3 patches) follow from the patches' covariance;
//!   the backward reads the input and the pooled gradient only. float32 training keeps
//!   the plain ops, whose results the paper's reproduction is checked against.

use super::super::layers::BatchNorm;
use tch::{Device, Kind, Tensor};

/// Output channels the kernel sums together; a block with another multiple runs the
/// oneDNN convolution.
const CHANNELS: i64 = 16;

/// relu(max_pool2d(conv2d(xs, ws, bs, padding 1), 2, 2)) for a [N, 1, H, W] input and a
/// [C, 1, 3, 3] weight (both in the compute kind), channels-last; None where the kernel
/// does not apply (autograd on, not the CPU, another shape or kind, inside
/// `fused::plain_ops`, a build without the shim), and the caller runs the plain ops.
pub(super) fn pooled(xs: &Tensor, ws: &Tensor, bs: &Tensor) -> Option<Tensor> {
    if !(super::fused::applies(xs) && is_first_block(xs, ws)) {
        return None;
    }
    ffi::first_block(&xs.contiguous(), ws, bs)
}

/// relu(max_pool2d(batch_norm(conv2d(xs, ws, bs, padding 1)), 2, 2)) in training mode
/// for a bf16 [N, 1, H, W] image batch (no gradient of its own) and a [C, 1, 3, 3] bf16
/// weight, the running statistics and batch count updated as BatchNorm2d updates them;
/// None where the function does not apply, and the caller runs the plain ops.
pub(super) fn train(xs: &Tensor, ws: &Tensor, bs: &Tensor, bn: &BatchNorm) -> Option<Tensor> {
    if xs.kind() != Kind::BFloat16 {
        return None;
    }
    train_any_kind(xs, ws, bs, bn)
}

/// `train` for float32 or bf16 inputs.
fn train_any_kind(xs: &Tensor, ws: &Tensor, bs: &Tensor, bn: &BatchNorm) -> Option<Tensor> {
    let applies = ffi::available()
        && xs.device() == Device::Cpu
        && matches!(xs.kind(), Kind::Float | Kind::BFloat16)
        && !xs.requires_grad()
        && is_first_block(xs, ws);
    if !applies {
        return None;
    }
    let out = ffi::first_block_train(&xs.contiguous(), ws, bs, bn)?;
    bn.track_batch();
    Some(out)
}

/// A [N, 1, H, W] input (sides of at least 2) and a [C, 1, 3, 3] weight, C a multiple of
/// the kernel's channel block.
fn is_first_block(xs: &Tensor, ws: &Tensor) -> bool {
    xs.dim() == 4
        && xs.size()[1] == 1
        && xs.size()[2] >= 2
        && xs.size()[3] >= 2
        && ws.size().len() == 4
        && ws.size()[1..] == [1, 3, 3]
        && ws.size()[0] % CHANNELS == 0
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use super::super::bn_pool::ffi::BatchNormArgs;
    use super::BatchNorm;
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_first_block(
            x: *const c_void,
            weight: *const c_void,
            bias: *const c_void,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        fn fc_first_block_train(
            x: *const c_void,
            weight: *const c_void,
            bias: *const c_void,
            bn: *const BatchNormArgs,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    fn ptr(t: &Tensor) -> *const c_void {
        t.as_ptr() as *const c_void
    }

    pub fn available() -> bool {
        true
    }

    pub fn first_block_train(
        xs: &Tensor,
        ws: &Tensor,
        bs: &Tensor,
        bn: &BatchNorm,
    ) -> Option<Tensor> {
        let args = BatchNormArgs::of(bn);
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `first_block`.
        let out = unsafe { fc_first_block_train(ptr(xs), ptr(ws), ptr(bs), &args, &mut err) };
        super::super::fused::ffi::shim_result(out, err)
    }

    pub fn first_block(xs: &Tensor, ws: &Tensor, bs: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the pointers are live at::Tensor handles for the call's duration; the
        // shim returns a new handle that the result takes ownership of.
        let out = unsafe { fc_first_block(ptr(xs), ptr(ws), ptr(bs), &mut err) };
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
    pub fn first_block_train(_: &Tensor, _: &Tensor, _: &Tensor, _: &BatchNorm) -> Option<Tensor> {
        None
    }

    /// Never reached: `fused::applies` is false without the shims.
    pub fn first_block(_: &Tensor, _: &Tensor, _: &Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::bn_pool::tests::{batch_norm, max_abs, params, Params};
    use super::*;
    use tch::nn;

    fn plain(xs: &Tensor, ws: &Tensor, bs: &Tensor) -> Tensor {
        xs.conv2d(ws, Some(bs), [1, 1], [1, 1], [1, 1], 1)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            .relu()
    }

    /// Equal to conv2d -> max_pool2d -> ReLU within float32 rounding, odd sides (the
    /// last row and column left out, as pooling leaves them) and even; in bf16 within
    /// bf16's rounding of the float32 result; channels-last; NaN kept, as torch keeps it.
    #[test]
    fn first_block_equals_conv_pool_relu() {
        let cpu = (Kind::Float, Device::Cpu);
        let ws = Tensor::randn([32, 1, 3, 3], cpu);
        let bs = Tensor::randn([32], cpu) * 0.5;
        for (h, w) in [(9, 7), (16, 16), (2, 3)] {
            let xs = Tensor::rand([3, 1, h, w], cpu);
            let got = tch::no_grad(|| pooled(&xs, &ws, &bs)).expect("the kernel applies");
            let want = plain(&xs, &ws, &bs);
            assert_eq!(got.size(), want.size());
            // Channels-last: each position's channels contiguous.
            assert_eq!(got.stride()[1], 1);
            let diff = (&got - &want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            assert!(diff <= 1e-6 * scale, "{h}x{w}: {diff} of {scale}");

            let bf = |t: &Tensor| t.to_kind(Kind::BFloat16);
            let got = tch::no_grad(|| pooled(&bf(&xs), &bf(&ws), &bf(&bs))).expect("bf16");
            assert_eq!(got.kind(), Kind::BFloat16);
            let want = plain(
                &bf(&xs).to_kind(Kind::Float),
                &bf(&ws).to_kind(Kind::Float),
                &bf(&bs).to_kind(Kind::Float),
            );
            let diff = (got.to_kind(Kind::Float) - &want).abs();
            let bound = want.abs() * (1.0 / 256.0) + 1e-6;
            assert!(
                bool::try_from(diff.le_tensor(&bound).all()).unwrap(),
                "{h}x{w} bf16"
            );
        }
        let xs = Tensor::rand([1, 1, 4, 4], cpu);
        let _ = xs.get(0).get(0).get(1).get(2).fill_(f64::NAN);
        let got = tch::no_grad(|| pooled(&xs, &ws, &bs)).expect("the kernel applies");
        let nans = |t: &Tensor| t.isnan().sum(Kind::Int64).int64_value(&[]);
        // The NaN pixel reaches every window whose 3x3 taps cover it: all four here.
        assert_eq!(nans(&got), nans(&plain(&xs, &ws, &bs)));
        assert_eq!(nans(&got), 4 * 32);
    }

    /// With autograd on, another channel count, or more than one input channel, the
    /// caller's plain ops run.
    #[test]
    fn first_block_declines_what_it_does_not_compute() {
        let cpu = (Kind::Float, Device::Cpu);
        let xs = Tensor::rand([1, 1, 8, 8], cpu);
        let ws = Tensor::randn([16, 1, 3, 3], cpu);
        let bs = Tensor::randn([16], cpu);
        assert!(pooled(&xs, &ws, &bs).is_none());
        let ws8 = Tensor::randn([8, 1, 3, 3], cpu);
        assert!(tch::no_grad(|| pooled(&xs, &ws8, &bs.narrow(0, 0, 8))).is_none());
        let xs2 = Tensor::rand([1, 2, 8, 8], cpu);
        let ws2 = Tensor::randn([16, 2, 3, 3], cpu);
        assert!(tch::no_grad(|| pooled(&xs2, &ws2, &bs)).is_none());
        assert!(
            tch::no_grad(|| super::super::fused::plain_ops(|| pooled(&xs, &ws, &bs))).is_none()
        );
    }

    struct TrainRun {
        out: Tensor,
        grads: [Tensor; 4],
        running: (Tensor, Tensor),
    }

    /// Forward and backward in training mode of `f` on (x, weight, bias) with BatchNorm
    /// `p`, the loss sum(out * weights); the gradients of the weight, bias, gamma, beta.
    fn train_run(
        x: &Tensor,
        conv: &(Tensor, Tensor),
        p: &Params,
        weights: &Tensor,
        f: &dyn Fn(&Tensor, &Tensor, &Tensor, &BatchNorm) -> Tensor,
    ) -> TrainRun {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(&vs, p);
        let ws = conv.0.detach().set_requires_grad(true);
        let bs = conv.1.detach().set_requires_grad(true);
        let out = f(x, &ws, &bs, &bn);
        (out.to_kind(Kind::Float) * weights)
            .sum(Kind::Float)
            .backward();
        TrainRun {
            out: out.detach(),
            grads: [ws.grad(), bs.grad(), bn.weight.grad(), bn.bias.grad()],
            running: (bn.running_mean.copy(), bn.running_var.copy()),
        }
    }

    fn train_plain(xs: &Tensor, ws: &Tensor, bs: &Tensor, bn: &BatchNorm) -> Tensor {
        bn.forward_t(&xs.conv2d(ws, Some(bs), [1, 1], [1, 1], [1, 1], 1), true)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            .relu()
    }

    /// In training, float32: equal to conv2d -> BatchNorm2d (batch statistics) ->
    /// max_pool2d -> ReLU in the output, the gradients of the weight, bias, gamma and
    /// beta, and the running statistics; on odd and even sides, for images in [0, 1] and
    /// for nearly constant ones (a magnetogram's grey disc), where the batch variance is
    /// a small difference of large sums.
    #[test]
    fn training_equals_conv_batch_norm_pool_relu_in_float32() {
        let cpu = (Kind::Float, Device::Cpu);
        for (n, h, w, flat) in [(2, 8, 8, false), (3, 9, 7, false), (2, 16, 12, true)] {
            let x = if flat {
                Tensor::randn([n, 1, h, w], cpu) * 1e-2 + 0.5
            } else {
                Tensor::rand([n, 1, h, w], cpu)
            };
            let conv = (Tensor::randn([32, 1, 3, 3], cpu), Tensor::randn([32], cpu));
            let p = params(32);
            let weights = Tensor::randn([n, 32, h / 2, w / 2], cpu);
            let want = train_run(&x, &conv, &p, &weights, &train_plain);
            let got = train_run(&x, &conv, &p, &weights, &|x, ws, bs, bn| {
                train_any_kind(x, ws, bs, bn).expect("the shim is built")
            });
            // On nearly constant images a window's four values can lie within float
            // rounding of each other, and the two programs may route a window's gradient
            // to different winners: the weight's gradient, a sum over the winners, then
            // moves by up to about 1 % of its largest value.
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                let rel = if flat && what.starts_with("weight") {
                    2e-2
                } else {
                    5e-5
                };
                let tol = rel * max_abs(b).max(1.0);
                let d = max_abs(&(a - b));
                assert!(d <= tol, "{n}x{h}x{w} flat {flat}, {what}: {d} > {tol}");
            };
            close(&got.out, &want.out, "output");
            for (k, what) in [(0, "weight's"), (2, "gamma's"), (3, "beta's")] {
                close(&got.grads[k], &want.grads[k], &format!("{what} gradient"));
            }
            // The bias's gradient is sum(dy) over every position, which BatchNorm makes
            // exactly zero; the plain ops give float rounding around zero (up to 1e-4 on
            // nearly constant images), so theirs is not the reference here.
            assert_eq!(max_abs(&got.grads[1]), 0.0, "bias's gradient");
            close(&got.running.0, &want.running.0, "running mean");
            close(&got.running.1, &want.running.1, "running var");
        }
    }

    /// bf16 training takes the function (float32 does not), agrees with the float32
    /// plain ops on the same bf16 values to bf16's rounding, and keeps NaN.
    #[test]
    fn training_in_bf16_agrees_to_its_rounding_and_keeps_nan() {
        let cpu = (Kind::Float, Device::Cpu);
        let bf = |t: &Tensor| t.to_kind(Kind::BFloat16);
        let x = bf(&Tensor::rand([4, 1, 32, 32], cpu));
        let conv = (
            bf(&Tensor::randn([64, 1, 3, 3], cpu)),
            bf(&Tensor::randn([64], cpu)),
        );
        let p = params(64);
        let weights = Tensor::randn([4, 64, 16, 16], cpu);
        let f32s = |t: &Tensor| t.to_kind(Kind::Float);
        let want = train_run(
            &f32s(&x),
            &(f32s(&conv.0), f32s(&conv.1)),
            &p,
            &weights,
            &train_plain,
        );
        let got = train_run(&x, &conv, &p, &weights, &|x, ws, bs, bn| {
            train(x, ws, bs, bn).expect("bf16 takes the fused path")
        });
        let d = max_abs(&(f32s(&got.out) - &want.out));
        let tol = 2.0f64.powi(-6) * max_abs(&want.out).max(1.0);
        assert!(d <= tol, "output: {d} > {tol}");
        for (k, what) in ["weight's", "gamma's", "beta's"].iter().enumerate() {
            let k = [0, 2, 3][k];
            let rel = max_abs(&(f32s(&got.grads[k]) - &want.grads[k])) / max_abs(&want.grads[k]);
            assert!(rel <= 1e-2, "{what} gradient: {rel}");
        }

        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(&vs, &p);
        assert!(train(&f32s(&x), &f32s(&conv.0), &f32s(&conv.1), &bn).is_none());
        let _ = x.get(1).get(0).get(3).get(4).fill_(f64::NAN);
        let out = train(&x, &conv.0, &conv.1, &bn).unwrap();
        let nans = out.isnan().sum(Kind::Int64).int64_value(&[]);
        assert!(nans > 0, "NaN reaches the output");
    }
}
