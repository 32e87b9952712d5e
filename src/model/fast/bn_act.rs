//! Training's BatchNorm2d (batch statistics), an optional residual sum and the activation
//! after it as one autograd function over a channels-last activation (`bn_act.cpp`):
//! ResNet's `relu(bn(conv(x)) + identity)`, MobileNetV2's `relu6(bn(conv(x)))` and the
//! attention network's `relu(bn(conv(x)))`, with two passes over the activation forward
//! and two backward where libtorch makes five or more each way.

use super::super::layers::BatchNorm;
use super::fused::Act;
use tch::{Device, Kind, Tensor};

/// act(batch_norm(xs) + residual) in training mode (`act` None: no activation), the
/// running statistics and the batch count updated as BatchNorm2d updates them; None where
/// the fused function does not apply (not a channels-last float32 or bf16 CPU tensor, a
/// residual of another shape, kind or layout, a single value per channel, or a build
/// without the shim), and the caller runs the plain ops.
pub(crate) fn bn_act(
    xs: &Tensor,
    bn: &BatchNorm,
    residual: Option<&Tensor>,
    act: Option<Act>,
) -> Option<Tensor> {
    if !applies(xs) {
        return None;
    }
    let out = ffi::bn_act(xs, bn, residual, act)?;
    bn.track_batch();
    Some(out)
}

