#!/usr/bin/env python3
"""Reference values from torchvision 0.28 and captum 0.9 for flarecast's torchvision
networks (tests/it/networks.rs): explanation maps, checkpoint layouts and ImageNet
checkpoints for `train --pretrained`.

    captum_vision.py captum INPUT OUT_DIR [--steps N] [--window W] [--stride S] [--seed S]
    captum_vision.py layouts INPUT OUT_DIR [--seed S]
    captum_vision.py pretrained INPUT OUT_DIR [--seed S]

INPUT is a float32 .npy image [1, 1, H, W] (or [H, W]) in [0, 1]. Every network is
torchvision's as flarecast runs it (a one-channel first convolution with torchvision's
kernel, stride and padding, a two-class last Linear; `pretrained` keeps ImageNet's three
channels and 1000 classes), with weights drawn from --seed: torchvision's initialisation,
then every BatchNorm's affine parameters and every bias re-drawn and the running
statistics measured on random inputs (so eval-mode activations keep a sensible scale and
no statistic is trivial). Every nn.ReLU is made out-of-place, as captum's hooks need.

captum: ResNet-18, MobileNetV2 and AlexNet in eval mode, target 1 (the flare logit).
Writes
  {net}.pth                          the state dict (plain), for flarecast's load_model
  {net}_guided_backprop.npy          GuidedBackprop                          [H, W]
  {net}_guided_gradcam_{stage}.npy   GuidedGradCam at the stage (nearest)    [H, W]
  {net}_layer_gradcam_{stage}.npy    LayerGradCam(relu_attributions=True)    [h, w]
for ResNet-18 at layer4 and layer3, MobileNetV2 at features and AlexNet at features.11
(its last ReLU) and features (after the last max pool), and for ResNet-18
  resnet18_ig.npy          IntegratedGradients (zero baseline, gausslegendre, N steps)
  resnet18_occlusion.npy   Occlusion (W x W window, stride S, zero baseline)
and captum.json: {"resnet18": {"ig_delta": ..., "logits": [...]}, "mobilenet_v2": {...},
"alexnet": {...}}.

layouts: ResNet-18 and MobileNetV2, each saved three ways as torch.save writes them:
  {net}.pth         the state dict
  {net}_msd.pth     {"model_state_dict": state dict, "epoch": 3}
  {net}_module.pth  the state dict of nn.DataParallel (keys prefixed `module.`)
and layouts.json: {net: {"logits": eval-mode logits of INPUT, "prob": softmax [1]}}.

pretrained: ResNet-18 as torchvision's ImageNet checkpoints are laid out (3-channel
conv1, 1000-class fc):
  imagenet.pth          its state dict
  imagenet_legacy.pth   the same without the BatchNorms' num_batches_tracked, as the
                        checkpoints torchvision publishes for ResNet are
  conv1_summed.npy      conv1.weight summed over the colour channels [64, 1, 7, 7]
  layer4_plain.npy      layer4's eval-mode output on INPUT copied to three channels
  layer4_normalised.npy layer4's eval-mode output on INPUT copied to three channels and
                        normalised by ImageNet's mean and std per channel, conv1 padding
                        the *unnormalised* image with zeros (the image is padded by 3
                        before normalising, conv1 then pads nothing): what a
                        one-channel network with the normalisation folded into conv1
                        and bn1 computes, border included
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def first_conv(m, name):
    """(parent module, attribute or index) of the network's first convolution."""
    if name in ("alexnet", "vgg16"):
        return m.features, 0
    if name.startswith("resnet"):
        return m, "conv1"
    if name == "mobilenet_v2":
        return m.features[0], 0
    raise SystemExit(f"unknown network {name!r}")


def build(name, channels=1, classes=2):
    """torchvision's `name` with `classes` outputs and a `channels`-channel first conv."""
    m = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    if channels != 3:
        parent, at = first_conv(m, name)
        old = parent[at] if isinstance(at, int) else getattr(parent, at)
        new = nn.Conv2d(
            channels,
            old.out_channels,
            kernel_size=old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=old.groups,
            bias=old.bias is not None,
        )
        if isinstance(at, int):
            parent[at] = new
        else:
            setattr(parent, at, new)
    for mod in m.modules():
        if isinstance(mod, (nn.ReLU, nn.ReLU6)):
            mod.inplace = False
    return m


@torch.no_grad()
def draw(m, channels, side=160):
    """Re-draws BatchNorm affine parameters and biases, then measures every BatchNorm's
    running statistics on random inputs (a cumulative average over two batches)."""
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.normal_(0.0, 0.1)
        elif isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
            mod.bias.uniform_(-0.05, 0.05)
    if bns:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        m.train()
        for _ in range(2):
            m(torch.rand(4, channels, side, side))
        for bn in bns:
            bn.momentum = 0.1
            bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, ())))
    m.eval()
    return m


