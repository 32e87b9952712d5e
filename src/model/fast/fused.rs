//! oneDNN's fused inference convolution (`mkldnn::_convolution_pointwise`, the op
//! torch.compile emits on CPU): the convolution, its bias, an optional residual and the
//! activation in one pass over the output, where the plain ops write the output and then
//! read and write it again for each elementwise step. The values are the plain ops' (the
//! same oneDNN kernel, the same arithmetic). The op has no gradient, so `conv` gives
//! `None`, and the caller runs the plain ops, whenever autograd is on, the tensors are
//! not float32/bf16 on the CPU, or the libtorch in use lacks the op.

use std::cell::Cell;
use tch::{Device, Kind, Tensor};

/// The elementwise step after the convolution (and the residual).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Relu,
    /// min(max(x, 0), 6), MobileNetV2's ReLU6.
    Relu6,
}

/// A square convolution's stride, padding and groups (dilation 1).
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
}

thread_local! {
    /// Set while `plain_ops` runs on this thread.
    static PLAIN_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the plain ops on this thread, where a NaN must reach the output.
///
/// oneDNN's ReLU epilogue turns NaN into 0 where torch's ReLU keeps it: for finite weights
/// and inputs the two agree, but a diverged network (finite weights whose activations
/// overflow) would give a finite loss on the fused path. Training's validation runs here,
/// so its divergence check sees what PyTorch would.
pub fn plain_ops<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PLAIN_ONLY.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PLAIN_ONLY.with(|p| p.replace(true)));
    f()
}

/// Whether the fused op can run on `xs` now: autograd off, the CPU, float32 or bf16, and
/// not inside `plain_ops`.
pub fn applies(xs: &Tensor) -> bool {
    xs.device() == Device::Cpu
        && matches!(xs.kind(), Kind::Float | Kind::BFloat16)
        && !PLAIN_ONLY.with(Cell::get)
        && ffi::available()
        && !ffi::grad_enabled()
}

/// act(conv(xs, ws) + bs + residual), or None where `applies` does not hold or oneDNN
/// does not fuse the combination (a residual with ReLU6). `ws`, `bs` and `residual` are
/// in `xs`'s kind.
pub fn conv(
    xs: &Tensor,
    ws: &Tensor,
    bs: Option<&Tensor>,
    residual: Option<&Tensor>,
    g: Geometry,
    act: Act,
) -> Option<Tensor> {
    if !applies(xs) {
        return None;
    }
    ffi::conv(xs, ws, bs, residual, g, act)
}

#[cfg(flarecast_fused_conv)]
pub(super) mod ffi {
    use super::{Act, Geometry};
    use std::ffi::{c_char, c_double, c_int, c_void, CStr};
    use std::sync::OnceLock;
    use tch::Tensor;

