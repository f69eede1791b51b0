#!/usr/bin/python3
"""A hospital's PyTorch trainer for fedguard's exec contract (docs/trainer.md).

Each round fedguard's agent writes the verified global model
(model.safetensors) and a round plan (plan.json) into a private directory
and runs this script with FEDGUARD_PLAN, FEDGUARD_MODEL, FEDGUARD_OUTPUT and
FEDGUARD_METRICS set. The script

  1. reads the hospital's MNIST shard (images.npy, uint8 N×784, and
     labels.npy, uint8 N; `fedguard demo --trainer pytorch` writes them
     beside the hospital's data.csv, or pass --shard DIR),
  2. builds the network the tensors describe — layers.<l>.weight [out, in]
     and layers.<l>.bias [out] for l = 1…, ReLU between layers, softmax
     output (fedguard's MLP layout) — and loads the global weights,
  3. evaluates them on a fixed 10 % of the shard it never trains on (the
     contract's holdout: the starting model's quality),
  4. trains plan["epochs"] epochs of SGD with momentum on the rest, seeded
     with plan["seed"], inputs standardized with the federation's scaling
     pixels scaled to [0, 1] (/ 255) — images have a known range, so the
     federation's per-pixel scaling in plan["scaling"] (made for tabular
     columns) is not used; --standardize uses it instead,
  5. writes the trained weights (same names and shapes, F32) and
     metrics.json.

With --init PATH it instead writes a new model, torch's default
initialization of nn.Linear layers 784 → --hidden → 10, as safetensors: the
hospital-supplied initial model the coordinator starts from
(initial_model).

It needs only numpy and torch (Debian's python3-torch 1.13 works); the
safetensors files are read and written by safetensors_np.py beside it.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HOLDOUT = 0.1


def layers_of(tensors):
    """The layer numbers l of layers.<l>.weight / layers.<l>.bias, in order."""
    ls = set()
    for name in tensors:
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "layers" or parts[2] not in ("weight", "bias"):
            raise SystemExit(f"train.py: unexpected tensor {name!r}: want layers.<l>.weight and layers.<l>.bias")
        ls.add(int(parts[1]))
    ls = sorted(ls)
    if ls != list(range(1, len(ls) + 1)):
        raise SystemExit(f"train.py: layers {ls} are not 1…n")
    return ls


def forward(params, x):
    n = len(params) // 2
    for i in range(n):
        x = F.linear(x, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            x = F.relu(x)
    return x


def evaluate(params, x, y):
    with torch.no_grad():
        logits = forward(params, x)
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", help="directory with images.npy and labels.npy (default: beside the plan's data file)")
    ap.add_argument("--standardize", action="store_true", help="standardize pixels with the plan's scaling instead of / 255")
    ap.add_argument("--init", metavar="PATH", help="write a new initial model to PATH and exit")
    ap.add_argument("--hidden", type=int, default=128, help="--init: hidden layer width")
    ap.add_argument("--seed", type=int, default=1, help="--init: torch seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: hospitals share the machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.init:
        torch.manual_seed(args.seed)
        layers = [torch.nn.Linear(784, args.hidden), torch.nn.Linear(args.hidden, 10)]
        tensors = {}
        for l, layer in enumerate(layers, 1):
            tensors[f"layers.{l}.weight"] = layer.weight.detach().numpy()
            tensors[f"layers.{l}.bias"] = layer.bias.detach().numpy()
        safetensors_np.save(args.init, tensors, {"written_by": "examples/pytorch/train.py --init"})
        return

    with open(os.environ["FEDGUARD_PLAN"]) as f:
        plan = json.load(f)
    if plan.get("format_version") != 1:
        raise SystemExit(f"train.py: plan format_version {plan.get('format_version')} not supported")
    shard = args.shard or os.path.dirname(plan["data"])
    images = np.load(os.path.join(shard, "images.npy"))
    labels = np.load(os.path.join(shard, "labels.npy"))
    if images.ndim != 2 or len(images) != len(labels):
        raise SystemExit(f"train.py: shard {shard}: images {images.shape}, labels {labels.shape}")

    x = images.astype(np.float32) / 255
    sc = plan.get("scaling")
    if args.standardize and sc:
        x = images.astype(np.float32)
        mean = np.asarray(sc["mean"], dtype=np.float32)
        std = np.asarray(sc["std"], dtype=np.float32)
        x = (x - mean) / std
    x = torch.from_numpy(x)
    y = torch.from_numpy(labels.astype(np.int64))

    # A fixed holdout, the same every round: the hospital's own test rows.
    order = np.random.default_rng(0).permutation(len(y))
    cut = max(1, int(len(y) * HOLDOUT))
    hold, train = torch.from_numpy(order[:cut]), torch.from_numpy(order[cut:])

    tensors, _ = safetensors_np.load(os.environ["FEDGUARD_MODEL"])
    names = []
    for l in layers_of(tensors):
        names += [f"layers.{l}.weight", f"layers.{l}.bias"]
    params = [torch.tensor(tensors[n], requires_grad=True) for n in names]

    hold_loss, hold_acc = evaluate(params, x[hold], y[hold])

    g = torch.Generator().manual_seed(plan["seed"] % (1 << 63))
    lr = plan["learning_rate"]
    batch = max(1, plan.get("batch_size") or 32)
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=plan.get("l2") or 0)
    xt, yt = x[train], y[train]
    for _ in range(max(1, plan["epochs"])):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(forward(params, xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    safetensors_np.save(os.environ["FEDGUARD_OUTPUT"],
                        {n: p.detach().numpy() for n, p in zip(names, params)})
    with open(os.environ["FEDGUARD_METRICS"], "w") as f:
        json.dump({"samples": int(len(yt)),
                   "holdout": {"count": int(cut), "loss": hold_loss, "accuracy": hold_acc}}, f)
    print(f"round {plan['round']}: trained on {len(yt)} images, holdout accuracy of the start {hold_acc:.4f}")


if __name__ == "__main__":
    main()
