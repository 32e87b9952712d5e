"""The paper's two networks in plain PyTorch eager, layer for layer as the reference code
writes them (attention-based CNN with three linear-attention estimators, and the standard
CNN), with the reference's state_dict keys, so its checkpoints load unchanged.

    from reference_model import AttnNet, load_reference
    net = load_reference("attn.pth")            # architecture detected from the keys
    logits, (c1, c2, c3) = net(x)               # x: [N, 1, H, W] in [0, 1]

Nothing here is optimised: it is the baseline flarecast is compared against and checked
against. `python scripts/reference_model.py --check GOLDEN_DIR` compares both networks with
the golden outputs (eval mode) and prints the largest differences.
"""

import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_block(cin, cout, kernel=3, stride=1, padding=1):
    """Conv2d + BatchNorm2d + ReLU: keys `.0.*` (conv) and `.1.*` (BatchNorm)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, padding=padding, bias=True),
        nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1, affine=True),
        nn.ReLU(inplace=True),
    )


class ProjectorBlock(nn.Module):
    """1x1 convolution without bias, mapping l1's channels to g's (`projector1.op`)."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.op = nn.Conv2d(in_features, out_features, kernel_size=1, padding=0, bias=False)

    def forward(self, x):
        return self.op(x)


class LinearAttentionBlock(nn.Module):
    """c = op(l + g); a = softmax of c over all positions; g_out = sum(a * l)."""

    def __init__(self, in_features):
        super().__init__()
        self.op = nn.Conv2d(in_features, 1, kernel_size=1, padding=0, bias=False)

    def forward(self, l, g):
        n, c, w, h = l.size()
        comp = self.op(l + g)  # N x 1 x W x H
        a = F.softmax(comp.view(n, 1, -1), dim=2).view(n, 1, w, h)
        out = torch.mul(a.expand_as(l), l).view(n, c, -1).sum(dim=2)  # N x C
        return comp.view(n, 1, w, h), out


class AttnNet(nn.Module):
    """The attention-based CNN (`attention=True`) or the standard CNN (`False`)."""

    def __init__(self, attention=True):
        super().__init__()
        self.attention = attention
        self.conv_block1 = conv_block(1, 64)
        self.conv_block2 = conv_block(64, 128)
        self.conv_block3 = conv_block(128, 256)
        self.conv_block4 = conv_block(256, 512)
        self.conv_block5 = conv_block(512, 512)
        self.conv_block6 = conv_block(512, 512, kernel=3, stride=3, padding=0)
        self.dense = nn.Conv2d(512, 512, kernel_size=2, stride=2, padding=0, bias=True)
        if attention:
            self.projector1 = ProjectorBlock(256, 512)
            self.attn1 = LinearAttentionBlock(512)
            self.attn2 = LinearAttentionBlock(512)
            self.attn3 = LinearAttentionBlock(512)
            self.classify = nn.Linear(3 * 512, 2, bias=True)
        else:
            self.classify = nn.Linear(512, 2, bias=True)

    def forward(self, x):
        """Returns (logits [N, 2], (c1, c2, c3) pre-softmax maps, or None)."""
        x = F.max_pool2d(self.conv_block1(x), kernel_size=2, stride=2)
        x = F.max_pool2d(self.conv_block2(x), kernel_size=2, stride=2)
        l1 = self.conv_block3(x)
        l2 = self.conv_block4(F.max_pool2d(l1, kernel_size=2, stride=2))
        l3 = self.conv_block5(F.max_pool2d(l2, kernel_size=2, stride=2))
        x = self.conv_block6(F.max_pool2d(l3, kernel_size=2, stride=2))
        g = self.dense(x)  # N x 512 x 1 x 1 (inputs 192..383)
        if not self.attention:
            return self.classify(g.view(g.size(0), -1)), None
        c1, g1 = self.attn1(self.projector1(l1), g)
        c2, g2 = self.attn2(l2, g)
        c3, g3 = self.attn3(l3, g)
        return self.classify(torch.cat((g1, g2, g3), dim=1)), (c1, c2, c3)


class Logits(nn.Module):
    """A paper network with its logits as the only output, as captum expects."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]


def state_dict_of(obj):
    """A plain state_dict from a checkpoint: plain, `{'model_state_dict': ...}`, and
    `module.`-prefixed keys (nn.DataParallel) all accepted."""
    sd = obj.get("model_state_dict", obj) if isinstance(obj, dict) else obj
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def load_reference(path, map_location="cpu"):
    """The network of a reference checkpoint, in eval mode, with its weights loaded
    (strictly: a missing or unexpected key is an error)."""
    sd = state_dict_of(torch.load(path, map_location=map_location, weights_only=True))
    net = AttnNet(attention="attn1.op.weight" in sd)
    net.load_state_dict(sd, strict=True)
    return net.eval()


def read_safetensors(path):
    """name -> tensor from a .safetensors file (float32 and int64 only: what the golden
    files hold), without the safetensors package."""
    kinds = {"F32": torch.float32, "I64": torch.int64}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        buf = bytearray(data[lo:hi])
        t = torch.frombuffer(buf, dtype=kinds[info["dtype"]]) if hi > lo else torch.empty(0)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def check_golden(golden_dir):
    """Largest |difference| / max|golden| of every eval output against the golden files,
    and the largest absolute error of one training step, as one JSON object
    (name -> {output: error})."""
    report = {}
    for name in ("attn", "noattn"):
        net = load_reference(f"{golden_dir}/{name}.pth")
        io = read_safetensors(f"{golden_dir}/{name}_io.safetensors")
        with torch.no_grad():
            logits, maps = net(io["input"])
        got = {"logits": logits, "probs": F.softmax(logits, dim=1)}
        if maps is not None:
            got.update(c1=maps[0], c2=maps[1], c3=maps[2])
        report[name] = {k: rel_err(v, io[k]) for k, v in got.items()}
        report[name + "_step"] = check_step(f"{golden_dir}/{name}.pth", f"{golden_dir}/{name}_step.safetensors")
    return report


def rel_err(got, want):
    return float((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-12))


def check_step(weights, step_file):
    """One reference training step (train mode, SGD lr 0.001, weight decay 0.5, mean
    cross-entropy) against the golden loss and updated tensors: largest absolute error."""
    net = load_reference(weights).train()
    io = read_safetensors(step_file)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, weight_decay=0.5)
    logits, _ = net(io["input"])
    loss = F.cross_entropy(logits, io["target"])
    opt.zero_grad()
    loss.backward()
    opt.step()
    state = net.state_dict()
    errs = {"loss": abs(loss.item() - io["loss"].item())}
    for k, want in io.items():
        if k.startswith("after."):
            errs[k] = float((state[k[len("after."):]].double() - want.double()).abs().max())
    return errs


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--check":
        sys.exit("usage: reference_model.py --check GOLDEN_DIR")
    print(json.dumps(check_golden(sys.argv[2])))
