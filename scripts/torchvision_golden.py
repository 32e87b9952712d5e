#!/usr/bin/env python3
"""Golden outputs of a torchvision 0.28 network with flarecast's two changes (a
one-channel first convolution with torchvision's kernel, stride, padding and bias; a
two-class last Linear), for the parity tests of src/model/vision/ (tests/it/vision.rs).

    torchvision_golden.py NET SIDE OUT_DIR [--batch N] [--seed S]

NET is alexnet, vgg16, resnet18, resnet34, resnet50 or mobilenet_v2. Writes
OUT_DIR/golden.safetensors (written here byte for byte, so no package beyond torch is
needed) holding:
  before.<key>   the state dict the network starts from: torchvision's initialisation,
                 then every BatchNorm's weight, bias, running statistics and batch count
                 and every bias re-drawn, so none of them is trivial
  input          [N,1,SIDE,SIDE] uniform in [0,1]
  targets        [N] int64 class indices
  eval_logits    eval-mode logits
  dropout.K      the K-th nn.Dropout call's mask in train mode (forward order), the
                 elementwise factor applied: bernoulli(1-p) / (1-p)
  train_logits   train-mode logits with those masks
  loss           mean cross-entropy of train_logits against targets
  after.<key>    the state dict after one SGD step (lr 1e-3, weight decay 0.5, no
                 momentum) on that loss, BatchNorm buffers included
and OUT_DIR/keys.json, the state dict's keys with their shapes and dtypes in order.
"""

import argparse
import json
import os
import struct

import torch
import torch.nn as nn
import torchvision


def build(name):
    """torchvision's network with two classes and a one-channel first convolution."""
    m = getattr(torchvision.models, name)(weights=None, num_classes=2)
    if name in ("alexnet", "vgg16"):
        parent, attr = m.features, "0"
    elif name.startswith("resnet"):
        parent, attr = m, "conv1"
    elif name == "mobilenet_v2":
        parent, attr = m.features[0], "0"
    else:
        raise SystemExit(f"unknown network {name!r}")
    old = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
    new = nn.Conv2d(
        1,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
    )
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)
    return m


@torch.no_grad()
def redraw(m):
    """Non-trivial BatchNorm statistics and affine parameters, and non-zero biases."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.normal_(0.0, 0.1)
            mod.running_mean.normal_(0.0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.num_batches_tracked.fill_(int(torch.randint(0, 1000, ())))
        elif isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
            mod.bias.uniform_(-0.05, 0.05)


DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.float64: "F64"}


def write_safetensors(path, tensors):
    """The safetensors format: an 8-byte little-endian header length, the JSON header,
    then each tensor's little-endian bytes."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        blobs.append(t)
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for t in blobs:
            f.write(t.numpy().tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("side", type=int)
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    m = build(args.net)
    redraw(m)
    before = [(k, v.clone()) for k, v in m.state_dict().items()]
    x = torch.rand(args.batch, 1, args.side, args.side)
    targets = torch.arange(args.batch) % 2

    m.eval()
    with torch.no_grad():
        eval_logits = m(x)

    masks = []

    def replay(mod, inputs, output):
        (xs,) = inputs
        keep = 1.0 - mod.p
        mask = torch.bernoulli(torch.full_like(xs, keep)) / keep
        masks.append(mask)
        return xs * mask

    hooks = [mod.register_forward_hook(replay) for mod in m.modules() if isinstance(mod, nn.Dropout)]
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.0, weight_decay=0.5)
    opt.zero_grad()
    train_logits = m(x)
    loss = nn.functional.cross_entropy(train_logits, targets)
    loss.backward()
    opt.step()
    for h in hooks:
        h.remove()
    after = [(k, v.clone()) for k, v in m.state_dict().items()]

    tensors = [("before." + k, v) for k, v in before]
    tensors += [
        ("input", x),
        ("targets", targets),
        ("eval_logits", eval_logits),
        ("train_logits", train_logits),
        ("loss", loss),
    ]
    tensors += [(f"dropout.{i}", mk) for i, mk in enumerate(masks)]
    tensors += [("after." + k, v) for k, v in after]
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "golden.safetensors"), tensors)
    keys = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in before]
    with open(os.path.join(args.out, "keys.json"), "w") as f:
        json.dump(keys, f)


if __name__ == "__main__":
    main()
