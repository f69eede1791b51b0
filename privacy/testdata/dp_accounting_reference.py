#!/usr/bin/python3
"""Writes the reference ε values that privacy's tests compare against.

The numbers come from Google's dp_accounting RDP accountant (RdpAccountant
with its default orders), run from a snapshot of
github.com/google/differential-privacy, which this script imports by path: no
dp_accounting code is copied here or committed to fedguard.

Regenerate (Debian's python3 with python3-numpy, python3-scipy,
python3-attr and python3-absl installed) with:

    git -C SNAPSHOT archive HEAD python/dp_accounting | tar -x -C /tmp/dpacct
    /usr/bin/python3 privacy/testdata/dp_accounting_reference.py \
        /tmp/dpacct/python/dp_accounting > privacy/testdata/dp_accounting.json

and say in the commit why the numbers changed.
"""

import json
import sys

if len(sys.argv) != 2:
    sys.exit("usage: dp_accounting_reference.py PATH/TO/python/dp_accounting")
sys.path.insert(0, sys.argv[1])

import dp_accounting  # noqa: E402  (imported from the path given above)
from dp_accounting import rdp  # noqa: E402

# Each case is a name, a δ and a sequence of (q, σ, steps) events: steps
# compositions of the Poisson-subsampled Gaussian mechanism with sampling
# rate q and noise multiplier σ (q = 1 is the plain Gaussian mechanism).
CASES = [
    ("abadi-mnist", 1e-5, [(0.01, 1.1, 10000)]),
    ("tiny-q-small-sigma", 1e-5, [(0.001, 0.5, 100000)]),
    ("tiny-q-unit-sigma", 1e-6, [(0.001, 1.0, 100000)]),
    ("gaussian-sigma10", 1e-5, [(1.0, 10.0, 100)]),
    ("gaussian-one-step-sigma0.5", 1e-5, [(1.0, 0.5, 1)]),
    ("gaussian-1e5-steps", 1e-5, [(1.0, 1.0, 100000)]),
    ("q0.1-sigma2", 1e-5, [(0.1, 2.0, 1000)]),
    ("q0.05-sigma0.8", 1e-6, [(0.05, 0.8, 5000)]),
    ("q0.5-sigma5-delta1e-3", 1e-3, [(0.5, 5.0, 20000)]),
    ("q0.004-sigma4-1e5", 1e-5, [(0.004, 4.0, 100000)]),
    ("q0.25-sigma1.5", 1e-5, [(0.25, 1.5, 200)]),
    ("q0.02-sigma10-1e5", 1e-5, [(0.02, 10.0, 100000)]),
    ("q0.9-sigma0.5-delta1e-2", 1e-2, [(0.9, 0.5, 10)]),
    ("one-step-q0.003-sigma0.7", 1e-5, [(0.003, 0.7, 1)]),
    ("hospital-rounds", 1e-5,
     [(0.01, 1.0, 500), (0.02, 2.0, 1000), (1.0, 10.0, 10)]),
    ("mixed-1e5", 1e-7, [(0.001, 0.6, 50000), (0.1, 3.0, 100000)]),
    ("mixed-many", 1e-5,
     [(0.001 * (1 + i % 7), 0.5 + 0.75 * (i % 13), 100 + 37 * i)
      for i in range(20)]),
]


# Discrete Gaussian releases (sigma, l2 sensitivity, dimension, steps, δ):
# the one-client case of the distributed discrete Gaussian, where fedguard's
# DistributedDiscreteGaussian has τ = 0.
DISCRETE_GAUSSIAN = [
    (1.0, 1.0, 1, 1, 1e-5),
    (10.0, 3.0, 1000, 100, 1e-5),
    (50.0, 20.0, 65536, 1000, 1e-6),
    (0.5, 0.25, 1, 10, 1e-3),
]


def event(q, sigma, steps):
  gaussian = dp_accounting.GaussianDpEvent(sigma)
  if q < 1:
    gaussian = dp_accounting.PoissonSampledDpEvent(q, gaussian)
  return dp_accounting.SelfComposedDpEvent(gaussian, steps)


def main():
  cases = []
  singles = {}
  for name, delta, events in CASES:
    acct = rdp.RdpAccountant()
    acct.compose(dp_accounting.ComposedDpEvent([event(*e) for e in events]))
    eps, order = acct.get_epsilon_and_optimal_order(delta)
    delta_back, _ = acct.get_delta_and_optimal_order(eps)
    cases.append({
        "name": name,
        "delta": delta,
        "events": [{"q": q, "sigma": s, "steps": t} for q, s, t in events],
        "epsilon": float(eps),
        "order": float(order),
        "delta_at_epsilon": float(delta_back),
    })
    for q, s, _ in events:
      if (q, s) not in singles:
        one = rdp.RdpAccountant()
        one.compose(event(q, s, 1))
        singles[(q, s)] = {"q": q, "sigma": s,
                           "rdp": [finite_or_none(r) for r in one.rdp]}
  discrete = []
  for sigma, sens, dim, steps, delta in DISCRETE_GAUSSIAN:
    acct = rdp.RdpAccountant()
    acct.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.DiscreteGaussianDpEvent(sigma, sens, dim), steps))
    eps, order = acct.get_epsilon_and_optimal_order(delta)
    discrete.append({"sigma": sigma, "l2": sens, "dim": dim, "steps": steps,
                     "delta": delta, "epsilon": float(eps),
                     "order": float(order)})
  out = {
      "source": "dp_accounting " + dp_accounting_version() +
                " rdp.RdpAccountant (default orders, ADD_OR_REMOVE_ONE)",
      "orders": [float(o) for o in rdp.RdpAccountant().orders],
      "cases": cases,
      "discrete_gaussian": discrete,
      "single_step_rdp": sorted(singles.values(),
                                key=lambda x: (x["q"], x["sigma"])),
  }
  json.dump(out, sys.stdout, indent=1, allow_nan=False)
  sys.stdout.write("\n")


def finite_or_none(x):
  """JSON has no infinity: an order whose RDP is +inf (dp_accounting's
  series did not converge, so the order is excluded) is written as null."""
  x = float(x)
  if x == float("inf"):
    return None
  if x != x or x < 0:
    raise ValueError(f"unexpected RDP value {x}")
  return x


def dp_accounting_version():
  import os
  path = os.path.join(sys.argv[1], "VERSION")
  try:
    with open(path) as f:
      for line in f:
        line = line.strip()
        if line and not line.startswith('"""') and not line.startswith("#"):
          return line
  except OSError:
    pass
  return "(unknown version)"


if __name__ == "__main__":
  main()
