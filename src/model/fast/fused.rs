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

/// Whether autograd records operations on this thread now (libtorch's grad mode).
pub(crate) fn autograd_on() -> bool {
    ffi::grad_enabled()
}

/// act(conv(xs, ws) + bs + residual) (`act` None: no activation, as a BatchNorm'd
/// convolution without one), or None where `applies` does not hold or oneDNN does not
/// fuse the combination (a residual with ReLU6). `ws` (plain, or from `prepack`), `bs`
/// and `residual` are in `xs`'s kind.
pub fn conv(
    xs: &Tensor,
    ws: &Tensor,
    bs: Option<&Tensor>,
    residual: Option<&Tensor>,
    g: Geometry,
    act: Option<Act>,
) -> Option<Tensor> {
    if !applies(xs) {
        return None;
    }
    ffi::conv(xs, ws, bs, residual, g, act)
}

/// A float32 convolution weight `ws` in the blocked layout oneDNN's kernel reads for
/// inputs of `input_size` (`mkldnn::_reorder_convolution_weight`, as torch.compile's
/// weight freezing makes it), for `conv` to take in place of `ws`: the same kernel and
/// values, without reordering the weight on every call (for ResNet-34's 512- and
/// 256-channel 3x3 weights, 16 ms of a float32 pass of about 1 s on a 2-core AMD EPYC).
/// An input of another shape still gives the same values (the op reorders the weight
/// again). None for another kind, or without the op.
pub fn prepack(ws: &Tensor, input_size: &[i64], g: Geometry) -> Option<Tensor> {
    if ws.kind() != Kind::Float || ws.device() != Device::Cpu || input_size.len() != 4 {
        return None;
    }
    ffi::prepack(ws, input_size, g)
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
        fn fc_prepack_available() -> c_int;
        fn fc_prepack_conv_weight(
            w: *const c_void,
            stride: i64,
            padding: i64,
            groups: i64,
            input_size: *const i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
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
        act: Option<Act>,
    ) -> Option<Tensor> {
        let (name, lo, hi): (&CStr, f64, f64) = match act {
            None => (c"none", 0.0, 0.0),
            Some(Act::Relu) => (c"relu", 0.0, 0.0),
            Some(Act::Relu6) => (c"hardtanh", 0.0, 6.0),
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

    pub fn prepack(ws: &Tensor, input_size: &[i64], g: Geometry) -> Option<Tensor> {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        // SAFETY: a lookup in libtorch's dispatcher, which is loaded with the binary.
        if !*AVAILABLE.get_or_init(|| unsafe { fc_prepack_available() } != 0) {
            return None;
        }
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ws` is a live at::Tensor handle and `input_size` holds the 4 values the
        // shim reads; the shim returns a new handle that Tensor::from_ptr takes ownership of.
        let out = unsafe {
            fc_prepack_conv_weight(
                ws.as_ptr() as *const c_void,
                g.stride,
                g.padding,
                g.groups,
                input_size.as_ptr(),
                &mut err,
            )
        };
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

    pub fn prepack<W, S, G>(_: W, _: S, _: G) -> Option<tch::Tensor> {
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
        act: Option<Act>,
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
            None => y,
            Some(Act::Relu) => y.relu(),
            Some(Act::Relu6) => y.relu6(),
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
            // ResNet's ReLU(conv + residual), MobileNetV2's conv + residual, each
            // activation alone and none (a downsampling convolution).
            for (act, r) in [
                (Some(Act::Relu), Some(&res)),
                (None, Some(&res)),
                (Some(Act::Relu), None),
                (Some(Act::Relu6), None),
                (None, None),
            ] {
                let fused = tch::no_grad(|| conv(&xs, &ws, Some(&bs), r, g, act))
                    .expect("the fused op runs with autograd off");
                let want = tch::no_grad(|| plain(&xs, &ws, &bs, r, g, act));
                let diff = (&fused - &want).abs().max().double_value(&[]);
                assert!(diff <= 1e-5, "{act:?} residual {}: {diff}", r.is_some());
            }
            assert!(conv(&xs, &ws, Some(&bs), None, g, Some(Act::Relu)).is_none());
        }
    }

    /// A prepacked weight gives the plain weight's values bit for bit, with and without a
    /// residual, at the input shape it was packed for and at others (batch and side), for
    /// ResNet's 1-channel 7x7 stem, a 3x3, a strided 1x1 and a depthwise convolution.
    #[test]
    fn a_prepacked_weight_gives_the_same_values() {
        let cpu = (Kind::Float, Device::Cpu);
        let specs = [
            (1, 16, 7, 2, 3, 1, 40),
            (16, 16, 3, 1, 1, 1, 12),
            (16, 32, 1, 2, 0, 1, 12),
            (16, 16, 3, 2, 1, 16, 13),
        ];
        for (cin, cout, k, stride, padding, groups, side) in specs {
            let ws = to_channels_last(&Tensor::randn([cout, cin / groups, k, k], cpu));
            let bs = Tensor::randn([cout], cpu);
            let g = Geometry {
                stride,
                padding,
                groups,
            };
            let packed = tch::no_grad(|| prepack(&ws, &[4, cin, side, side], g))
                .expect("libtorch 2.13 has mkldnn::_reorder_convolution_weight");
            assert!(packed.is_mkldnn(), "an opaque oneDNN tensor");
            for (n, s) in [(4, side), (3, side), (2, side + 5)] {
                let xs = to_channels_last(&Tensor::randn([n, cin, s, s], cpu));
                let out = (s + 2 * padding - k) / stride + 1;
                let res = to_channels_last(&Tensor::randn([n, cout, out, out], cpu));
                for (act, r) in [(Some(Act::Relu), Some(&res)), (None, None)] {
                    let run = |w: &Tensor| {
                        tch::no_grad(|| conv(&xs, w, Some(&bs), r, g, act)).expect("fused")
                    };
                    let (got, want) = (run(&packed), run(&ws));
                    assert_eq!(got.size(), want.size());
                    assert!(got.equal(&want), "{cin}->{cout} k{k} at {n}x{s}, {act:?}");
                }
            }
        }
        // bf16 weights stay plain.
        let bf16 = Tensor::ones([2, 2, 3, 3], (Kind::BFloat16, Device::Cpu));
        let g = Geometry {
            stride: 1,
            padding: 1,
            groups: 1,
        };
        assert!(prepack(&bf16, &[1, 2, 8, 8], g).is_none());
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
        let fused = tch::no_grad(|| conv(&xs, &ws, Some(&bs), None, g, Some(Act::Relu)))
            .expect("the fused op runs with autograd off");
        assert_eq!(nans(&fused), 0);
        assert_eq!(fused.sum(Kind::Double).double_value(&[]), 2.0 * 15.0);
        assert_eq!(
            nans(&tch::no_grad(|| plain(
                &xs,
                &ws,
                &bs,
                None,
                g,
                Some(Act::Relu)
            ))),
            2
        );
        let inside =
            tch::no_grad(|| plain_ops(|| conv(&xs, &ws, Some(&bs), None, g, Some(Act::Relu))));
        assert!(inside.is_none());
        // And the switch is back once `plain_ops` returns.
        assert!(tch::no_grad(|| applies(&xs)));
    }
}
