//! A Linear at inference with its weight prepared once (`packed_linear.cpp`). `F.linear`
//! has MKL pack the whole weight matrix again on every call, which for a batch of 16 cost
//! AlexNet's float32 inference more than the multiply itself. On Intel CPUs the weight is
//! packed for MKL's GEMM (libtorch's `mkl::_mkl_linear`); on AMD's, where MKL runs its
//! generic code, it is held as a oneDNN tensor for oneDNN's inner product, which on an
//! AVX2-only AMD EPYC (Zen 3) took AlexNet's two large Linears at batch 16 in 15.6-18.5
//! and 6.5-6.9 ms against MKL's packed 28.6-31.3 and 11.3-12.1 ms. The caller keeps the
//! prepared weight while its weight is unchanged (`model::prepared`).

use tch::{Kind, Tensor};

/// Whether the libtorch in use has MKL's two ops (a build with MKL) and the shim is built.
pub(crate) use ffi::available;

/// A weight prepared for `linear`, and how.
pub(crate) struct Packed {
    pub weight: Tensor,
    pub backend: Backend,
}

impl Packed {
    /// The weight and its backend as tensors, for `model::prepared` to keep: the batch
    /// MKL's weight was packed for, or 0 for oneDNN's.
    pub fn into_tensors(self) -> Vec<Tensor> {
        let batch = match self.backend {
            Backend::Mkl { batch } => batch,
            Backend::OneDnn => 0,
        };
        vec![self.weight, Tensor::from(batch)]
    }

    /// What `into_tensors` made; None for anything else (nothing was packed).
    pub fn from_tensors(made: Vec<Tensor>) -> Option<Self> {
        let [weight, batch] = <[Tensor; 2]>::try_from(made).ok()?;
        let backend = match batch.int64_value(&[]) {
            0 => Backend::OneDnn,
            batch => Backend::Mkl { batch },
        };
        Some(Packed { weight, backend })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// MKL's GEMM, packed for batches of this many rows (another batch size runs
    /// libtorch's plain linear inside the op).
    Mkl { batch: i64 },
    /// oneDNN's inner product, any batch size.
    OneDnn,
}

impl Backend {
    /// The faster on this CPU for batches of `batch` rows: oneDNN on AMD's, where MKL
    /// takes its generic code path, MKL elsewhere.
    pub fn for_cpu(batch: i64) -> Self {
        if crate::hardware::CpuFeatures::detect().amd_family.is_some() {
            Backend::OneDnn
        } else {
            Backend::Mkl { batch }
        }
    }
}

/// `ws` [out, in] float32 prepared for `backend`.
pub(crate) fn pack(ws: &Tensor, backend: Backend) -> Option<Packed> {
    if ws.kind() != Kind::Float || ws.dim() != 2 {
        return None;
    }
    let weight = match backend {
        Backend::Mkl { batch } => ffi::pack(ws, batch),
        Backend::OneDnn => ffi::onednn_weight(ws),
    }?;
    Some(Packed { weight, backend })
}

/// xs @ ws.T + bs through `packed` (`pack(ws, ..)`).
pub(crate) fn linear(xs: &Tensor, packed: &Packed, ws: &Tensor, bs: &Tensor) -> Option<Tensor> {
    match packed.backend {
        Backend::Mkl { batch } => ffi::linear(xs, &packed.weight, ws, bs, batch),
        Backend::OneDnn => ffi::onednn_linear(xs, &packed.weight, bs),
    }
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
        fn fc_onednn_linear_weight(w: *const c_void, err: *mut *mut c_char) -> *mut c_void;
        fn fc_onednn_linear(
            x: *const c_void,
            weight: *const c_void,
            b: *const c_void,
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

    pub fn onednn_weight(ws: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live at::Tensor handle; the shim returns a new handle we own.
        let out = unsafe { fc_onednn_linear_weight(ptr(ws), &mut err) };
        super::super::fused::ffi::shim_result(out, err)
    }

    pub fn onednn_linear(xs: &Tensor, weight: &Tensor, bs: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: live at::Tensor handles for the call; the shim returns a new handle.
        let out = unsafe { fc_onednn_linear(ptr(xs), ptr(weight), ptr(bs), &mut err) };
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

    pub fn onednn_weight(_: &Tensor) -> Option<Tensor> {
        None
    }

    pub fn onednn_linear(_: &Tensor, _: &Tensor, _: &Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Both backends equal libtorch's linear within float32's summation order, at the
    /// packed batch and at another one, on sizes that are no multiple of a vector.
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
        for backend in [Backend::Mkl { batch: 16 }, Backend::OneDnn] {
            let packed = tch::no_grad(|| pack(&ws, backend)).expect("packed");
            for batch in [16, 5] {
                let xs = values(batch * inp, 0.91).view([batch, inp]);
                let want = xs.linear(&ws, Some(&bs));
                let got = tch::no_grad(|| linear(&xs, &packed, &ws, &bs)).expect("computed");
                assert_eq!(got.size(), want.size());
                assert_eq!(got.kind(), Kind::Float);
                let d = (&got - &want).abs().max().double_value(&[]);
                let scale = want.abs().max().double_value(&[]);
                assert!(
                    d <= 1e-5 * scale,
                    "{backend:?} batch {batch}: {d} against {scale}"
                );
            }
        }
    }
}
