//! Training's 2x2, stride 2 max pooling over NCHW float32 activations (`max_pool2.cpp`):
//! bitwise libtorch's values and gradients, in vector loops. libtorch's NCHW kernel walks
//! each window element by element; on an AVX2-only AMD EPYC (Zen 3), where the paper's
//! networks and VGG16 then trained NCHW, it was about 10 % of a standard CNN training step
//! (the attention network still trains NCHW there). Other layouts, kinds and devices keep
//! libtorch's op, which is fast there.

use tch::{Device, Kind, Tensor};

/// `xs.max_pool2d(2, 2)` in a training pass: the shim where it applies (a contiguous
/// float32 CPU tensor), libtorch's op otherwise. Inference and explanations keep
/// libtorch's op: the shim's backward is not itself differentiable.
pub(crate) fn max_pool2_t(xs: &Tensor, train: bool) -> Tensor {
    if train && applies(xs) {
        if let Some(out) = ffi::max_pool2(xs) {
            return out;
        }
    }
    xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}

fn applies(xs: &Tensor) -> bool {
    xs.device() == Device::Cpu
        && xs.kind() == Kind::Float
        && xs.dim() == 4
        && xs.is_contiguous()
        && xs.size()[2] >= 2
        && xs.size()[3] >= 2
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_max_pool2(x: *const c_void, err: *mut *mut c_char) -> *mut c_void;
    }

    pub fn max_pool2(xs: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `xs` is a live at::Tensor handle for the call's duration; the shim
        // returns a new handle that Tensor::from_ptr takes ownership of.
        let out = unsafe { fc_max_pool2(xs.as_ptr() as *const c_void, &mut err) };
        // None: a tensor the shim does not take, and libtorch's op computes the same.
        super::super::fused::ffi::shim_result(out, err)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use tch::Tensor;

    pub fn max_pool2(_: &Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitwise_equal(a: &Tensor, b: &Tensor) -> bool {
        // NaN compares unequal to itself, and -0 equal to +0: compare the bit patterns.
        let bits = |t: &Tensor| t.contiguous().view_dtype(Kind::Int);
        a.size() == b.size() && bits(a).equal(&bits(b))
    }

    /// Output and input gradient of `f` applied to `2 * x` (a non-leaf, as BatchNorm's
    /// output is), with the loss sum(out * w).
    fn run(x0: &Tensor, w: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
        let x = x0.detach().set_requires_grad(true);
        let out = f(&(&x * 2.0));
        (&out * w).sum(Kind::Float).backward();
        (out.detach(), x.grad())
    }

    /// Small integers, so windows hold ties; with NaN, -inf, -0.0 and +0.0 placed in some.
    fn input(shape: [i64; 4]) -> Tensor {
        let cpu = (Kind::Float, Device::Cpu);
        let x = Tensor::randint(4, shape, cpu) - 2.0;
        let flat = x.view([-1]);
        let n = flat.size()[0];
        for (i, v) in [f64::NAN, f64::NEG_INFINITY, -0.0, 0.0, f64::NAN, -0.0]
            .iter()
            .enumerate()
        {
            let _ = flat.get((7 * i as i64 + 1) % n).fill_(*v);
        }
        x
    }

    /// Values and gradients equal libtorch's max_pool2d bit for bit, on even and odd
    /// sides, with ties, NaN, -inf and signed zeros in the input and -0.0 in the upstream
    /// gradient, on planes enough to be split across threads.
    #[test]
    fn equals_libtorch_max_pool2d_bitwise() {
        for shape in [[2, 3, 8, 8], [3, 5, 9, 7], [1, 2, 2, 3], [4, 64, 33, 40]] {
            let x0 = input(shape);
            let out_shape = [shape[0], shape[1], shape[2] / 2, shape[3] / 2];
            let cpu = (Kind::Float, Device::Cpu);
            let w = Tensor::randint(3, out_shape, cpu) - 1.0;
            let _ = w.view([-1]).get(0).fill_(-0.0);
            let plain = |x: &Tensor| x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            let (want_out, want_dx) = run(&x0, &w, &plain);
            let (got_out, got_dx) = run(&x0, &w, &|x| {
                if cfg!(flarecast_fused_conv) {
                    ffi::max_pool2(x).expect("the shim takes it")
                } else {
                    max_pool2_t(x, true)
                }
            });
            assert!(bitwise_equal(&got_out, &want_out), "{shape:?} output");
            assert!(bitwise_equal(&got_dx, &want_dx), "{shape:?} gradient");
            assert!(
                got_out.isnan().any().int64_value(&[]) == 1,
                "{shape:?}: NaN kept"
            );
        }
    }

    /// Channels-last, bf16 and inference passes keep libtorch's op.
    #[test]
    fn other_layouts_kinds_and_passes_take_libtorchs_op() {
        let x = Tensor::randn([2, 4, 6, 6], (Kind::Float, Device::Cpu));
        assert!(applies(&x));
        assert!(!applies(&crate::model::to_channels_last(&x)));
        assert!(!applies(&x.to_kind(Kind::BFloat16)));
        assert!(!applies(&x.narrow(3, 0, 1)));
        let plain = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        assert!(bitwise_equal(&max_pool2_t(&x, false), &plain));
        assert!(bitwise_equal(&max_pool2_t(&x, true), &plain));
    }
}
