#!/usr/bin/python3
"""Writes ddg.json: the distributed discrete Gaussian's bounds, evaluated from
the formulas of Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian
Mechanism for Federated Learning with Secure Aggregation", ICML 2021
(arXiv:2102.06387), Theorem 1 (τ) and Proposition 14 / Eq. 17 (RDP), in
50-digit arithmetic with mpmath, independently of fedguard's Go code.

Regenerate (Debian's python3-mpmath) with:

    /usr/bin/python3 privacy/testdata/ddg_reference.py > privacy/testdata/ddg.json
"""

import json
import sys

import mpmath as mp

mp.mp.dps = 50

# sigma (each client's discrete Gaussian parameter, grid units), clients,
# dimension, l2 and l1 sensitivities (l1 = 0: the integer-grid bound
# l2 * min(sqrt(d), max(l2, 1))), steps, delta.
CASES = [
    (0.5, 2, 1, 1, 0, 1, 1e-5),
    (0.5, 100, 10, 3, 0, 5, 1e-5),
    (0.75, 50, 10000, 30, 0, 10, 1e-5),
    (1.0, 10, 1000, 2, 0, 1, 1e-5),
    (1.0, 10, 1000, 2, 8, 100, 1e-5),
    (1.5, 100, 1000000, 15, 0, 100, 1e-6),
    (3.0, 1000, 100000, 95, 0, 50, 1e-5),
    (10.0, 100, 65536, 100, 0, 20, 1e-5),
]

# fedguard's default orders (dp_accounting's DEFAULT_RDP_ORDERS).
ORDERS = ([mp.mpf(1) + mp.mpf(x) / 10 for x in range(1, 100)] +
          [mp.mpf(a) for a in range(11, 64)] +
          [mp.mpf(a) for a in (128, 256, 512, 1024)])


def tau(sigma, n):
  return 10 * mp.fsum(
      mp.exp(-2 * mp.pi**2 * sigma**2 * mp.mpf(k) / (k + 1))
      for k in range(1, n))


def main():
  out = []
  for sigma, n, d, l2, l1, steps, delta in CASES:
    sigma, l2, delta = mp.mpf(sigma), mp.mpf(l2), mp.mpf(delta)
    l1v = mp.mpf(l1) if l1 else l2 * min(mp.sqrt(d), max(l2, 1))
    t = tau(sigma, n)
    a = l2 / (mp.sqrt(n) * sigma)
    b = l1v / (mp.sqrt(n) * sigma)

    def step_rdp(alpha):
      return min(alpha / 2 * a**2 + t * d,
                 alpha / 2 * (a**2 + 2 * b * t + t**2 * d),
                 alpha / 2 * (a + t * mp.sqrt(d))**2)

    rho = min((a + t * mp.sqrt(d))**2, a**2 + 2 * b * t + t**2 * d) / 2
    best, best_order = None, None
    for alpha in ORDERS:
      r = steps * step_rdp(alpha)
      # Canonne, Kamath, Steinke 2020, Proposition 12, and the KL bound.
      if delta**2 + mp.expm1(-r) > 0:
        e = mp.mpf(0)
      elif alpha > 1.01:
        e = r + mp.log1p(-1 / alpha) - mp.log(delta * alpha) / (alpha - 1)
      else:
        e = mp.inf
      if best is None or e < best:
        best, best_order = e, alpha
    out.append({
        "sigma": float(sigma), "clients": n, "dim": d, "l2": float(l2),
        "l1": l1, "steps": steps, "delta": float(delta),
        "tau": float(t), "rho": float(rho),
        "rdp": {"2": float(steps * step_rdp(mp.mpf(2))),
                "8": float(steps * step_rdp(mp.mpf(8))),
                "1.5": float(steps * step_rdp(mp.mpf(1.5)))},
        "epsilon": float(max(best, 0)), "order": float(best_order),
    })
  json.dump({"source": "Kairouz, Liu, Steinke 2021, Theorem 1 and "
                       "Proposition 14, evaluated with mpmath at 50 digits",
             "cases": out}, sys.stdout, indent=1, allow_nan=False)
  sys.stdout.write("\n")


if __name__ == "__main__":
  main()
