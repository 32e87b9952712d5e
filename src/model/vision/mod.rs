//! The architectures the field compares with the paper's networks, each exactly as
//! torchvision 0.28 defines it, with a one-channel first convolution (torchvision's
//! kernel, stride, padding and bias) and a two-class last Linear, its parameters under
//! torchvision's state-dict names so a PyTorch-trained model loads key for key.
//!
//! One file per family; this file is the interface the rest of the crate sees.

mod alexnet;
mod classifier;
mod mobilenet;
mod ops;
mod resnet;
mod vgg;

use super::tap::{NoTap, Tap};
use super::{Arch, Compute, Output};
use tch::{nn, Tensor};

/// The network's layers, by family (AlexNet's five convolutions held inline are the
/// largest, so boxed).
#[derive(Debug)]
enum Family {
    AlexNet(Box<alexnet::AlexNet>),
    Vgg16(vgg::Vgg16),
    ResNet(resnet::ResNet),
    MobileNetV2(mobilenet::MobileNetV2),
}

/// One torchvision network's parameters and the compute its forward passes use.
#[derive(Debug)]
pub struct VisionNet {
    arch: Arch,
    compute: Compute,
    net: Family,
}

impl VisionNet {
    /// Builds `arch` (not one of the paper's two) under `p` with torchvision's names and
    /// torchvision's own initialisation, drawn from tch's generator (seed it first).
    ///
    /// # Panics
    /// On the paper's two architectures, which `AttnNet` builds.
    pub fn new(p: &nn::Path, arch: Arch) -> Self {
        let net = match arch {
            Arch::AlexNet => Family::AlexNet(Box::new(alexnet::AlexNet::new(p))),
            Arch::Vgg16 => Family::Vgg16(vgg::Vgg16::new(p)),
            Arch::ResNet18 => Family::ResNet(resnet::ResNet::new(p, resnet::Depth::R18)),
            Arch::ResNet34 => Family::ResNet(resnet::ResNet::new(p, resnet::Depth::R34)),
            Arch::ResNet50 => Family::ResNet(resnet::ResNet::new(p, resnet::Depth::R50)),
            Arch::MobileNetV2 => Family::MobileNetV2(mobilenet::MobileNetV2::new(p)),
            Arch::Attention | Arch::StandardCnn => {
                panic!("VisionNet::new({arch}): the paper's networks are AttnNet's")
            }
        };
        VisionNet {
            arch,
            compute: Compute::default(),
            net,
        }
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn set_compute(&mut self, compute: Compute) {
        self.compute = compute;
    }

    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// The stage Grad-CAM uses by default: ResNet `layer4`, VGG/AlexNet the last ReLU of
    /// `features`, MobileNetV2 `features`' end.
    pub fn gradcam_stage(&self) -> &'static str {
        // The first stage of VGG's and AlexNet's lists, the last of the others'.
        match self.net {
            Family::AlexNet(_) | Family::Vgg16(_) => self.stages()[0],
            Family::ResNet(_) | Family::MobileNetV2(_) => {
                self.stages().last().expect("every network has a stage")
            }
        }
    }