/// Whether the fused function can take `xs` (checked before the convolution that makes
/// it): a 4-d float32 or bf16 CPU tensor, and a build with the shim.
pub(crate) fn applies(xs: &Tensor) -> bool {
    xs.device() == Device::Cpu
        && matches!(xs.kind(), Kind::Float | Kind::BFloat16)
        && xs.dim() == 4
        && ffi::available()
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use super::super::bn_pool::ffi::BatchNormArgs;
    use super::{Act, BatchNorm};
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_bn_act(
            x: *const c_void,
            residual: *const c_void,
            bn: *const BatchNormArgs,
            act: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    pub fn available() -> bool {
        true
    }

    pub fn bn_act(
        xs: &Tensor,
        bn: &BatchNorm,
        residual: Option<&Tensor>,
        act: Option<Act>,
    ) -> Option<Tensor> {
        let args = BatchNormArgs::of(bn);
        // bn_act.cpp's codes.
        let code = match act {
            None => 0,
            Some(Act::Relu) => 1,
            Some(Act::Relu6) => 2,
        };
        let residual = residual.map_or(std::ptr::null(), |r| r.as_ptr() as *const c_void);
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handles are live at::Tensor objects for the call's duration; the
        // shim returns a new handle that Tensor::from_ptr takes ownership of.
        let out = unsafe {
            fc_bn_act(
                xs.as_ptr() as *const c_void,
                residual,
                &args,
                code,
                &mut err,
            )
        };
        super::super::fused::ffi::shim_result(out, err)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use super::{Act, BatchNorm};
    use tch::Tensor;

    pub fn available() -> bool {
        false
    }

    /// Never called: `available` is false.
    pub fn bn_act(_: &Tensor, _: &BatchNorm, _: Option<&Tensor>, _: Option<Act>) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::bn_pool::tests::{batch_norm, max_abs, params, run};
    use super::*;
    use crate::model::to_channels_last;
    use tch::nn;

    /// What the fused function replaces: BatchNorm2d in training, the sum, the activation.
    fn plain(xs: &Tensor, bn: &BatchNorm, residual: Option<&Tensor>, act: Option<Act>) -> Tensor {
        let mut y = bn.forward_t(xs, true);
        if let Some(r) = residual {
            y += r;
        }
        match act {
            None => y,
            Some(Act::Relu) => y.relu(),
            Some(Act::Relu6) => y.relu6(),
        }
    }

    /// The fused function equals BatchNorm2d (training) -> + residual -> ReLU / ReLU6 / no
    /// activation in float32, for every use the networks make of it: output, the input's
    /// and the residual's gradients, gamma's and beta's and the running statistics; on a
    /// large channel mean, and with values spread over ReLU6's clamp.
    #[test]
    fn fused_equals_batch_norm_residual_and_activation_in_float32() {
        let cpu = (Kind::Float, Device::Cpu);
        let uses = [
            (Some(Act::Relu), true),
            (Some(Act::Relu), false),
            (Some(Act::Relu6), false),
            (None, true),
            (None, false),
        ];
        // Values from a formula, not libtorch's generator, which tests running beside this
        // one draw from too: a draw that puts a 1x2 channel's two values close together
        // leaves its variance to float32's rounding of 30, and the comparison to chance.
        // Here the two values of each such channel are at least 0.9 apart.
        let spread = |shape: [i64; 4], step: f64| {
            let n: i64 = shape.iter().product();
            (Tensor::arange(n, cpu) * step).sin().view(shape)
        };
        for (n, c, h, w) in [(2, 16, 8, 8), (3, 24, 5, 7), (1, 8, 1, 2)] {
            let x0 = to_channels_last(&(spread([n, c, h, w], 2.0) * 2.0 + 30.0));
            let r0 = to_channels_last(&(spread([n, c, h, w], 1.913) * 3.0));
            let weights = spread([n, c, h, w], 2.371);
            // gamma up to 4: ReLU6 clamps a share of the values at 6.
            let mut p = params(c);
            p[0] = &p[0] * 3.0;
            for (act, with_residual) in uses {
                let r = with_residual.then_some(&r0);
                let want = run(&x0, r, &p, &weights, &|x, bn, r| plain(x, bn, r, act));
                let got = run(&x0, r, &p, &weights, &|x, bn, r| {
                    bn_act(x, bn, r, act).expect("the shim is built")
                });
                let what = format!("{n}x{c}x{h}x{w} {act:?} residual {with_residual}");
                let close = |a: &Tensor, b: &Tensor, part: &str| {
                    let tol = 2e-5 * max_abs(b).max(1.0);
                    let d = max_abs(&(a - b));
                    assert!(d <= tol, "{what} {part}: {d} > {tol}");
                };
                close(&got.out, &want.out, "output");
                close(&got.dx, &want.dx, "input gradient");
                if let (Some(a), Some(b)) = (&got.dres, &want.dres) {
                    close(a, b, "residual gradient");
                }
                close(&got.dgamma, &want.dgamma, "gamma's gradient");
                close(&got.dbeta, &want.dbeta, "beta's gradient");
                close(&got.running.0, &want.running.0, "running mean");
                close(&got.running.1, &want.running.1, "running var");
                assert_eq!(
                    got.out.stride(),
                    x0.stride(),
                    "{what}: channels-last output"
                );
            }
        }
    }

    /// In bf16 it agrees with the plain ops in bf16 (which round BatchNorm's output before
    /// the sum, as the fused function does) to bf16's rounding. Where the two roundings
    /// put a sum on either side of ReLU's zero the gradient passes in one and not the
    /// other, so the gradients are held to their share of such elements and to their
    /// relative size. NaN reaches the output, as with torch's ReLU and ReLU6, so a
    /// diverged network's loss is NaN. A single value per channel, which BatchNorm2d
    /// refuses in training, is left to the plain op and its error.
    #[test]
    fn bf16_agrees_to_its_rounding_keeps_nan_and_leaves_one_value_to_the_plain_op() {
        let cpu = (Kind::Float, Device::Cpu);
        let bf16 = |t: Tensor| to_channels_last(&t.to_kind(Kind::BFloat16));
        let x0 = bf16(Tensor::randn([4, 64, 12, 12], cpu));
        let r0 = bf16(Tensor::randn([4, 64, 12, 12], cpu));
        let p = params(64);
        let weights = Tensor::randn([4, 64, 12, 12], cpu);
        let f32 = |t: &Tensor| t.to_kind(Kind::Float);
        // The share of elements off by more than bf16's rounding of the largest.
        let off = |a: &Tensor, b: &Tensor| {
            let tol = 2.0f64.powi(-7) * max_abs(b).max(1.0);
            let n = (f32(a) - f32(b))
                .abs()
                .gt(tol)
                .sum(Kind::Int64)
                .int64_value(&[]);
            n as f64 / b.numel() as f64
        };
        let rel_norm = |a: &Tensor, b: &Tensor| {
            let d = (f32(a) - f32(b)).norm().double_value(&[]);
            d / f32(b).norm().double_value(&[])
        };
        for act in [None, Some(Act::Relu), Some(Act::Relu6)] {
            for r in [None, Some(&r0)] {
                let what = format!("{act:?} residual {}", r.is_some());
                let want = run(&x0, r, &p, &weights, &|x, bn, r| plain(x, bn, r, act));
                let got = run(&x0, r, &p, &weights, &|x, bn, r| {
                    bn_act(x, bn, r, act).expect("bf16 takes the fused path")
                });
                assert_eq!(off(&got.out, &want.out), 0.0, "{what}: output");
                let mut grads = vec![(&got.dx, &want.dx, "input gradient")];
                if let (Some(a), Some(b)) = (&got.dres, &want.dres) {
                    grads.push((a, b, "residual gradient"));
                }
                for (a, b, part) in grads {
                    let share = off(a, b);
                    assert!(share <= 2e-3, "{what} {part}: {share} of the elements off");
                    let rel = rel_norm(a, b);
                    assert!(rel <= 2e-2, "{what} {part}: {rel} of its norm");
                }
                let rel = rel_norm(&got.dgamma, &want.dgamma);
                assert!(rel <= 1e-2, "{what} gamma's gradient: {rel}");
            }
        }

        let _ = x0.get(1).get(5).get(3).get(4).fill_(f64::NAN);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(&vs, &p);
        for act in [Some(Act::Relu), Some(Act::Relu6)] {
            let out = bn_act(&x0, &bn, None, act).unwrap();
            let nans = out.isnan().sum(Kind::Int64).int64_value(&[]);
            assert!(nans > 0, "{act:?}: NaN reaches the output");
        }
        let one = to_channels_last(&Tensor::ones([1, 64, 1, 1], cpu));
        assert!(bn_act(&one, &bn, None, Some(Act::Relu)).is_none());
    }
}
