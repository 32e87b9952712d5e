"""The paper's training loop in PyTorch, as its modeling/train.py runs it, over flarecast's
label tables and JPG tree: what `flarecast bench epoch` and `bench evaluate` time flarecast
against.

Training (the default): the fold's simplified table `Fold{K}_train.csv` (`label,goes_class`,
the second column the 0/1 target), every image opened with PIL and passed through the
paper's torchvision transforms:
    NF instances and validation   Resize(im_size), ToTensor()
    FL views                      Resize(im_size), then RandomHorizontalFlip(p=1),
                                  RandomVerticalFlip(p=1) or RandomRotation((-5, 5)),
                                  then ToTensor()
The balanced training set is a ConcatDataset of the FL views in the paper's order
(original, horizontal flip, vertical flip, rotation, horizontal flip, original), the NF
instances, and originals of FL instances until FL == NF. train.py hard-codes six views
(five for fold 2); here, as in flarecast, each FL instance gets min(6, NF // FL) views (at
least one) and the top-up cycles over the FL instances, so the epoch never exceeds NF and
holds the same number of items as flarecast's. A DataLoader shuffles it in batches of
128; SGD (no momentum) with lr 0.001 and weight decay 0.5 on the mean cross-entropy; the
rate is halved before epochs 3, 6, 9, ...; after each epoch a validation pass over
`Fold{K}_val.csv` (no_grad, loss and argmax), the best weights kept when validation TSS
and HSS2 both improve, the final weights saved (with --out). `--epochs N` runs N epochs
(train.py's loop runs N - 1). Weights start as the paper's "kaimingUniform" scheme.

As train.py runs it ("paper"): float32, NCHW, DataLoader(num_workers=4, pin_memory=True;
PyTorch pins nothing without an accelerator). train.py wraps the model in
nn.DataParallel over two GPUs; on the CPU that wrapper only calls the model, so it is left
out.

--tuned, what a careful user adds: the model and each batch in torch.channels_last, bf16
torch.autocast where the CPU computes bf16 natively (/proc/cpuinfo lists avx512_bf16 or
amx_bf16; --precision overrides), one DataLoader worker per core with
persistent_workers, no pinning, torch.inference_mode for validation.

--evaluate: only the inference loop over the validation split (the weights of --weights,
a .safetensors or .pth, else the initial ones): eval mode, softmax P(FL), optionally a
`timestamp,flare_prob,target` CSV (--predictions).

--dump-inputs N --dump-dir DIR: writes the first N rows of the training table through
each of the paper's pipelines as float32 .npy arrays [N, 1, S, S]: plain.npy, hflip.npy,
vflip.npy and rotation.npy (RandomRotation with its range pinned to --dump-angle), and
targets.npy; nothing is trained.

--json prints one object: images, seconds, images/s, the loop's own split of the time, the
process's peak resident size. The caller gives this process the allocator setting
flarecast gives itself (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=2147483647).
"""

import argparse
import contextlib
import csv
import json
import os
import random
import resource
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import AttnNet, read_safetensors, state_dict_of  # noqa: E402

# train.py silences every warning (among them DataLoader's about pin_memory on a CPU).
warnings.simplefilter("ignore", Warning)

ARCHS = {"attention": True, "attn": True, "standard": False, "standard_cnn": False}


