//! Training's stride-1 "same" convolutions (k x k, padding (k - 1) / 2, groups 1) over
//! channels-last float32 activations, with the weight gradient from flarecast's own AVX2
//! kernel (`conv_train.cpp`) on processors whose convolutions run below AVX-512. The
//! forward and the input gradient stay libtorch's (oneDNN).
//!
//! oneDNN's AVX2 weight gradient ran at 53-127 GFLOP/s on a 2-core AMD EPYC (Zen 3) with
//! a peak of about 200, 45 % of ResNet-34's training convolutions; this kernel computes
//! the same sums, added in the same order, 1.4-2x faster there (docs/performance.md). On
//! AVX-512 processors oneDNN's own kernels run, as before.

use super::super::layout::is_channels_last;
use tch::{Device, Kind, Tensor};

/// `xs.conv2d(ws, bs, stride 1, padding, dilation 1, groups 1)` with the weight gradient
/// from the AVX2 kernel where it applies (`applies`); None elsewhere, and the caller runs
/// libtorch's conv2d, which computes the same function.
pub(crate) fn conv2d(
    xs: &Tensor,
    ws: &Tensor,
    bs: Option<&Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
) -> Option<Tensor> {
    if !applies(xs, ws, stride, padding, groups) {
        return None;
    }
    ffi::conv_train(xs, ws, bs)
}

/// The largest image (pixels) whose 1x1 convolutions take the kernel. A 1x1 tap reads
/// each packed value once where a 3x3 reads it nine times, and on the Zen 3 EPYC the
/// kernel was 1.2-1.3x oneDNN's on ResNet-50's 16x16 and 8x8 1x1 convolutions but at
/// parity on its 32x32 ones and 0.7-0.85x on its 64x64 ones.
const SMALL_1X1_PIXELS: i64 = 16 * 16;

/// A training pass's convolution the kernel takes: autograd recording the weight's
/// gradient, float32 channels-last on the CPU, stride 1, groups 1, an odd square kernel
/// with padding (k - 1) / 2 (1x1 only on small images), input channels a multiple of 8,
/// on a processor with AVX2 and FMA whose convolutions do not run on AVX-512.
fn applies(xs: &Tensor, ws: &Tensor, stride: i64, padding: i64, groups: i64) -> bool {
    let k = ws.size();
    xs.device() == Device::Cpu
        && xs.kind() == Kind::Float
        && ws.kind() == Kind::Float
        && xs.dim() == 4
        && k.len() == 4
        && stride == 1
        && groups == 1
        && k[2] == k[3]
        && k[2] % 2 == 1
        && padding == (k[2] - 1) / 2
        && (k[2] > 1 || xs.size()[2] * xs.size()[3] <= SMALL_1X1_PIXELS)
        && xs.size()[1] % 8 == 0
        && is_channels_last(xs)
        && ws.requires_grad()
        && super::fused::autograd_on()
        && cpu_takes_it()
}

