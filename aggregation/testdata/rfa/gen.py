"""Regenerates the RFA reference vectors in this folder from three
independent implementations of the smoothed Weiszfeld algorithm, run
unchanged from their repositories (not copied here):

  byzfl     LPD-EPFL/byzfl 69bd1ac0, byzfl/aggregators/aggregators.py
            GeometricMedian(nu, T): uniform weights, starts at zero.
  pillutla  krishnap25/RFA 40945d27, models/model.py
            ServerModel.geometric_median_update(points, alphas, maxiter,
            eps, ftol=0): the paper's authors; sample weights, starts at
            the weighted mean (ftol=0 turns its early stop off).
  bucketing epfml/byzantine-robust-noniid-optimizer 0e27349,
            codes/aggregator/rfa.py smoothed_weiszfeld(weights, alphas, z,
            nu, T): uniform weights, starts at zero.

Usage (Debian's python3 with python3-numpy and python3-torch):

  /usr/bin/python3 gen.py BYZFL_DIR RFA_DIR BUCKETING_DIR

where each DIR is a checkout of the repository at the commit above.
Inputs are float32 values, so the Go test reads them exactly; the
references compute in float64 (torch: float64 tensors)."""
import ast, json, sys, types
import numpy as np

byzfl_dir, rfa_dir, bucketing_dir = sys.argv[1:4]

# byzfl: load the aggregators module without the package's __init__
# (which imports the benchmark tools and matplotlib).
for name, path in [("byzfl", ""), ("byzfl.aggregators", "aggregators"), ("byzfl.utils", "utils")]:
    m = types.ModuleType(name)
    m.__path__ = [f"{byzfl_dir}/byzfl/{path}".rstrip("/")]
    sys.modules[name] = m
from byzfl.aggregators.aggregators import GeometricMedian

# pillutla: the static methods of ServerModel, taken from models/model.py
# by the ast module (the file imports TensorFlow at the top).
src = open(f"{rfa_dir}/models/model.py").read()
cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "ServerModel")
keep = {"weighted_average_oracle", "geometric_median_update", "l2dist", "geometric_median_objective"}
cls.body = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in keep]
mod = ast.Module(body=[cls], type_ignores=[])
ns = {"np": np}
exec(compile(mod, "models/model.py", "exec"), ns)
ServerModel = ns["ServerModel"]

sys.path.insert(0, bucketing_dir)
import torch
from codes.aggregator.rfa import smoothed_weiszfeld


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


rng = np.random.default_rng(20260105)
cases = []


def add(name, comment, ref, config, xs, samples, want):
    cases.append((name, {
        "comment": comment,
        "reference": ref,
        "config": config,
        "inputs": [{"id": f"p{i}", "delta": [float(v) for v in x], "samples": int(s)} for i, (x, s) in enumerate(zip(xs, samples))],
        "want": [float(v) for v in want],
    }))


# 1. ByzFL's own docstring example.
xs = f32([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
add("byzfl-docstring", "ByzFL's GeometricMedian docstring example (defaults nu=0.1, T=3, from zero)",
    "byzfl GeometricMedian(nu=0.1, T=3)", {"rule": "rfa", "iterations": 3, "nu": 0.1, "start": "zero", "max_samples": 1},
    xs, [1] * 3, GeometricMedian(nu=0.1, T=3)(xs))

# 2. Honest cluster and two far outliers, ByzFL, T = 10.
xs = f32(np.vstack([rng.normal(0.5, 0.1, (7, 6)), rng.normal(-20, 1, (2, 6))]))
add("byzfl-outliers", "7 points near 0.5 and 2 near -20: the median stays with the cluster",
    "byzfl GeometricMedian(nu=0.01, T=10)", {"rule": "rfa", "iterations": 10, "nu": 0.01, "start": "zero", "max_samples": 1},
    xs, [5] * 9, GeometricMedian(nu=0.01, T=10)(xs))

# 3. Smoothing active: ν larger than the distances of a tight majority.
xs = f32(np.vstack([np.tile([1, 1, 1, 1], (4, 1)) + rng.normal(0, 1e-3, (4, 4)), rng.normal(3, 1, (3, 4))]))
add("byzfl-smoothing", "a tight majority within ν = 0.5 of the iterate: their weights are capped by ν",
    "byzfl GeometricMedian(nu=0.5, T=6)", {"rule": "rfa", "iterations": 6, "nu": 0.5, "start": "zero", "max_samples": 1},
    xs, [1] * 7, GeometricMedian(nu=0.5, T=6)(xs))

# 4. The bucketing paper's code, as its exp3 runs it (T = 8, ν = 0.1).
xs = f32(np.vstack([rng.normal(0, 0.05, (20, 8)), rng.normal(0.3, 0.01, (5, 8))]))
z = smoothed_weiszfeld([torch.tensor(x) for x in xs], [1 / 25] * 25, z=torch.zeros(8, dtype=torch.float64), nu=0.1, T=8)
add("bucketing-exp3", "25 updates, 5 shifted, RFA(T=8, nu=0.1) as exp3 of the bucketing paper's code runs it",
    "bucketing smoothed_weiszfeld(alphas=1/n, z=0, nu=0.1, T=8)", {"rule": "rfa", "iterations": 8, "nu": 0.1, "start": "zero", "max_samples": 1},
    xs, [1] * 25, z.numpy())

# 5. The paper's authors, sample-weighted, from the weighted mean.
xs = f32(np.vstack([rng.normal(1, 0.2, (5, 5)), rng.normal(-4, 0.2, (2, 5))]))
samples = [10, 20, 30, 40, 50, 60, 70]
med, _, _ = ServerModel.geometric_median_update([[x] for x in xs], samples, maxiter=4, eps=1e-5, ftol=0)
add("pillutla-weighted", "sample-weighted (10..70), from the weighted mean, the authors' defaults maxiter=4, eps=1e-5",
    "pillutla geometric_median_update(alphas=samples, maxiter=4, eps=1e-5, ftol=0)", {"rule": "rfa"},
    xs, samples, med[0])

# 6. The same with many iterations: close to the exact geometric median.
med, _, _ = ServerModel.geometric_median_update([[x] for x in xs], samples, maxiter=50, eps=1e-5, ftol=0)
add("pillutla-converged", "as pillutla-weighted with 50 iterations",
    "pillutla geometric_median_update(alphas=samples, maxiter=50, eps=1e-5, ftol=0)", {"rule": "rfa", "iterations": 50},
    xs, samples, med[0])

# 7. Weights that put the majority of the weight on the outliers: the
#    median follows the weight, as the paper's weighted definition says.
xs = f32([[0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10]])
samples = [1, 1, 1, 100, 100]
med, _, _ = ServerModel.geometric_median_update([[x] for x in xs], samples, maxiter=20, eps=1e-5, ftol=0)
add("pillutla-weight-majority", "two far points holding most of the sample weight win: why max_samples matters",
    "pillutla geometric_median_update(alphas=samples, maxiter=20, eps=1e-5, ftol=0)", {"rule": "rfa", "iterations": 20},
    xs, samples, med[0])

for name, case in cases:
    with open(f"{name}.json", "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
    print(name, case["want"][:3])
