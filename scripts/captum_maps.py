"""Explanation maps of the golden weights and input with captum, the reference for
flarecast's `explain` methods.

    python scripts/captum_maps.py GOLDEN_DIR OUT_DIR [--steps N] [--window W] [--stride S]

For each network (attn, noattn) and the golden input's first row (the real magnetogram),
writes OUT_DIR/{net}_ig.npy (IntegratedGradients, captum's default Gauss-Legendre rule,
zero baseline, N steps), {net}_guided_gradcam{5,6}.npy (GuidedGradCam at conv_block5 and
conv_block6, the last convolution; nearest interpolation), {net}_occlusion.npy (Occlusion, W x W window, stride S, zero baseline),
all for the flare logit (target 1), and OUT_DIR/deltas.json with IG's convergence deltas.
The networks are the reference's (scripts/reference_model.py).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from captum.attr import GuidedGradCam, IntegratedGradients, Occlusion

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import Logits, load_reference, read_safetensors  # noqa: E402



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("golden")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    deltas = {}
    for name in ("attn", "noattn"):
        net = load_reference(os.path.join(args.golden, f"{name}.pth"))
        # captum's ReLU hooks need out-of-place ReLUs; the values are the same.
        for m in net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        model = Logits(net).eval()
        x = read_safetensors(os.path.join(args.golden, f"{name}_io.safetensors"))["input"][0:1]
        ig, delta = IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=1, n_steps=args.steps,
            internal_batch_size=8, return_convergence_delta=True,
        )
        deltas[name] = float(delta.item())
        ggc = {
            block: GuidedGradCam(model, getattr(net, f"conv_block{block}")).attribute(x, target=1)
            for block in (5, 6)
        }
        occ = Occlusion(model).attribute(
            x, sliding_window_shapes=(1, args.window, args.window),
            strides=(1, args.stride, args.stride), baselines=0, target=1,
            perturbations_per_eval=8,
        )
        maps = (("ig", ig), ("guided_gradcam5", ggc[5]), ("guided_gradcam6", ggc[6]), ("occlusion", occ))
        for method, t in maps:
            np.save(os.path.join(args.out, f"{name}_{method}.npy"),
                    t.detach()[0, 0].numpy().astype(np.float32))
    with open(os.path.join(args.out, "deltas.json"), "w") as f:
        json.dump(deltas, f)


if __name__ == "__main__":
    main()