def read_input(path):
    x = torch.from_numpy(np.load(path).astype(np.float32))
    return x.reshape(1, 1, x.shape[-2], x.shape[-1])


def save_npy(path, t):
    np.save(path, t.detach().cpu().numpy().astype(np.float32))


def captum_maps(args):
    from captum.attr import (
        GuidedBackprop,
        GuidedGradCam,
        IntegratedGradients,
        LayerGradCam,
        Occlusion,
    )

    x = read_input(args.input)
    summary = {}
    nets = (
        ("resnet18", ("layer4", "layer3")),
        ("mobilenet_v2", ("features",)),
        ("alexnet", ("features.11", "features")),
    )
    for name, stages in nets:
        torch.manual_seed(args.seed)
        m = draw(build(name), 1)
        torch.save(m.state_dict(), os.path.join(args.out, f"{name}.pth"))
        out = os.path.join(args.out, name)
        with torch.no_grad():
            info = {"logits": m(x)[0].tolist()}
        gbp = GuidedBackprop(m).attribute(x, target=1)
        save_npy(f"{out}_guided_backprop.npy", gbp[0, 0])
        for stage in stages:
            layer = m.get_submodule(stage)
            ggc = GuidedGradCam(m, layer).attribute(x, target=1)
            save_npy(f"{out}_guided_gradcam_{stage}.npy", ggc[0, 0])
            lgc = LayerGradCam(m, layer).attribute(x, target=1, relu_attributions=True)
            save_npy(f"{out}_layer_gradcam_{stage}.npy", lgc[0, 0])
        if name == "resnet18":
            ig, delta = IntegratedGradients(m).attribute(
                x,
                baselines=torch.zeros_like(x),
                target=1,
                n_steps=args.steps,
                method="gausslegendre",
                internal_batch_size=8,
                return_convergence_delta=True,
            )
            info["ig_delta"] = float(delta.item())
            save_npy(f"{out}_ig.npy", ig[0, 0])
            occ = Occlusion(m).attribute(
                x,
                sliding_window_shapes=(1, args.window, args.window),
                strides=(1, args.stride, args.stride),
                baselines=0,
                target=1,
                perturbations_per_eval=8,
            )
            save_npy(f"{out}_occlusion.npy", occ[0, 0])
        summary[name] = info
    with open(os.path.join(args.out, "captum.json"), "w") as f:
        json.dump(summary, f)


def layouts(args):
    x = read_input(args.input)
    summary = {}
    for name in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(args.seed)
        m = draw(build(name), 1)
        sd = m.state_dict()
        out = os.path.join(args.out, name)
        torch.save(sd, f"{out}.pth")
        torch.save({"model_state_dict": sd, "epoch": 3}, f"{out}_msd.pth")
        wrapped = nn.DataParallel(m).state_dict()
        assert all(k.startswith("module.") for k in wrapped)
        torch.save(wrapped, f"{out}_module.pth")
        with torch.no_grad():
            logits = m(x)[0]
        summary[name] = {
            "logits": logits.tolist(),
            "prob": float(torch.softmax(logits.double(), 0)[1]),
        }
    with open(os.path.join(args.out, "layouts.json"), "w") as f:
        json.dump(summary, f)


def pretrained(args):
    x = read_input(args.input)
    torch.manual_seed(args.seed)
    m = draw(build("resnet18", channels=3, classes=1000), 3)
    sd = m.state_dict()
    torch.save(sd, os.path.join(args.out, "imagenet.pth"))
    legacy = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(legacy) < len(sd)
    torch.save(legacy, os.path.join(args.out, "imagenet_legacy.pth"))
    save_npy(os.path.join(args.out, "conv1_summed.npy"), sd["conv1.weight"].double().sum(1, keepdim=True))

    kept = {}
    m.layer4.register_forward_hook(lambda mod, inp, out: kept.__setitem__("layer4", out))
    rgb = x.expand(1, 3, -1, -1)
    with torch.no_grad():
        m(rgb)
        save_npy(os.path.join(args.out, "layer4_plain.npy"), kept["layer4"])
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pad = m.conv1.padding[0]
        padded = F.pad(rgb, (pad, pad, pad, pad))
        m.conv1.padding = (0, 0)
        m((padded - mean) / std)
        save_npy(os.path.join(args.out, "layer4_normalised.npy"), kept["layer4"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("captum", "layouts", "pretrained"))
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--window", type=int, default=112)
    ap.add_argument("--stride", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    {"captum": captum_maps, "layouts": layouts, "pretrained": pretrained}[args.what](args)


if __name__ == "__main__":
    main()