def read_split(labels, fold, split):
    """(image path, 0/1 target) rows of simplified_data_labels/Fold{K}_{split}.csv."""
    path = os.path.join(labels, "simplified_data_labels", f"Fold{fold}_{split}.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["label", "goes_class"]:
        raise SystemExit(f"{path}: expected the header label,goes_class")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            out.append((row[0], int(row[1])))
        except (IndexError, ValueError):
            raise SystemExit(f"{path}:{n}: not a label,target row: {row!r}")
    return out


class Images(Dataset):
    """The paper's MyJP2Dataset / NFDataset / FLDataset: rows of one table (or one class
    of it), each image opened with PIL and passed through a transform."""

    def __init__(self, root, rows, transform):
        self.root, self.rows, self.transform = root, rows, transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        name, target = self.rows[index]
        image = Image.open(os.path.join(self.root, name))
        return self.transform(image), torch.tensor(target)


class TopUp(Images):
    """The paper's Balancer: `length` originals of the FL instances, in table order
    (cycling where more are needed than there are FL instances)."""

    def __init__(self, root, rows, transform, length):
        super().__init__(root, rows, transform)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return super().__getitem__(index % len(self.rows))


def pipelines(im_size, angle=None):
    """The paper's four transforms. `angle` pins the rotation (for --dump-inputs)."""
    degrees = (-5, 5) if angle is None else (angle, angle)
    return {
        "plain": T.Compose([T.Resize(im_size), T.ToTensor()]),
        "hflip": T.Compose([T.Resize(im_size), T.RandomHorizontalFlip(p=1.0), T.ToTensor()]),
        "vflip": T.Compose([T.Resize(im_size), T.RandomVerticalFlip(p=1.0), T.ToTensor()]),
        "rotation": T.Compose([T.Resize(im_size), T.RandomRotation(degrees=degrees), T.ToTensor()]),
    }


# The views of each FL instance, in train.py's ConcatDataset order.
FL_SEQUENCE = ("plain", "hflip", "vflip", "rotation", "hflip", "plain")


def balanced_set(root, rows, im_size):
    """The paper's ConcatDataset: FL views, NF instances, FL originals up to NF."""
    nf = [r for r in rows if r[1] == 0]
    fl = [r for r in rows if r[1] == 1]
    if not fl:
        raise SystemExit("the training table has no positive (flare) instance")
    views = pipelines(im_size)
    k = max(1, min(len(FL_SEQUENCE), len(nf) // len(fl)))
    parts = [Images(root, fl, views[v]) for v in FL_SEQUENCE[:k]]
    parts.append(Images(root, nf, views["plain"]))
    top_up = max(0, len(nf) - k * len(fl))
    if top_up:
        parts.append(TopUp(root, fl, views["plain"], top_up))
    return ConcatDataset(parts), {"nf": len(nf), "fl": len(fl), "views_per_fl": k, "top_up": top_up}


def init_kaiming_uniform(net):
    """The paper's "kaimingUniform": conv and linear weights kaiming_uniform_(fan_in,
    relu), biases 0; BatchNorm weights U(0, 1), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.0, 1.0)
            nn.init.constant_(m.bias, 0.0)


def seed_everything(seed):
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)


def cpu_has_bf16():
    """Whether /proc/cpuinfo lists a native bf16 instruction set."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def confusion_scores(pred, target):
    """TSS and HSS2 of argmax forecasts (0 where a denominator is 0)."""
    tp = int(((pred == 1) & (target == 1)).sum())
    fp = int(((pred == 1) & (target == 0)).sum())
    tn = int(((pred == 0) & (target == 0)).sum())
    fn = int(((pred == 0) & (target == 1)).sum())
    pos, neg = tp + fn, fp + tn
    tss = (tp / pos if pos else 0.0) - (fp / neg if neg else 0.0)
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    hss2 = 2 * (tp * tn - fn * fp) / den if den else 0.0
    return tss, hss2


class Run:
    """How the loop runs: the paper's way or tuned."""

    def __init__(self, a):
        self.tuned = a.tuned
        precision = a.precision
        if precision == "auto":
            precision = "bf16" if (a.tuned and cpu_has_bf16()) else "f32"
        self.precision = precision
        self.channels_last = a.tuned
        self.workers = a.workers if a.workers is not None else (cores() if a.tuned else 4)
        self.pin_memory = not a.tuned
        self.batch_size = a.batch_size

    def loader(self, dataset, shuffle):
        kw = dict(batch_size=self.batch_size, shuffle=shuffle, num_workers=self.workers,
                  pin_memory=self.pin_memory)
        if self.tuned and self.workers > 0:
            kw["persistent_workers"] = True
        return DataLoader(dataset, **kw)

    def input(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def no_grad(self):
        return torch.inference_mode() if self.tuned else torch.no_grad()

    def describe(self):
        return {
            "loop": "tuned" if self.tuned else "paper",
            "precision": self.precision,
            "channels_last": self.channels_last,
            "workers": self.workers,
            "persistent_workers": self.tuned and self.workers > 0,
            "pin_memory": self.pin_memory,
            "batch_size": self.batch_size,
        }


def make_net(a, run):
    net = AttnNet(attention=ARCHS[a.arch])
    init_kaiming_uniform(net)
    if a.weights:
        if a.weights.endswith(".safetensors"):
            sd = read_safetensors(a.weights)
        else:
            sd = state_dict_of(torch.load(a.weights, map_location="cpu", weights_only=True))
        net.load_state_dict(sd, strict=True)
    if run.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def validate(net, loader, run, criterion=None):
    """One pass over the validation loader in eval mode: summed loss, argmax forecasts,
    P(FL) and targets."""
    net.eval()
    loss, preds, probs, targets = 0.0, [], [], []
    with run.no_grad():
        for d, t in loader:
            with run.autocast():
                s = net(run.input(d))[0]
            s = s.float()
            if criterion is not None:
                loss += criterion(s, t).item()
            preds.append(s.argmax(1))
            probs.append(F.softmax(s, dim=1)[:, 1])
            targets.append(t)
    cat = lambda xs: torch.cat(xs) if xs else torch.empty(0)  # noqa: E731
    return loss, cat(preds), cat(probs), cat(targets)


def train(a, run):
    root = a.images
    train_rows = read_split(a.labels, a.fold, "train")
    val_rows = read_split(a.labels, a.fold, "val")
    train_set, counts = balanced_set(root, train_rows, a.im_size)
    val_set = Images(root, val_rows, pipelines(a.im_size)["plain"])
    train_loader = run.loader(train_set, shuffle=True)
    val_loader = run.loader(val_set, shuffle=False)
    net = make_net(a, run)
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    best = (0.0, 0.0)
    epochs = []
    for epoch in range(1, a.epochs + 1):
        if epoch % 3 == 0:
            for g in opt.param_groups:
                g["lr"] = g["lr"] / 2
        start = time.perf_counter()
        net.train()
        train_loss, preds, targets = 0.0, [], []
        for data, t in train_loader:
            with run.autocast():
                scores = net(run.input(data))[0]
                loss = criterion(scores.float(), t)
            preds.append(scores.argmax(1))
            targets.append(t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_loss += loss.item()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        val_loss, val_pred, _, val_t = validate(net, val_loader, run, criterion)
        val_seconds = time.perf_counter() - start
        train_tss, train_hss2 = confusion_scores(torch.cat(preds), torch.cat(targets))
        val_tss, val_hss2 = confusion_scores(val_pred, val_t)
        if val_tss > best[0] and val_hss2 > best[1]:
            best = (val_tss, val_hss2)
            if a.out:
                torch.save(net.state_dict(), os.path.join(a.out, f"best_fold{a.fold}.pth"))
        epochs.append({
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": train_loss / max(1, len(train_loader)),
            "train_tss": train_tss,
            "train_hss2": train_hss2,
            "val_loss": val_loss / max(1, len(val_loader)),
            "val_tss": val_tss,
            "val_hss2": val_hss2,
            "train_seconds": train_seconds,
            "val_seconds": val_seconds,
        })
        if not a.json:
            e = epochs[-1]
            print(f"epoch {epoch}/{a.epochs}: train loss {e['train_loss']:.4f} TSS {train_tss:.4f} "
                  f"HSS2 {train_hss2:.4f} | val loss {e['val_loss']:.4f} TSS {val_tss:.4f} "
                  f"HSS2 {val_hss2:.4f} | {train_seconds:.1f}s + {val_seconds:.1f}s", flush=True)
    if a.out:
        torch.save(net.state_dict(), os.path.join(a.out, f"final_fold{a.fold}.pth"))
    train_seconds = sum(e["train_seconds"] for e in epochs)
    val_seconds = sum(e["val_seconds"] for e in epochs)
    images = a.epochs * (len(train_set) + len(val_set))
    return {
        "train_items": len(train_set),
        "val_images": len(val_set),
        "balance": counts,
        "epochs": epochs,
        "images": images,
        "train_seconds": train_seconds,
        "val_seconds": val_seconds,
        "seconds": train_seconds + val_seconds,
        "train_images_per_s": a.epochs * len(train_set) / train_seconds if train_seconds else None,
        "images_per_s": images / (train_seconds + val_seconds),
    }


def evaluate(a, run):
    val_rows = read_split(a.labels, a.fold, "val")
    val_set = Images(a.images, val_rows, pipelines(a.im_size)["plain"])
    loader = run.loader(val_set, shuffle=False)
    net = make_net(a, run)
    start = time.perf_counter()
    _, _, probs, targets = validate(net, loader, run)
    seconds = time.perf_counter() - start
    if a.predictions:
        with open(a.predictions, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "flare_prob", "target"])
            for (name, _), p, t in zip(val_rows, probs.tolist(), targets.tolist()):
                w.writerow([os.path.join(a.images, name), repr(float(p)), int(t)])
    return {
        "val_images": len(val_set),
        "images": len(val_set),
        "seconds": seconds,
        "images_per_s": len(val_set) / seconds,
        "mean_flare_prob": float(probs.double().mean()) if len(probs) else None,
    }


def dump_inputs(a):
    import numpy as np

    rows = read_split(a.labels, a.fold, "train")[: a.dump_inputs]
    os.makedirs(a.dump_dir, exist_ok=True)
    for name, transform in pipelines(a.im_size, angle=a.dump_angle).items():
        ds = Images(a.images, rows, transform)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        np.save(os.path.join(a.dump_dir, f"{name}.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(a.dump_dir, "targets.npy"), np.array([t for _, t in rows], dtype=np.int64))
    return {"dumped": len(rows), "dir": a.dump_dir, "angle": a.dump_angle}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="the JPG tree the tables' paths are relative to")
    ap.add_argument("--labels", required=True, help="the folder holding simplified_data_labels/")
    ap.add_argument("--fold", type=int, default=1, choices=[1, 2, 3, 4])
    ap.add_argument("--arch", default="attention", choices=sorted(ARCHS))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--im-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--weight-decay", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--tuned", action="store_true")
    ap.add_argument("--precision", default="auto", choices=["auto", "f32", "bf16"],
                    help="auto: bf16 with --tuned where the CPU has native bf16, else f32")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers (default: 4 as train.py, one per core with --tuned)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    ap.add_argument("--out", default=None, help="where the best and final weights are saved")
    ap.add_argument("--evaluate", action="store_true", help="only the validation inference loop")
    ap.add_argument("--weights", default=None, help="start from these weights (.safetensors, .pth)")
    ap.add_argument("--predictions", default=None, help="with --evaluate: write P(FL) here (CSV)")
    ap.add_argument("--dump-inputs", type=int, default=0, metavar="N")
    ap.add_argument("--dump-dir", default=None)
    ap.add_argument("--dump-angle", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.epochs < 1 or a.batch_size < 1 or a.im_size < 1:
        raise SystemExit("--epochs, --batch-size and --im-size must be at least 1")
    if a.dump_inputs:
        if not a.dump_dir:
            raise SystemExit("--dump-inputs needs --dump-dir")
        print(json.dumps(dump_inputs(a)))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    seed_everything(a.seed)
    run = Run(a)
    result = evaluate(a, run) if a.evaluate else train(a, run)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_has_bf16(),
        "arch": a.arch,
        "im_size": a.im_size,
        "mode": "evaluate" if a.evaluate else "train",
        "malloc_mmap_max": os.environ.get("MALLOC_MMAP_MAX_"),
        "malloc_trim_threshold": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_bytes": usage.ru_maxrss * 1024,
    }
    info.update(run.describe())
    info.update(result)
    if a.json:
        print(json.dumps(info))
    else:
        print(f"{info['loop']} loop, {info['precision']}: {info['images']} images in "
              f"{info['seconds']:.1f} s, {info['images_per_s']:.2f} images/s, "
              f"peak RSS {info['peak_rss_bytes'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
