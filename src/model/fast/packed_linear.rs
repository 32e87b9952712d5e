//! A Linear at inference with its weight packed once for MKL's GEMM (`packed_linear.cpp`,
//! libtorch's `mkl::_mkl_linear`). `F.linear` has MKL pack the whole weight matrix again on
//! every call, which for a batch of 16 cost AlexNet's float32 inference more than the
//! multiply itself. The caller keeps the packed weight while its weight is unchanged
//! (`model::prepared`).

use tch::{Kind, Tensor};

/// `available()`: whether the libtorch in use has the two ops (a build with MKL) and the
/// shim is built. `linear(xs, packed, ws, bs, batch)`: xs @ ws.T + bs through `packed`
/// (`pack(ws, batch)`); a batch of another size runs libtorch's plain linear inside the op.
pub(crate) use ffi::{available, linear};

/// `ws` [out, in] float32 packed for batches of `batch` rows.
pub(crate) fn pack(ws: &Tensor, batch: i64) -> Option<Tensor> {
    if ws.kind() != Kind::Float || ws.dim() != 2 {
        return None;
    }
    ffi::pack(ws, batch)
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_packed_linear_available() -> c_int;
        fn fc_pack_linear_weight(
            w: *const c_void,
            batch: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        fn fc_packed_linear(
            x: *const c_void,
            packed: *const c_void,
            w: *const c_void,
            b: *const c_void,
            batch: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    fn ptr(t: &Tensor) -> *const c_void {
        t.as_ptr() as *const c_void
    }

    pub fn available() -> bool {
        // SAFETY: reads libtorch's dispatcher table.
        unsafe { fc_packed_linear_available() != 0 }
    }

    pub fn pack(ws: &Tensor, batch: i64) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live at::Tensor handle; the shim returns a new handle we own.
        let out = unsafe { fc_pack_linear_weight(ptr(ws), batch, &mut err) };
        super::super::fused::ffi::shim_result(out, err)
    }

    pub fn linear(
        xs: &Tensor,
        packed: &Tensor,
        ws: &Tensor,
        bs: &Tensor,
        batch: i64,
    ) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: live at::Tensor handles for the call; the shim returns a new handle.
        let out =
            unsafe { fc_packed_linear(ptr(xs), ptr(packed), ptr(ws), ptr(bs), batch, &mut err) };
        // None: the op refused these tensors, and the plain linear computes the same.
        super::super::fused::ffi::shim_result(out, err)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use tch::Tensor;

    pub fn available() -> bool {
        false
    }

    pub fn pack(_: &Tensor, _: i64) -> Option<Tensor> {
        None
    }

    pub fn linear(_: &Tensor, _: &Tensor, _: &Tensor, _: &Tensor, _: i64) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Equal to libtorch's linear within float32's summation order, at the packed batch and
    /// at another one, on sizes that are no multiple of a vector.
    #[test]
    fn packed_equals_linear() {
        if !cfg!(flarecast_fused_conv) {
            return;
        }
        assert!(
            available(),
            "libtorch's MKL linear ops are in the dispatcher"
        );
        let cpu = (Kind::Float, Device::Cpu);
        // From a formula: tests beside this one draw from libtorch's generator too.
        let values = |n: i64, step: f64| (Tensor::arange(n, cpu) * step).sin();
        let (out, inp) = (70, 301);
        let ws = values(out * inp, 0.37).view([out, inp]);
        let bs = values(out, 1.3);
        let packed = tch::no_grad(|| pack(&ws, 16)).expect("packed");
        for batch in [16, 5] {
            let xs = values(batch * inp, 0.91).view([batch, inp]);
            let want = xs.linear(&ws, Some(&bs));
            let got = tch::no_grad(|| linear(&xs, &packed, &ws, &bs, 16)).expect("computed");
            assert_eq!(got.size(), want.size());
            let d = (&got - &want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            assert!(d <= 1e-5 * scale, "batch {batch}: {d} against {scale}");
        }
    }
}
