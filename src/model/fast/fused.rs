//! oneDNN's fused inference convolution (`mkldnn::_convolution_pointwise`, the op
//! torch.compile emits on CPU): the convolution, its bias, an optional residual and the
//! activation in one pass over the output, where the plain ops write the output and then
//! read and write it again for each elementwise step. The values are the plain ops' (the
//! same oneDNN kernel, the same arithmetic). The op has no gradient, so `conv` gives
//! `None`, and the caller runs the plain ops, whenever autograd is on, the tensors are
//! not float32/bf16 on the CPU, or the libtorch in use lacks the op.

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

/// Off: oneDNN's ReLU epilogue turns NaN into 0 where torch's ReLU keeps it, so a diverged
/// network's validation loss came out finite and training's divergence check (which looks
/// for a non-finite loss) missed it. The path runs again once that check also covers the
/// weights and the fused path's NaN handling is tested.
const ENABLED: bool = false;

/// Whether the fused op can run on `xs` now: autograd off, the CPU, float32 or bf16.
pub fn applies(xs: &Tensor) -> bool {
    ENABLED
        && xs.device() == Device::Cpu
        && matches!(xs.kind(), Kind::Float | Kind::BFloat16)
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
mod ffi {
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
        if out.is_null() {
            // The op refused these tensors (a layout or kind oneDNN does not take): the
            // plain ops compute the same thing.
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
    use super::{Act, Geometry};
    use tch::Tensor;

    pub fn available() -> bool {
        false
    }

    pub fn grad_enabled() -> bool {
        true
    }

    pub fn conv(
        _: &Tensor,
        _: &Tensor,
        _: Option<&Tensor>,
        _: Option<&Tensor>,
        _: Geometry,
        _: Act,
    ) -> Option<Tensor> {
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
        if !ffi::available() {
            eprintln!("skipped: this libtorch has no mkldnn::_convolution_pointwise");
            return;
        }
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
                let fused = tch::no_grad(|| ffi::conv(&xs, &ws, Some(&bs), r, g, act))
                    .expect("the fused op runs with autograd off");
                let want = tch::no_grad(|| plain(&xs, &ws, &bs, r, g, act));
                let diff = (&fused - &want).abs().max().double_value(&[]);
                assert!(diff <= 1e-5, "{act:?} residual {}: {diff}", r.is_some());
            }
            assert!(conv(&xs, &ws, Some(&bs), None, g, Act::Relu).is_none());
        }
    }
}