    extern "C" {
        fn fc_fused_conv_available() -> c_int;
        fn fc_grad_enabled() -> c_int;
        fn fc_fused_error_free(err: *mut c_char);
        #[allow(clippy::too_many_arguments)]
        fn fc_fused_conv(
            x: *const c_void,
            w: *const c_void,
            bias: *const c_void,
            other: *const c_void,
            stride: i64,
            padding: i64,
            groups: i64,
            act: *const c_char,
            lo: c_double,
            hi: c_double,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        // SAFETY: a lookup in libtorch's dispatcher, which is loaded with the binary.
        *AVAILABLE.get_or_init(|| unsafe { fc_fused_conv_available() } != 0)
    }

    pub fn grad_enabled() -> bool {
        // SAFETY: reads libtorch's thread-local grad mode.
        unsafe { fc_grad_enabled() != 0 }
    }

    pub fn conv(
        xs: &Tensor,
        ws: &Tensor,
        bs: Option<&Tensor>,
        residual: Option<&Tensor>,
        g: Geometry,
        act: Act,
    ) -> Option<Tensor> {
        let (name, lo, hi): (&CStr, f64, f64) = match act {
            Act::Relu => (c"relu", 0.0, 0.0),
            Act::Relu6 => (c"hardtanh", 0.0, 6.0),
        };
        let ptr = |t: Option<&Tensor>| t.map_or(std::ptr::null(), |t| t.as_ptr() as *const c_void);
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the pointers are live at::Tensor handles for the call's duration; the
        // shim returns a new handle that Tensor::from_ptr takes ownership of.
        let out = unsafe {
            fc_fused_conv(
                xs.as_ptr() as *const c_void,
                ws.as_ptr() as *const c_void,
                ptr(bs),
                ptr(residual),
                g.stride,
                g.padding,
                g.groups,
                name.as_ptr(),
                lo,
                hi,
                &mut err,
            )
        };
        // None: the op refused these tensors (a layout or kind oneDNN does not take), and
        // the plain ops compute the same thing.
        shim_result(out, err)
    }

    /// A shim call's result: the new tensor it allocated, or None (its error message
    /// freed) where it refused; the caller then runs the plain ops.
    pub(in crate::model::fast) fn shim_result(
        out: *mut c_void,
        err: *mut c_char,
    ) -> Option<Tensor> {
        if out.is_null() {
            if !err.is_null() {
                // SAFETY: the shim's NUL-terminated, strdup'ed message.
                unsafe { fc_fused_error_free(err) };
            }
            return None;
        }
        // SAFETY: `out` is a heap at::Tensor the shim allocated for us.
        Some(unsafe { Tensor::from_ptr(out as *mut torch_sys::C_tensor) })
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    pub fn available() -> bool {
        false
    }

    pub fn grad_enabled() -> bool {
        true
    }

    /// Never called: `available` is false.
    pub fn conv<X, W, B, R, G, A>(_: X, _: W, _: B, _: R, _: G, _: A) -> Option<tch::Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::to_channels_last;

    fn plain(
        xs: &Tensor,
        ws: &Tensor,
        bs: &Tensor,
        res: Option<&Tensor>,
        g: Geometry,
        act: Act,
    ) -> Tensor {
        let y = xs.conv2d(
            ws,
            Some(bs),
            [g.stride; 2],
            [g.padding; 2],
            [1, 1],
            g.groups,
        );
        let y = match res {
            Some(r) => y + r,
            None => y,
        };
        match act {
            Act::Relu => y.relu(),
            Act::Relu6 => y.relu6(),
        }
    }

    /// The fused op equals the plain ops (within float rounding) in float32 channels-last,
    /// for each use the networks make of it, grouped (depthwise) and strided; with autograd
    /// on it declines.
    #[test]
    fn fused_equals_the_plain_ops_and_declines_under_autograd() {
        assert!(
            ffi::available(),
            "libtorch 2.13 has mkldnn::_convolution_pointwise"
        );
        let cpu = (Kind::Float, Device::Cpu);
        for (cin, groups, stride) in [(8, 1, 1), (8, 8, 2), (1, 1, 2)] {
            let xs = to_channels_last(&(Tensor::randn([2, cin, 12, 12], cpu) * 3.0));
            let ws = to_channels_last(&Tensor::randn([8, cin / groups, 3, 3], cpu));
            let bs = Tensor::randn([8], cpu);
            let g = Geometry {
                stride,
                padding: 1,
                groups,
            };
            let out_side = if stride == 1 { 12 } else { 6 };
            let res = to_channels_last(&Tensor::randn([2, 8, out_side, out_side], cpu));
            // ResNet's ReLU(conv + residual), and each activation alone.
            for (act, r) in [
                (Act::Relu, Some(&res)),
                (Act::Relu, None),
                (Act::Relu6, None),
            ] {
                let fused = tch::no_grad(|| conv(&xs, &ws, Some(&bs), r, g, act))
                    .expect("the fused op runs with autograd off");
                let want = tch::no_grad(|| plain(&xs, &ws, &bs, r, g, act));
                let diff = (&fused - &want).abs().max().double_value(&[]);
                assert!(diff <= 1e-5, "{act:?} residual {}: {diff}", r.is_some());
            }
            assert!(conv(&xs, &ws, Some(&bs), None, g, Act::Relu).is_none());
        }
    }

    /// NaN: torch's ReLU keeps it, oneDNN's epilogue gives 0; inside `plain_ops` the fused
    /// op declines, so the caller's plain ops keep torch's NaN.
    #[test]
    fn nan_is_zeroed_by_the_fused_relu_and_plain_ops_keep_it() {
        let cpu = (Kind::Float, Device::Cpu);
        let xs = to_channels_last(&Tensor::ones([1, 1, 4, 4], cpu));
        let _ = xs.get(0).get(0).get(1).get(1).fill_(f64::NAN);
        let ws = to_channels_last(&Tensor::ones([2, 1, 1, 1], cpu));
        let bs = Tensor::zeros([2], cpu);
        let g = Geometry {
            stride: 1,
            padding: 0,
            groups: 1,
        };
        let nans = |t: &Tensor| t.isnan().sum(Kind::Int64).int64_value(&[]);
        let fused = tch::no_grad(|| conv(&xs, &ws, Some(&bs), None, g, Act::Relu))
            .expect("the fused op runs with autograd off");
        assert_eq!(nans(&fused), 0);
        assert_eq!(fused.sum(Kind::Double).double_value(&[]), 2.0 * 15.0);
        assert_eq!(
            nans(&tch::no_grad(|| plain(&xs, &ws, &bs, None, g, Act::Relu))),
            2
        );
        let inside = tch::no_grad(|| plain_ops(|| conv(&xs, &ws, Some(&bs), None, g, Act::Relu)));
        assert!(inside.is_none());
        // And the switch is back once `plain_ops` returns.
        assert!(tch::no_grad(|| applies(&xs)));
    }
}
