#!/usr/bin/python3
"""A hospital's PyTorch trainer for fedguard's exec contract (docs/trainer.md).

Each round fedguard's agent writes the verified global model
(model.safetensors) and a round plan (plan.json) into a private directory
and runs this script with FEDGUARD_PLAN, FEDGUARD_MODEL, FEDGUARD_OUTPUT and
FEDGUARD_METRICS set. The script

  1. reads the hospital's MNIST shard (images.npy, uint8 N×784, and
     labels.npy, uint8 N) from the plan's data — the shard's directory
     (`fedguard demo --trainer pytorch` configures it so; the agent never
     opens it), or a file beside them — or from --shard DIR,
  2. builds the network the tensors describe and loads the global weights:
     - conv1.*, conv2.*, fc1.*, fc2.* — the CNN (--arch cnn, the default):
       two 3×3 convolutions (1 → 8 → 16 channels, padding 1), each with
       ReLU and 2×2 max pooling, then 784 → 64 → 10 fully connected;
     - layers.<l>.weight [out, in] and layers.<l>.bias [out] for l = 1… —
       fedguard's MLP layout (--arch mlp), ReLU between layers,
  3. evaluates them on a fixed 10 % of the shard it never trains on (the
     contract's holdout: the starting model's quality),
  4. trains plan["epochs"] epochs of SGD with momentum on the rest, seeded
     with plan["seed"], pixels scaled to [0, 1] (/ 255) — images have a
     known range; a federation with feature columns may send its per-pixel
     scaling in plan["scaling"], which --standardize uses instead,
  5. writes the trained weights (same names and shapes, F32) and
     metrics.json.

With --init PATH it instead writes a new model of --arch, torch's default
initialization, as safetensors: the hospital-supplied initial model the
coordinator starts from (initial_model), whose tensors are the federation's
layout. With --evaluate PATH --shard DIR it prints the model's
{"count", "loss", "accuracy"} on the shard as one JSON line.

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


CNN = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
       "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def layers_of(tensors):
    """The layer numbers l of layers.<l>.weight / layers.<l>.bias, in order."""
    ls = set()
    for name in tensors:
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "layers" or parts[2] not in ("weight", "bias"):
            raise SystemExit(f"train.py: unexpected tensor {name!r}: want the CNN's {CNN} or layers.<l>.weight and layers.<l>.bias")
        ls.add(int(parts[1]))
    ls = sorted(ls)
    if ls != list(range(1, len(ls) + 1)):
        raise SystemExit(f"train.py: layers {ls} are not 1…n")
    return ls


def names_of(tensors):
    """The tensor names in the order forward takes them, and the arch."""
    if sorted(tensors) == sorted(CNN):
        return CNN, "cnn"
    names = []
    for l in layers_of(tensors):
        names += [f"layers.{l}.weight", f"layers.{l}.bias"]
    return names, "mlp"


def forward(arch, params, x):
    if arch == "cnn":
        c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b = params
        x = x.view(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(F.conv2d(x, c1w, c1b, padding=1)), 2)
        x = F.max_pool2d(F.relu(F.conv2d(x, c2w, c2b, padding=1)), 2)
        x = F.relu(F.linear(x.flatten(1), f1w, f1b))
        return F.linear(x, f2w, f2b)
    n = len(params) // 2
    for i in range(n):
        x = F.linear(x, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            x = F.relu(x)
    return x


def evaluate(arch, params, x, y):
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(y), 1000):
            logits = forward(arch, params, x[i:i + 1000])
            loss += F.cross_entropy(logits, y[i:i + 1000], reduction="sum").item()
            correct += (logits.argmax(1) == y[i:i + 1000]).sum().item()
    return loss / len(y), correct / len(y)


def init_model(arch, hidden):
    if arch == "cnn":
        mods = [torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 3, padding=1),
                torch.nn.Linear(16 * 7 * 7, 64), torch.nn.Linear(64, 10)]
        prefixes = ["conv1", "conv2", "fc1", "fc2"]
    else:
        mods = [torch.nn.Linear(784, hidden), torch.nn.Linear(hidden, 10)]
        prefixes = [f"layers.{l}" for l in range(1, len(mods) + 1)]
    tensors = {}
    for p, m in zip(prefixes, mods):
        tensors[p + ".weight"] = m.weight.detach().numpy()
        tensors[p + ".bias"] = m.bias.detach().numpy()
    return tensors


def load_shard(shard):
    images = np.load(os.path.join(shard, "images.npy"))
    labels = np.load(os.path.join(shard, "labels.npy"))
    if images.ndim != 2 or images.shape[1] != 784 or len(images) != len(labels):
        raise SystemExit(f"train.py: shard {shard}: images {images.shape}, labels {labels.shape}")
    return images, labels


def load_params(path):
    tensors, _ = safetensors_np.load(path)
    names, arch = names_of(tensors)
    return names, arch, [torch.tensor(tensors[n], requires_grad=True) for n in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", help="directory with images.npy and labels.npy (default: beside the plan's data file)")
    ap.add_argument("--standardize", action="store_true", help="standardize pixels with the plan's scaling instead of / 255")
    ap.add_argument("--init", metavar="PATH", help="write a new initial model to PATH and exit")
    ap.add_argument("--arch", choices=["cnn", "mlp"], default="cnn", help="--init: the network (default cnn)")
    ap.add_argument("--hidden", type=int, default=128, help="--init --arch mlp: hidden layer width")
    ap.add_argument("--seed", type=int, default=1, help="--init: torch seed")
    ap.add_argument("--evaluate", metavar="PATH", help="print PATH's loss and accuracy on --shard as JSON and exit")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: hospitals share the machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.init:
        torch.manual_seed(args.seed)
        safetensors_np.save(args.init, init_model(args.arch, args.hidden),
                            {"written_by": f"examples/pytorch/train.py --init --arch {args.arch}"})
        return
    if args.evaluate:
        if not args.shard:
            raise SystemExit("train.py: --evaluate needs --shard")
        images, labels = load_shard(args.shard)
        _, arch, params = load_params(args.evaluate)
        loss, acc = evaluate(arch, params, torch.from_numpy(images.astype(np.float32) / 255),
                             torch.from_numpy(labels.astype(np.int64)))
        print(json.dumps({"count": int(len(labels)), "loss": loss, "accuracy": acc}))
        return

    with open(os.environ["FEDGUARD_PLAN"]) as f:
        plan = json.load(f)
    if plan.get("format_version") != 1:
        raise SystemExit(f"train.py: plan format_version {plan.get('format_version')} not supported")
    data = plan.get("data") or ""
    shard = args.shard or (data if os.path.isdir(data) else os.path.dirname(data))
    images, labels = load_shard(shard)

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

    names, arch, params = load_params(os.environ["FEDGUARD_MODEL"])

    hold_loss, hold_acc = evaluate(arch, params, x[hold], y[hold])

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
            loss = F.cross_entropy(forward(arch, params, xt[idx]), yt[idx])
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
