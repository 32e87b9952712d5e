//! Plain SGD's update (no momentum, L2 weight decay: the paper's optimizer) in one pass
//! over each parameter (`sgd_update.cpp`), where libtorch's SGD takes two passes and a
//! parameter-sized temporary. The parameters come out bitwise the same as libtorch's
//! step; on a network with large layers (AlexNet's and VGG16's classifiers) the update is
//! a sizeable share of a training step.

use tch::{Device, Kind, Tensor};

/// Applies p <- p - lr * (g + weight_decay * p) to every variable with a gradient: one
/// pass where a parameter and its gradient share a dense layout, libtorch's two ops where
/// they do not. Returns false, having changed nothing, where the shim does not take them (a
/// parameter not a float32 CPU tensor, or a build without the shim); the caller then
/// steps libtorch's optimizer.
pub fn update(vars: &[Tensor], lr: f64, weight_decay: f64) -> bool {
    let grads: Vec<Option<Tensor>> = vars
        .iter()
        .map(|v| Some(v.grad()).filter(Tensor::defined))
        .collect();
    let applies = ffi::available()
        && vars.iter().zip(&grads).all(|(v, g)| match g {
            None => true,
            Some(g) => {
                let taken = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
                taken(v) && taken(g) && v.size() == g.size()
            }
        });
    if !applies {
        return false;
    }
    for (v, g) in vars.iter().zip(&grads) {
        if let Some(g) = g {
            if let Err(e) = ffi::update(v, g, lr, weight_decay) {
                // Checked above: the shim refuses only what `applies` rules out.
                panic!("one-pass SGD update: {e}");
            }
        }
    }
    true
}

#[cfg(flarecast_fused_conv)]
mod ffi {
    use std::ffi::{c_char, c_void, CStr};
    use tch::Tensor;

    extern "C" {
        fn fc_sgd_update(
            param: *mut c_void,
            grad: *const c_void,
            lr: f64,
            weight_decay: f64,
        ) -> *mut c_char;
        fn fc_fused_error_free(err: *mut c_char);
    }

    pub fn available() -> bool {
        true
    }

    pub fn update(param: &Tensor, grad: &Tensor, lr: f64, weight_decay: f64) -> Result<(), String> {
        // SAFETY: both are live at::Tensor handles for the call; the shim writes `param`'s
        // data in place (a leaf variable, outside autograd: no_grad is not needed for a raw
        // write) and returns null or a strdup'ed message.
        let err = unsafe {
            fc_sgd_update(
                param.as_ptr() as *mut c_void,
                grad.as_ptr() as *const c_void,
                lr,
                weight_decay,
            )
        };
        if err.is_null() {
            return Ok(());
        }
        // SAFETY: a NUL-terminated message the shim allocated; freed once, below.
        let text = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { fc_fused_error_free(err) };
        Err(text)
    }
}

#[cfg(not(flarecast_fused_conv))]
mod ffi {
    use tch::Tensor;

    pub fn available() -> bool {
        false
    }

    /// Never called: `available` is false.
    pub fn update(_: &Tensor, _: &Tensor, _: f64, _: f64) -> Result<(), String> {
        Err("built without libtorch's headers".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::to_channels_last;
    use tch::nn::{self, OptimizerConfig};

    /// Variables of awkward sizes (tails of every vector width, one larger than a
    /// thread's share), a channels-last convolution weight as the fast compute keeps it
    /// (one pass) and one whose gradient is laid out otherwise (libtorch's two ops), with
    /// gradients; one without a gradient stays as it was.
    /// The values come from a formula, not libtorch's generator, which tests running
    /// beside this one draw from too.
    fn store() -> (nn::VarStore, Vec<Tensor>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let shapes: [&[i64]; 7] = [
            &[1],
            &[7],
            &[33, 5],
            &[64, 1, 3, 3],
            &[70001],
            &[16, 8, 3, 3],
            &[8, 4, 5, 5],
        ];
        let mut vars: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let v = root.zeros(&format!("v{i}"), s);
                let n = v.numel() as i64;
                let values =
                    (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7 + i as f64).sin() * 3.0;
                tch::no_grad(|| v.shallow_clone().copy_(&values.view(*s)));
                v
            })
            .collect();
        for v in &mut vars[5..] {
            let cl = to_channels_last(v);
            v.set_data(&cl);
        }
        let _untouched = root.ones("no_grad", &[9]);
        let loss: Tensor = vars
            .iter()
            .map(|v| (v * v * v).sum(Kind::Float) * 0.37)
            .fold(Tensor::from(0.0f32), |a, b| a + b);
        loss.backward();
        let mut grad = vars[6].grad();
        let contiguous = grad.contiguous();
        grad.set_data(&contiguous);
        assert_ne!(vars[6].stride(), vars[6].grad().stride(), "layouts differ");
        assert_eq!(vars[5].stride(), vars[5].grad().stride(), "layouts agree");
        (vs, vars)
    }

    /// A variable's libtorch version counter.
    #[cfg(flarecast_fused_conv)]
    fn version(t: &Tensor) -> i64 {
        extern "C" {
            fn fc_tensor_version(t: *const std::ffi::c_void) -> i64;
        }
        // SAFETY: `t` is a live at::Tensor handle; the call only reads its counter.
        unsafe { fc_tensor_version(t.as_ptr() as *const std::ffi::c_void) }
    }

    #[cfg(not(flarecast_fused_conv))]
    fn version(_: &Tensor) -> i64 {
        unreachable!("the tests that read it are ignored without the shim")
    }

    /// Bitwise equal to libtorch's SGD step (what `train` took before), for the paper's
    /// settings and others, and it bumps the parameters' version counters, so inference
    /// weights made from them are made again (`model::prepared`).
    #[test]
    #[cfg_attr(not(flarecast_fused_conv), ignore = "built without libtorch's headers")]
    fn equals_libtorch_sgd_bitwise() {
        for (lr, wd) in [(1e-3, 0.5), (0.1, 0.0), (3e-4, 1e-4)] {
            let (ours, vars) = store();
            let (theirs, _) = store();
            let versions: Vec<i64> = vars.iter().map(version).collect();
            let all = ours.trainable_variables();
            assert!(
                update(&all, lr, wd),
                "the one pass applies to float32 CPU variables"
            );
            // libtorch's SGD as the paper's recipe builds it (`train::step::sgd`).
            let sgd = nn::Sgd {
                momentum: 0.0,
                dampening: 0.0,
                wd,
                nesterov: false,
            };
            let mut opt = sgd.build(&theirs, lr).unwrap();
            opt.step();
            let (a, b) = (ours.variables(), theirs.variables());
            for (name, v) in &a {
                let w = &b[name];
                assert!(v.equal(w), "{name} (lr {lr}, wd {wd}): not bitwise equal");
            }
            for (v, before) in vars.iter().zip(versions) {
                assert!(version(v) > before, "the version counter moves");
            }
        }
    }

    /// A parameter the pass does not take (float64 here) leaves every parameter to
    /// libtorch's step.
    #[test]
    fn declines_what_it_does_not_take() {
        let vs = nn::VarStore::new(Device::Cpu);
        let v = vs.root().randn("d", &[4], 0.0, 1.0).to_kind(Kind::Double);
        let f = vs.root().randn("f", &[4], 0.0, 1.0);
        let before = f.copy();
        ((&f * 2.0).sum(Kind::Float)).backward();
        let vars = [f.shallow_clone(), v.detach().set_requires_grad(true)];
        (vars[1].sum(Kind::Double)).backward();
        assert!(!update(&vars, 0.1, 0.0));
        assert!(f.equal(&before), "nothing changed");
    }
}
