"""Throughput of the plain PyTorch eager networks (scripts/reference_model.py): the
baseline `flarecast bench model --baseline torch` times side by side with flarecast.

One measurement:
    python scripts/torch_baseline.py --arch attention --mode train --layout channels_last
prints {"images_per_s": ...}. With --serve it keeps its models warm and answers one JSON
request per stdin line ({"arch", "mode", "layout", "batch_size", "im_size", "iters",
"warmup"}) with one JSON line, so the caller can alternate between the two programs
without paying PyTorch's start-up each round.

Training step as the reference trainer: SGD (lr 0.001, weight decay 0.5, no momentum),
mean cross-entropy, zero_grad, backward, step. Inference: eval mode, no_grad, softmax.
Layouts: "default" (contiguous NCHW) or "channels_last" (model and input converted with
torch.channels_last, nothing else changed). float32 only.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import AttnNet  # noqa: E402

ARCHS = {"attention": True, "attn": True, "standard_cnn": False, "standard": False}


class Bench:
    def __init__(self):
        self.nets = {}
        self.warm = set()

    def net(self, arch, layout):
        key = (arch, layout)
        if key not in self.nets:
            torch.manual_seed(0)
            net = AttnNet(attention=ARCHS[arch])
            if layout == "channels_last":
                net = net.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(net.parameters(), lr=0.001, weight_decay=0.5)
            self.nets[key] = (net, opt)
        return self.nets[key]

    def measure(self, arch, mode, layout, batch_size=16, im_size=256, iters=3, warmup=1):
        if layout not in ("default", "channels_last"):
            raise ValueError(f"unknown layout {layout!r}")
        net, opt = self.net(arch, layout)
        x = torch.rand(batch_size, 1, im_size, im_size)
        y = torch.randint(0, 2, (batch_size,))
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)

        def step():
            if mode == "train":
                net.train()
                logits, _ = net(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            elif mode == "inference":
                net.eval()
                with torch.no_grad():
                    logits, _ = net(x)
                    F.softmax(logits, dim=1)[:, 1]
            else:
                raise ValueError(f"unknown mode {mode!r}")

        key = (arch, mode, layout, batch_size, im_size)
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
    ap.add_argument("--arch", default="attention", choices=sorted(ARCHS))
    ap.add_argument("--mode", default="train", choices=["train", "inference"])
    ap.add_argument("--layout", default="default", choices=["default", "channels_last"])
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
    }
    if not a.serve:
        info.update(bench.measure(a.arch, a.mode, a.layout, a.batch_size, a.im_size, a.iters, a.warmup))
        print(json.dumps(info))
        return
    print(json.dumps(dict(info, ready=True)), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(json.dumps(bench.measure(**json.loads(line))), flush=True)
        except Exception as e:  # the caller shows the message and stops
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    main()
