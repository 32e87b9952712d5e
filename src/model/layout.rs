//! How a 4-d tensor is laid out in memory: channels-last (NHWC strides), which the CPU's
//! and cuDNN's convolution kernels prefer, or NCHW, what the reference runs.

use tch::Tensor;

/// Same values and shape, NHWC strides: libtorch picks its channels-last kernels from them
/// (tch exposes no memory-format argument). The strides are set explicitly: a permute and
/// `contiguous()` leaves a one-channel tensor (the network's input, conv_block1's weight)
/// in NCHW, since contiguity ignores size-1 dimensions, and the whole first block then
/// runs in NCHW with a reorder of its 64-channel output forward and backward.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    let Ok((n, c, h, w)) = t.size4() else {
        return t.shallow_clone();
    };
    let nhwc = [h * w * c, 1, w * c, c];
    if t.stride() == nhwc {
        return t.shallow_clone();
    }
    let mut out = Tensor::empty_strided([n, c, h, w], nhwc, (t.kind(), t.device()));
    // copy_ is differentiable: gradients reach `t` (a weight) through it.
    out.copy_(t);
    out
}

/// Whether `t` is a 4-d tensor with exactly NHWC strides (as `to_channels_last` makes).
pub fn is_channels_last(t: &Tensor) -> bool {
    t.size4()
        .is_ok_and(|(_, c, h, w)| t.stride() == [h * w * c, 1, w * c, c])
}

/// Keeps a convolution's weight variable stored in the layout a pass computes in. A
/// convolution whose weight is not in its input's layout copies the weight on every pass,
/// and its gradient back; torch's users avoid that with one `model.to(memory_format=
/// torch.channels_last)`. Only the strides change: the values, the autograd leaf and
/// every handle to it (the optimizer's, the VarStore's) stay the same, and saving writes
/// the logical order. The reference path calls it with `false`, so it always runs the
/// NCHW weights its parity is tested with.
pub fn keep_layout(var: &Tensor, channels_last: bool) {
    let Ok((_, c, h, w)) = var.size4() else {
        return;
    };
    let strides = if channels_last {
        [h * w * c, 1, w * c, c]
    } else {
        [c * h * w, h * w, w, 1]
    };
    if var.stride() == strides {
        return;
    }
    tch::no_grad(|| {
        let mut relaid = Tensor::empty_strided(var.size(), strides, (var.kind(), var.device()));
        relaid.copy_(var);
        let mut handle = var.shallow_clone();
        handle.set_data(&relaid);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn channels_last_strides_even_for_one_channel() {
        let x = Tensor::arange(2 * 3 * 4, (Kind::Float, tch::Device::Cpu)).view([2, 1, 3, 4]);
        let cl = to_channels_last(&x);
        assert_eq!(cl.stride(), vec![12, 1, 4, 1]);
        assert!(cl.equal(&x));
        let y = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, tch::Device::Cpu)).view([2, 3, 4, 5]);
        let cl = to_channels_last(&y);
        assert_eq!(cl.stride(), vec![60, 1, 15, 3]);
        assert!(cl.equal(&y));
    }

    #[test]
    fn a_kept_layout_changes_the_strides_for_every_handle_and_nothing_else() {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().randn("w", &[4, 3, 2, 2], 0.0, 1.0);
        let before = w.detach().copy();
        keep_layout(&w, true);
        let stored = &vs.variables()["w"];
        assert_eq!(stored.stride(), vec![12, 1, 6, 3]);
        assert!(stored.equal(&before) && stored.requires_grad());
        keep_layout(&w, false);
        assert_eq!(vs.variables()["w"].stride(), vec![12, 4, 2, 1]);
        assert!(w.equal(&before));
    }
}
