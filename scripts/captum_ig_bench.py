"""Integrated Gradients over many images with captum, as a careful captum user runs them:
the anchor `flarecast bench explain` times side by side with flarecast.

    python scripts/captum_ig_bench.py --serve --threads T

reads one JSON request per stdin line and answers each with one JSON line (an error as
{"error": ...}), so the caller can alternate rounds with flarecast without paying
Python's and torch's start-up each round:

    {"cmd": "load", "arch": A, "weights": PTH, "inputs": NPY, "steps": S, "target": T,
     "device": D}
        the network A (the paper's two as scripts/reference_model.py writes them, the
        others torchvision's as scripts/torchvision_golden.py builds them) with the state
        dict PTH loaded strictly, in eval mode, on device D ("cpu", "cuda:N"); NPY the
        float32 images [N, 1, H, W] (each call's images moved to D within the timing)
    {"cmd": "run", "k": K, "images": M or null, "save": DIR or null}
        IntegratedGradients(model).attribute over the first M images (all N by default),
        K images per call with internal_batch_size=K (one path point of each image per
        pass, every pass full), zero baselines, Gauss-Legendre (captum's default), return_convergence_delta=True;
        answers {"seconds", "images_per_s"}; with "save", writes DIR/maps.npy [N, 1, H, W]
        and DIR/deltas.npy [N] (float64)

The caller gives this process the allocator setting it gives itself (MALLOC_MMAP_MAX_=0,
MALLOC_TRIM_THRESHOLD_=2147483647) and the threads it runs on.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PAPER = {"attention": True, "standard_cnn": False}



def load_model(arch, weights):
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    if arch in PAPER:
        from reference_model import AttnNet, Logits  # noqa: E402

        net = AttnNet(attention=PAPER[arch])
        net.load_state_dict(sd, strict=True)
        return Logits(net.eval()).eval()
    from torchvision_golden import build  # noqa: E402 (torchvision only where asked for)

    net = build(arch)
    net.load_state_dict(sd, strict=True)
    return net.eval()


class Bench:
    def __init__(self):
        self.model = None

    def load(self, arch, weights, inputs, steps=50, target=1, device="cpu"):
        from captum.attr import IntegratedGradients

        self.device = torch.device(device)
        self.model = load_model(arch, weights).to(self.device)
        self.ig = IntegratedGradients(self.model)
        self.x = torch.from_numpy(np.load(inputs).astype(np.float32, copy=False))
        self.steps = steps
        self.target = target
        return {"images": int(self.x.shape[0]), "side": int(self.x.shape[-1])}

    def run(self, k, images=None, save=None):
        if self.model is None:
            raise ValueError("no model loaded")
        x = self.x if images is None else self.x[:images]
        maps, deltas = [], []
        start = time.perf_counter()
        for s in range(0, x.shape[0], k):
            xs = x[s : s + k].to(self.device)
            attr, delta = self.ig.attribute(
                xs,
                baselines=torch.zeros_like(xs),
                target=self.target,
                n_steps=self.steps,
                method="gausslegendre",
                internal_batch_size=k,
                return_convergence_delta=True,
            )
            maps.append(attr.detach().cpu())
            deltas.append(delta.detach().cpu())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        if save:
            os.makedirs(save, exist_ok=True)
            np.save(os.path.join(save, "maps.npy"), torch.cat(maps).numpy().astype(np.float32))
            np.save(os.path.join(save, "deltas.npy"), torch.cat(deltas).double().numpy())
        return {"seconds": seconds, "images_per_s": x.shape[0] / seconds}


def info(threads):
    import captum

    return {
        "torch": torch.__version__,
        "captum": captum.__version__,
        "threads": torch.get_num_threads(),
        "requested_threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "allocator": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")},
    }


def serve(threads):
    bench = Bench()
    print(json.dumps(info(threads)), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.pop("cmd")
            if cmd == "load":
                reply = bench.load(**req)
            elif cmd == "run":
                reply = bench.run(**req)
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # noqa: BLE001 (the caller reports it)
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    serve(args.threads)


if __name__ == "__main__":
    main()
