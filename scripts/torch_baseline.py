"""Throughput of flarecast's networks in PyTorch as a careful PyTorch user runs them: the
paper's two as its code writes them (scripts/reference_model.py), the others as
torchvision 0.28 defines them with one input channel and two classes
(scripts/torchvision_golden.py's `build`). The anchor `flarecast bench model --baseline
torch` times side by side with flarecast.

Variants, each in float32 or bf16 (torch.autocast on the CPU, as a PyTorch user asks for
reduced precision):
    eager            contiguous NCHW, PyTorch's default
    channels_last    model and input in torch.channels_last
    compiled         channels_last and torch.compile (inductor, default mode)
The caller gives this process the allocator setting it gives itself (MALLOC_MMAP_MAX_=0,
MALLOC_TRIM_THRESHOLD_=2147483647), so neither pays glibc's page faults on freed
activations.

One measurement:
    python scripts/torch_baseline.py --arch attention --mode train --variant compiled
prints {"images_per_s": ...}. With --serve it keeps its models warm and answers one JSON
request per stdin line ({"arch", "mode", "variant", "precision", "batch_size", "im_size",
"iters", "warmup"}) with one JSON line, so the caller can alternate between the two
programs without paying PyTorch's start-up (or torch.compile's compilation) each round.

Training step as the reference trainer: SGD (lr 0.001, weight decay 0.5, no momentum),
mean cross-entropy, zero_grad, backward, step. Inference: eval mode, inference_mode,
softmax.
"""

import argparse
import contextlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import AttnNet  # noqa: E402

ARCHS = {"attention": True, "attn": True, "standard_cnn": False, "standard": False}
TORCHVISION = ("alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "mobilenet_v2")


def make_net(arch):
    if arch in ARCHS:
        return AttnNet(attention=ARCHS[arch])
    from torchvision_golden import build  # noqa: E402 (torchvision only where asked for)

    return build(arch)


def logits_of(out):
    """The paper's networks return (logits, maps); torchvision's the logits."""
    return out[0] if isinstance(out, tuple) else out
VARIANTS = ("eager", "channels_last", "compiled")
PRECISIONS = ("f32", "bf16")


class Bench:
    def __init__(self):
        self.nets = {}
        self.warm = set()

    def net(self, arch, variant, mode):
        # Train and inference get their own compiled graphs (and their own weights, so a
        # training step never changes what inference runs).
        key = (arch, variant, mode)
        if key not in self.nets:
            torch.manual_seed(0)
            net = make_net(arch)
            if variant != "eager":
                net = net.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(net.parameters(), lr=0.001, weight_decay=0.5)
            run = torch.compile(net) if variant == "compiled" else net
            self.nets[key] = (net, run, opt)
        return self.nets[key]

    def measure(self, arch, mode, variant="eager", precision="f32", batch_size=16,
                im_size=256, iters=3, warmup=1):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: expected one of {VARIANTS}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
        net, run, opt = self.net(arch, variant, mode)
        x = torch.rand(batch_size, 1, im_size, im_size)
        y = torch.randint(0, 2, (batch_size,))
        if variant != "eager":
            x = x.contiguous(memory_format=torch.channels_last)

        def autocast():
            if precision == "bf16":
                return torch.autocast("cpu", dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def step():
            if mode == "train":
                net.train()
                with autocast():
                    logits = logits_of(run(x))
                    loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            elif mode == "inference":
                net.eval()
                with torch.inference_mode(), autocast():
                    logits = logits_of(run(x))
                    F.softmax(logits.float(), dim=1)[:, 1]
            else:
                raise ValueError(f"unknown mode {mode!r}")

        key = (arch, mode, variant, precision, batch_size, im_size)
        for _ in range(warmup if key not in self.warm else 0):
            step()
        self.warm.add(key)
        start = time.perf_counter()
        for _ in range(iters):
            step()
        secs = time.perf_counter() - start
        return {"images_per_s": iters * batch_size / secs, "seconds": secs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--arch", default="attention", choices=sorted(ARCHS) + list(TORCHVISION))
    ap.add_argument("--mode", default="train", choices=["train", "inference"])
    ap.add_argument("--variant", default="channels_last", choices=VARIANTS)
    ap.add_argument("--precision", default="f32", choices=PRECISIONS)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--im-size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    bench = Bench()
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "malloc_mmap_max": os.environ.get("MALLOC_MMAP_MAX_"),
        "malloc_trim_threshold": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }
    if not a.serve:
        info.update(bench.measure(a.arch, a.mode, a.variant, a.precision, a.batch_size,
                                  a.im_size, a.iters, a.warmup))
        print(json.dumps(info))
        return
    print(json.dumps(dict(info, ready=True)), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(json.dumps(bench.measure(**json.loads(line))), flush=True)
        except Exception as e:  # the caller shows the message and stops
            msg = str(e).strip().splitlines()
            print(json.dumps({"error": f"{type(e).__name__}: {msg[0] if msg else ''}"}),
                  flush=True)


if __name__ == "__main__":
    main()