    /// Every stage `tap.stage` is called with, in forward order.
    pub fn stages(&self) -> &'static [&'static str] {
        match self.net {
            Family::AlexNet(_) => alexnet::STAGES,
            Family::Vgg16(_) => vgg::STAGES,
            Family::ResNet(_) => resnet::STAGES,
            Family::MobileNetV2(_) => mobilenet::STAGES,
        }
    }

    /// The forward pass in this net's compute, nothing tapped: [N,1,H,W] in [0,1] ->
    /// `Output` (float32 logits, no maps, `features` the Grad-CAM stage's output).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Output {
        self.forward_tapped(xs, train, &mut NoTap)
    }

    /// The forward pass with `tap` called at every ReLU, stage and dropout.
    pub fn forward_tapped(&self, xs: &Tensor, train: bool, tap: &mut dyn Tap) -> Output {
        self.run(xs, train, self.compute.pass(train), tap)
    }

    /// `forward_tapped` in float32 and NCHW whatever this net's compute: torchvision's
    /// module as captum differentiates it, for the explanations.
    pub fn reference_tapped(&self, xs: &Tensor, train: bool, tap: &mut dyn Tap) -> Output {
        self.run(xs, train, Compute::default(), tap)
    }

    fn run(&self, xs: &Tensor, train: bool, c: Compute, tap: &mut dyn Tap) -> Output {
        let xs = ops::input(xs, c);
        let (logits, features) = match &self.net {
            Family::AlexNet(n) => n.forward(&xs, train, tap, c),
            Family::Vgg16(n) => n.forward(&xs, train, tap, c),
            Family::ResNet(n) => n.forward(&xs, train, tap, c),
            Family::MobileNetV2(n) => n.forward(&xs, train, tap, c),
        };
        Output {
            logits: ops::logits_f32(logits),
            maps: None,
            features,
            l3: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// torchvision's state dict of each modified network (one input channel, two
    /// classes): its number of keys, of parameters and of parameter values.
    const TORCHVISION: [(Arch, usize, usize, i64); 6] = [
        (Arch::AlexNet, 16, 16, 56_996_546),
        (Arch::Vgg16, 32, 32, 134_267_586),
        (Arch::ResNet18, 122, 62, 11_171_266),
        (Arch::ResNet34, 218, 110, 21_279_426),
        (Arch::ResNet50, 320, 161, 23_505_858),
        (Arch::MobileNetV2, 314, 158, 2_225_858),
    ];

    fn build(arch: Arch) -> (nn::VarStore, VisionNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = VisionNet::new(&vs.root(), arch);
        (vs, net)
    }

    fn shape(vs: &nn::VarStore, name: &str) -> Vec<i64> {
        vs.variables()
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .size()
    }

    #[test]
    fn key_sets_are_torchvisions() {
        for (arch, keys, params, values) in TORCHVISION {
            let (vs, net) = build(arch);
            let vars = vs.variables();
            assert_eq!(vars.len(), keys, "{arch}: keys");
            let trainable = vs.trainable_variables();
            assert_eq!(trainable.len(), params, "{arch}: parameters");
            let n: i64 = trainable.iter().map(Tensor::numel).sum::<usize>() as i64;
            assert_eq!(n, values, "{arch}: parameter values");
            // Buffers: BatchNorm's three, num_batches_tracked an int64 scalar.
            for (name, t) in &vars {
                if name.ends_with("num_batches_tracked") {
                    assert_eq!((t.kind(), t.size()), (Kind::Int64, vec![]), "{name}");
                } else {
                    assert_eq!(t.kind(), Kind::Float, "{name}");
                }
            }
            assert!(net.stages().contains(&net.gradcam_stage()));
        }
    }

    #[test]
    fn first_and_last_layers_have_torchvisions_names_and_shapes() {
        let (vs, _) = build(Arch::AlexNet);
        assert_eq!(shape(&vs, "features.0.weight"), [64, 1, 11, 11]);
        assert_eq!(shape(&vs, "features.10.bias"), [256]);
        assert_eq!(shape(&vs, "classifier.6.weight"), [2, 4096]);
        let (vs, _) = build(Arch::ResNet18);
        assert_eq!(shape(&vs, "conv1.weight"), [64, 1, 7, 7]);
        assert_eq!(shape(&vs, "layer2.0.downsample.0.weight"), [128, 64, 1, 1]);
        assert_eq!(shape(&vs, "layer4.1.bn2.running_var"), [512]);
        assert_eq!(shape(&vs, "fc.weight"), [2, 512]);
        let (vs, _) = build(Arch::ResNet50);
        assert_eq!(shape(&vs, "layer1.0.downsample.0.weight"), [256, 64, 1, 1]);
        assert_eq!(shape(&vs, "layer3.5.conv3.weight"), [1024, 256, 1, 1]);
        assert_eq!(shape(&vs, "fc.weight"), [2, 2048]);
        let (vs, _) = build(Arch::MobileNetV2);
        assert_eq!(shape(&vs, "features.0.0.weight"), [32, 1, 3, 3]);
        assert_eq!(shape(&vs, "features.1.conv.0.0.weight"), [32, 1, 3, 3]);
        assert_eq!(shape(&vs, "features.1.conv.1.weight"), [16, 32, 1, 1]);
        assert_eq!(shape(&vs, "features.2.conv.3.running_mean"), [24]);
        assert_eq!(shape(&vs, "features.18.0.weight"), [1280, 320, 1, 1]);
        assert_eq!(shape(&vs, "classifier.1.weight"), [2, 1280]);
    }

    #[test]
    fn stages_in_forward_order() {
        let stages = |arch| {
            let (_, net) = build(arch);
            (net.stages().to_vec(), net.gradcam_stage())
        };
        assert_eq!(
            stages(Arch::ResNet34),
            (vec!["layer1", "layer2", "layer3", "layer4"], "layer4")
        );
        assert_eq!(
            stages(Arch::AlexNet),
            (vec!["features.11", "features"], "features.11")
        );
        assert_eq!(stages(Arch::MobileNetV2), (vec!["features"], "features"));
    }

    /// std of a tensor's values, and its largest magnitude.
    fn stats(vs: &nn::VarStore, name: &str) -> (f64, f64) {
        let t = &vs.variables()[name];
        (
            t.std(true).double_value(&[]),
            t.abs().max().double_value(&[]),
        )
    }

    #[test]
    fn torchvisions_initialisation() {
        let close = |a: f64, b: f64| (a / b - 1.0).abs() < 0.05;
        let (vs, _) = build(Arch::ResNet18);
        // kaiming_normal_(fan_out, relu): std sqrt(2 / (cout k k)).
        let (std, _) = stats(&vs, "layer3.0.conv1.weight");
        assert!(close(std, (2.0f64 / (256.0 * 9.0)).sqrt()), "{std}");
        let vars = vs.variables();
        assert!(vars["bn1.weight"].equal(&Tensor::ones([64], (Kind::Float, Device::Cpu))));
        assert_eq!(
            vars["layer1.0.bn2.bias"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        // PyTorch's default Linear: U(+-1/sqrt(fan_in)), weight and bias.
        let (std, max) = stats(&vs, "fc.weight");
        let bound = 1.0 / 512f64.sqrt();
        assert!(
            max <= bound && close(std, bound / 3f64.sqrt()),
            "{std} {max}"
        );
        let (_, max) = stats(&vs, "fc.bias");
        assert!(max <= bound && max > 0.0);

        let (vs, _) = build(Arch::MobileNetV2);
        let (std, _) = stats(&vs, "classifier.1.weight");
        assert!(close(std, 0.01), "{std}");
        assert_eq!(stats(&vs, "classifier.1.bias").1, 0.0);
        // Depthwise: fan_out = cout k k / 1 (the weight's dim 0 times its kernel).
        let (std, _) = stats(&vs, "features.17.conv.1.0.weight");
        assert!(close(std, (2.0f64 / (960.0 * 9.0)).sqrt()), "{std}");

        let (vs, _) = build(Arch::AlexNet);
        let (std, max) = stats(&vs, "features.3.weight");
        let bound = 1.0 / (64.0f64 * 25.0).sqrt();
        assert!(
            max <= bound && close(std, bound / 3f64.sqrt()),
            "{std} {max}"
        );
        let (_, max) = stats(&vs, "features.3.bias");
        assert!(max <= bound && max > 0.5 * bound);
    }

    /// Training in the fast compute (bf16, channels-last) reaches every float32 master
    /// weight and counts the batch; the logits stay float32.
    #[test]
    fn bf16_channels_last_training_reaches_every_weight() {
        let x = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        // VGG16 is AlexNet's layers, more of them: left out for time.
        for arch in [
            Arch::AlexNet,
            Arch::ResNet18,
            Arch::ResNet50,
            Arch::MobileNetV2,
        ] {
            let (vs, mut net) = build(arch);
            net.set_compute(Compute::new(Kind::BFloat16, true));
            let out = net.forward_t(&x, true);
            assert_eq!(out.logits.kind(), Kind::Float);
            let loss = out
                .logits
                .cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 1]));
            loss.backward();
            for (name, v) in vs.variables() {
                if name.ends_with("num_batches_tracked") {
                    assert_eq!(v.int64_value(&[]), 1, "{arch}: {name}");
                } else if v.requires_grad() {
                    let g = v.grad();
                    assert!(g.defined(), "{arch}: {name} has no gradient");
                    assert_eq!(g.kind(), Kind::Float, "{arch}: {name}");
                    let finite = g.isfinite().all().int64_value(&[]) == 1;
                    assert!(finite, "{arch}: {name}'s gradient");
                }
            }
        }
    }
}
