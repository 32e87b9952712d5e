//! ReLU6 in place without libtorch's hidden copy (`relu6.cpp`). libtorch's `relu6_`
//! records hardtanh's derivative on its input, so under autograd it first clones the whole
//! activation; MobileNetV2 applies it after 35 of its BatchNorms, and in a float32
//! training step those clones were about 5 % of the time. This function clamps in place
//! and takes hardtanh's backward at the result, which gives bitwise the same values and
//! gradients.

use tch::Tensor;

/// `xs.relu6_()`, the same values and gradients, without the clone where the shim is built.
pub(crate) fn relu6_(mut xs: Tensor) -> Tensor {
    if let Some(out) = ffi::relu6_(&mut xs) {
        return out;
    }
    xs.relu6_()
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_relu6_(x: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
    }

    pub fn relu6_(xs: &mut Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `xs` is a live at::Tensor handle, borrowed mutably for the call; the
        // shim returns a new handle to it that Tensor::from_ptr takes ownership of.
        let out = unsafe { fc_relu6_(xs.as_mut_ptr() as *mut c_void, &mut err) };
        // None: autograd refused the in-place op (a leaf that requires grad), and
        // libtorch's relu6_ says why.
        super::super::fused::ffi::shim_result(out, err)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use tch::Tensor;

    pub fn relu6_(_: &mut Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::to_channels_last;
    use tch::{Device, Kind};

    /// A float32 input with values on and around both of ReLU6's corners, NaN included.
    fn input(kind: Kind) -> Tensor {
        // -2.5 .. 8.5 in steps of 0.25 (0 and 6 exactly among them), then a NaN.
        let mut values: Vec<f32> = (0..45).map(|i| -2.5 + 0.25 * i as f32).collect();
        values.push(f32::NAN);
        values.extend([-0.0, 5.999_999_5, 6.000_000_5, 1e-30, -1e-30]);
        values.resize(2 * 8 * 2 * 2, 3.0);
        let t = Tensor::from_slice(&values).view([2, 8, 2, 2]).to_kind(kind);
        to_channels_last(&t)
    }

    /// Output, input gradient and the upstream tensor's gradient of `f` applied to `2 * x`
    /// (a non-leaf, as BatchNorm's output is), with the loss sum(out * w).
    fn run(x0: &Tensor, w: &Tensor, f: &dyn Fn(Tensor) -> Tensor) -> (Tensor, Tensor) {
        let x = x0.detach().set_requires_grad(true);
        let pre = &x * 2.0;
        let out = f(pre);
        (out.to_kind(Kind::Float) * w).sum(Kind::Float).backward();
        (out.detach(), x.grad())
    }

    fn bitwise_equal(a: &Tensor, b: &Tensor) -> bool {
        // NaN compares unequal to itself: compare the bit patterns.
        let bits = |t: &Tensor| t.to_kind(Kind::Float).view_dtype(Kind::Int);
        a.size() == b.size() && bits(a).equal(&bits(b))
    }

    /// Values and gradients equal libtorch's relu6_ bit for bit, in float32 and bf16,
    /// at 0, 6, just either side of them, -0.0 and NaN.
    #[test]
    fn equals_libtorch_relu6_bitwise() {
        let w = Tensor::arange(2 * 8 * 2 * 2, (Kind::Float, Device::Cpu)).view([2, 8, 2, 2]) - 10.0;
        for kind in [Kind::Float, Kind::BFloat16] {
            let x0 = input(kind);
            let (want_out, want_dx) = run(&x0, &w, &|mut t| t.relu6_());
            let (got_out, got_dx) = run(&x0, &w, &|mut t| {
                if cfg!(flarecast_fused_conv) {
                    ffi::relu6_(&mut t).expect("the shim takes it")
                } else {
                    relu6_(t)
                }
            });
            assert!(bitwise_equal(&got_out, &want_out), "{kind:?} output");
            assert!(bitwise_equal(&got_dx, &want_dx), "{kind:?} gradient");
            let passed = got_dx.ne(0.0).sum(Kind::Int64).int64_value(&[]);
            assert!(
                passed > 0 && passed < 2 * 8 * 2 * 2,
                "{kind:?}: a mask, not all or none"
            );
        }
    }

    /// It works in place: the tensor passed in holds the result, as with relu6_.
    #[test]
    fn writes_in_place() {
        let x = input(Kind::Float) * 1.0;
        let out = relu6_(x.shallow_clone());
        assert_eq!(out.data_ptr(), x.data_ptr());
        assert!(bitwise_equal(&x, &input(Kind::Float).clamp(0.0, 6.0)));
    }
}
