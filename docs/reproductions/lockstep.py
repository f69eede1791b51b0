"""Runs the bucketing paper's code (epfml/byzantine-robust-noniid-optimizer
at 0e27349) on the draws fedguard's simulator made for one cell of
karimireddy2022-mnist, IPM x CM with buckets of 2 (cell ipm-cm-bucket2) or
IPM x RFA without buckets (cell ipm-rfa), and compares the test accuracy
and loss with fedguard's at every evaluation.

Their code does the arithmetic: codes/worker.py MomentumWorker (the
honest workers' heavy-ball momentum of gradients), codes/attacks/xie.py
IPMAttack (-eps times the mean of the honest workers' momenta, eps = 0.1
as utils.py initialize_worker gives it), the bucket means of utils.py
bucketing_wrapper (its sum(...) / len(...), bucket by bucket),
codes/aggregator/coordinatewise_median.py CM or codes/aggregator/rfa.py
RFA(T=8) (nu = 0.1, as utils.py _get_aggregator gives it), codes/server.py TorchServer
with torch.optim.SGD at utils.py's LR = 0.01, all driven through
codes/simulator.py ParallelTrainer.aggregation_and_update. fedguard's
draws replace their random ones: the initial model (loaded into the MLP
784-64-10 of exp3_drive.py --mlp), each worker's batch of 32 rows of each
round (in place of its DataLoader), the Byzantine workers' places and
each round's buckets (in place of np.random.shuffle). Pixels are in
[0, 1], as fedguard's loader and exp3_drive.py --nonorm give them.

From a checkout of that commit with MNIST in datasets/MNIST/raw:

  go test ./simulation -run TestLockstepDump -lockstep-dump /tmp/d.json \\
      -lockstep-rounds 30 -lockstep-every 1 -lockstep-seed 0 [-lockstep-cell ipm-rfa]
  python3 lockstep.py /tmp/d.json [--out golden.json] [--torch-init SEED]

--torch-init SEED starts from their own initial model (torch.manual_seed
then nn.Linear's default) instead of fedguard's, the rest of the draws
unchanged.

--out writes their code's evaluations in the form of
simulation/testdata/lockstep (TestPresetMatchesAuthorsCode)."""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
from torchvision import datasets

from codes.worker import MomentumWorker
from codes.attacks.xie import IPMAttack
from codes.aggregator.coordinatewise_median import CM
from codes.aggregator.rfa import RFA
from codes.server import TorchServer
from codes.simulator import ParallelTrainer

dump = json.load(open(sys.argv[1]))
out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
R = len(dump["batches"])
torch.set_num_threads(1)

tr = datasets.MNIST("datasets", train=True, download=False)
te = datasets.MNIST("datasets", train=False, download=False)
Xtr = tr.data.reshape(-1, 784).to(torch.float32).div(255)
Ytr = tr.targets
Xte = te.data.reshape(-1, 784).to(torch.float32).div(255)
Yte = te.targets


class MLP(nn.Module):  # exp3_drive.py's
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


if "--torch-init" in sys.argv:
    # Their own start instead of fedguard's: utils.main's
    # torch.manual_seed(seed) then the model, nn.Linear's default init.
    torch.manual_seed(int(sys.argv[sys.argv.index("--torch-init") + 1]))
    model = MLP()
else:
    model = MLP()
    # fedguard's layout: each layer's weights (out x in, row by row), then its biases.
    p = torch.tensor(dump["initial"], dtype=torch.float32)
    with torch.no_grad():
        model.fc1.weight.copy_(p[0:50176].reshape(64, 784))
        model.fc1.bias.copy_(p[50176:50240])
        model.fc2.weight.copy_(p[50240:50880].reshape(10, 64))
        model.fc2.bias.copy_(p[50880:50890])

n = len(dump["buckets"][0])
byz = set(dump["byzantine"])
LR = 0.01  # utils.py
optimizers = [torch.optim.SGD(model.parameters(), lr=LR) for _ in range(n)]
server = TorchServer(optimizer=torch.optim.SGD(model.parameters(), lr=LR))
cell = dump.get("cell") or "ipm-cm-bucket2"
rule = {"ipm-cm-bucket2": CM(), "ipm-rfa": RFA(T=8)}[cell]  # utils.py _get_aggregator
state = {"round": 0}


def aggregator(inputs):
    b = dump["buckets"][state["round"]]
    if max(b) == 0:  # no bucketing: utils.get_aggregator returns the rule itself
        return rule(inputs)
    # utils.py bucketing_wrapper with fedguard's buckets for np.random.shuffle's.
    means = []
    for t in range(1, max(b) + 1):
        idx = [i for i in range(n) if b[i] == t]
        means.append(sum(inputs[i] for i in idx) / len(idx))
    return rule(means)


trainer = ParallelTrainer(server=server, aggregator=aggregator, pre_batch_hooks=[], post_batch_hooks=[],
                          max_batches_per_epoch=R, log_interval=10 ** 9, metrics={}, use_cuda=False, debug=False)


def batches(i):
    for r in range(R):
        idx = torch.tensor(dump["batches"][r][i])
        yield Xtr[idx], Ytr[idx]


for i in range(n):
    kw = dict(data_loader=None, model=model, optimizer=optimizers[i], loss_func=F.nll_loss, device="cpu")
    if i in byz:
        w = IPMAttack(epsilon=0.1, **kw)
        w.configure(trainer)
    else:
        w = MomentumWorker(momentum=0.9, **kw)
    w.running["train_loader_iterator"] = batches(i)
    trainer.add_worker(w)

t0 = time.time()
evals = {r: k for k, r in enumerate(dump["evals"])}
res = {"cell": cell, "seed": dump["seed"], "init": dump.get("init", ""), "evals": [], "accuracy": [], "loss": [],
       "source": "docs/reproductions/lockstep.py: epfml/byzantine-robust-noniid-optimizer at 0e27349 on "
                 "fedguard's draws (TestLockstepDump), torch %s" % torch.__version__}
worst = 0.0
for r in range(R):
    state["round"] = r
    trainer.parallel_get(lambda w: w.compute_gradient())
    trainer.aggregation_and_update()
    if r + 1 not in evals:
        continue
    with torch.no_grad():
        o = model(Xte)
        loss = F.nll_loss(o, Yte).item()
        acc = (o.argmax(1) == Yte).sum().item() / len(Yte)
    k = evals[r + 1]
    fa, fl = dump["accuracy"][k], dump["loss"][k]
    worst = max(worst, abs(loss - fl) / fl)
    res["evals"].append(r + 1)
    res["accuracy"].append(acc)
    res["loss"].append(loss)
    print(f"round {r+1:4d}  theirs {100*acc:5.2f} % loss {loss:.6f}   fedguard {100*fa:5.2f} % loss {fl:.6f}"
          f"   relative difference of the loss {abs(loss-fl)/fl:.1e}", flush=True)
print(f"{R} rounds, largest relative difference of the test loss {worst:.1e}, {time.time()-t0:.1f} s")
if out:
    json.dump(res, open(out, "w"), indent=1)