/// AVX2 and FMA, and oneDNN's convolutions below AVX-512 (where its own weight gradient
/// is the slow AVX2 one).
fn cpu_takes_it() -> bool {
    use std::sync::OnceLock;
    static TAKES: OnceLock<bool> = OnceLock::new();
    *TAKES.get_or_init(|| {
        let f = crate::hardware::CpuFeatures::detect();
        f.avx2 && f.fma && !crate::hardware::cpu_convolutions_avx512()
    })
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn fc_conv_train(
            x: *const c_void,
            w: *const c_void,
            bias: *const c_void,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        #[cfg(test)]
        fn fc_conv_train_weight_grad(
            x: *const c_void,
            dy: *const c_void,
            k: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    pub fn conv_train(xs: &Tensor, ws: &Tensor, bs: Option<&Tensor>) -> Option<Tensor> {
        let bias = bs.map_or(std::ptr::null(), |b| b.as_ptr() as *const c_void);
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the pointers are live at::Tensor handles (or null for no bias) for the
        // call's duration; the shim returns a new handle that Tensor::from_ptr owns.
        let out = unsafe {
            fc_conv_train(
                xs.as_ptr() as *const c_void,
                ws.as_ptr() as *const c_void,
                bias,
                &mut err,
            )
        };
        // None: the shim refused these tensors, and libtorch's conv2d computes the same.
        super::super::fused::ffi::shim_result(out, err)
    }

    #[cfg(test)]
    pub fn weight_grad(xs: &Tensor, dy: &Tensor, k: i64) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `conv_train`.
        let out = unsafe {
            fc_conv_train_weight_grad(
                xs.as_ptr() as *const c_void,
                dy.as_ptr() as *const c_void,
                k,
                &mut err,
            )
        };
        super::super::fused::ffi::shim_result(out, err)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use tch::Tensor;

    pub fn conv_train(_: &Tensor, _: &Tensor, _: Option<&Tensor>) -> Option<Tensor> {
        None
    }
}

#[cfg(all(test, flarecast_fused_conv))]
mod tests {
    use super::*;
    use crate::model::to_channels_last;

    fn cl_randn(shape: [i64; 4]) -> Tensor {
        to_channels_last(&Tensor::randn(shape, (Kind::Float, Device::Cpu)))
    }

    /// libtorch's weight gradient of conv2d(x, w, stride 1, padding (k - 1) / 2) at
    /// output gradient dy, through autograd, in `x`'s kind and layout (float64: the exact
    /// sums, to measure both float32 results against; float32 channels-last: oneDNN's).
    fn libtorch_weight_grad(x: &Tensor, dy: &Tensor, k: i64) -> Tensor {
        let w = Tensor::zeros([dy.size()[1], x.size()[1], k, k], (x.kind(), Device::Cpu));
        let w = if is_channels_last(x) {
            to_channels_last(&w)
        } else {
            w
        };
        let w = w.set_requires_grad(true);
        let p = (k - 1) / 2;
        let y = x.conv2d(&w, None::<&Tensor>, [1, 1], [p, p], [1, 1], 1);
        (&y * dy.to_kind(x.kind())).sum(x.kind()).backward();
        w.grad()
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().to_kind(Kind::Double).double_value(&[])
    }

    /// The kernel's weight gradient equals the exact sums to float32 rounding, as oneDNN's
    /// does, on ResNet's and MobileNetV2's shapes and odd ones: 1x1, 3x3 and 5x5, input
    /// channels in blocks of 16 and a last block of 8, output channels not a multiple of
    /// the tile (6), images taller than a block of rows and sides of 1 and 2.
    #[test]
    fn the_weight_gradient_is_the_exact_sum_to_float32_rounding() {
        tch::manual_seed(7);
        // (N, Ci, Co, H, W, k)
        for (n, ci, co, h, w, k) in [
            (2, 64, 64, 16, 16, 3),
            (3, 24, 20, 9, 7, 3),
            (2, 40, 13, 5, 6, 5),
            (2, 16, 7, 40, 33, 3),
            (4, 32, 96, 8, 8, 1),
            (2, 8, 6, 1, 1, 3),
            (1, 8, 5, 2, 1, 3),
        ] {
            let x = cl_randn([n, ci, h, w]);
            let dy = cl_randn([n, co, h, w]);
            let exact = |t: &Tensor| t.to_kind(Kind::Double).contiguous();
            let want = libtorch_weight_grad(&exact(&x), &exact(&dy), k);
            let got = ffi::weight_grad(&x, &dy, k).expect("the kernel takes it");
            assert_eq!(got.size(), [co, ci, k, k]);
            let theirs = libtorch_weight_grad(&x, &dy, k).to_kind(Kind::Double);
            let ours = (got.to_kind(Kind::Double) - &want).abs();
            let scale = max_abs(&want);
            let err = max_abs(&ours) / scale;
            let theirs_err = max_abs(&(theirs - &want)) / scale;
            // Float32 sums of n*h*w products in some order: within a few epsilons times the
            // square root of their count of the exact ones (a misplaced product is off by
            // the order of the sum itself).
            let products = (n * h * w) as f64;
            let bound = 8.0 * f64::from(f32::EPSILON) * products.sqrt();
            assert!(
                err <= bound && err <= 1e-5,
                "{n}x{ci}->{co} {h}x{w} k{k}: error {err:e}, bound {bound:e} (oneDNN's {theirs_err:e})"
            );
        }
    }

    /// Through autograd: the same output as conv2d, bit for bit the same input gradient
    /// (libtorch's), and the weight and bias gradients of libtorch's within float32
    /// rounding of the sums.
    #[test]
    fn a_training_convolution_equals_conv2d() {
        if !cpu_takes_it() {
            return;
        }
        tch::manual_seed(11);
        for (bias, k) in [(false, 3), (true, 3), (true, 1)] {
            let x0 = cl_randn([2, 32, 12, 10]);
            let w0 = cl_randn([24, 32, k, k]) * 0.1;
            let b0 = Tensor::randn([24], (Kind::Float, Device::Cpu));
            let g = cl_randn([2, 24, 12, 10]);
            let p = (k - 1) / 2;
            let run = |ours: bool| {
                let x = x0.detach().set_requires_grad(true);
                let w = w0.detach().set_requires_grad(true);
                let b = bias.then(|| b0.detach().set_requires_grad(true));
                let y = if ours {
                    conv2d(&x, &w, b.as_ref(), 1, p, 1).expect("it applies")
                } else {
                    x.conv2d(&w, b.as_ref(), [1, 1], [p, p], [1, 1], 1)
                };
                (&y * &g).sum(Kind::Float).backward();
                (y.detach(), x.grad(), w.grad(), b.map(|b| b.grad()))
            };
            let (y1, dx1, dw1, db1) = run(true);
            let (y0, dx0, dw0, db0) = run(false);
            assert!(y1.equal(&y0), "output");
            assert!(dx1.equal(&dx0), "input gradient");
            let close = |a: &Tensor, b: &Tensor| max_abs(&(a - b)) <= 1e-5 * max_abs(b);
            assert!(close(&dw1, &dw0), "weight gradient");
            if let (Some(a), Some(b)) = (db1, db0) {
                assert!(close(&a, &b), "bias gradient");
            }
        }
    }

    /// What it does not take is left to libtorch: NCHW, bf16, a stride, groups, padding
    /// other than "same", and no gradient to record.
    #[test]
    fn other_convolutions_are_left_to_libtorch() {
        let x = cl_randn([1, 16, 8, 8]);
        let w = cl_randn([16, 16, 3, 3]).set_requires_grad(true);
        let nchw = x.contiguous();
        assert!(!applies(&nchw, &w, 1, 1, 1));
        assert!(!applies(&x.to_kind(Kind::BFloat16), &w, 1, 1, 1));
        assert!(!applies(&x, &w, 2, 1, 1));
        assert!(!applies(&x, &w, 1, 1, 2));
        assert!(!applies(&x, &w, 1, 0, 1));
        assert!(!applies(&x, &w.detach(), 1, 1, 1));
        let w1 = cl_randn([16, 16, 1, 1]).set_requires_grad(true);
        assert_eq!(applies(&x, &w1, 1, 0, 1), cpu_takes_it(), "1x1 on 8x8");
        assert!(
            !applies(&cl_randn([1, 16, 17, 16]), &w1, 1, 0, 1),
            "1x1 on 17x16"
        );
        tch::no_grad(|| assert!(!applies(&x, &w, 1, 1, 1)));
        assert_eq!(applies(&x, &w, 1, 1, 1), cpu_takes_it());
    }
}
