// Package privacy is fedguard's differential-privacy accountant: it turns
// what a training run did — so many steps of the Poisson-subsampled Gaussian
// mechanism with sampling rate q and noise multiplier σ — into the (ε, δ)
// guarantee a compliance officer asks for. It is pure arithmetic on float64:
// no I/O, no clocks, no randomness, so the agent, the coordinator, the audit
// report and `fedguard privacy epsilon` all get the same number from the same
// events.
//
// # Method
//
// The accountant works in Rényi differential privacy (RDP, Mironov 2017): a
// mechanism is (α, ε(α))-RDP at each order α > 1 of a fixed grid, RDP adds up
// under composition, and the sum is converted to (ε, δ) at the end by taking
// the best order.
//
//   - The Gaussian mechanism with noise multiplier σ (noise standard
//     deviation over ℓ2 sensitivity) is (α, α/(2σ²))-RDP (Mironov 2017,
//     Proposition 7).
//   - One step of the Poisson-subsampled Gaussian mechanism (each record in
//     the batch independently with probability q) is (α, log(A_α)/(α−1))-RDP,
//     where A_α is computed exactly for integer α by the binomial expansion
//     and for fractional α by the two convergent series of Mironov, Talwar
//     and Zhang 2019, Section 3.3 (SampledGaussianRDP).
//   - T identical steps cost T times one step; a sequence of events costs the
//     sum of its parts (Compose).
//   - RDP converts to (ε, δ) with the bound of Canonne, Kamath and Steinke
//     2020, Proposition 12 (equivalently Asoodeh et al. 2020 / Balle et al.
//     2020): ε = ε(α) + log(1 − 1/α) − log(δ·α)/(α − 1), minimised over the
//     orders, together with the KL-divergence bound δ ≤ √(1 − e^(−ε(α))) that
//     gives ε = 0 for nearly non-private-loss sequences (EpsilonFromRDP).
//
// The computation follows Google's dp_accounting RdpAccountant
// (rdp_privacy_accountant.py) step by step — its series, its stopping rule
// and 1000-term cap on the fractional series (an order whose series does not
// converge is excluded, as +Inf), its conversion and its order grid
// (DefaultOrders) — with log-space arithmetic organised for speed, so the
// two differ only by rounding. testdata/dp_accounting.json holds dp_accounting's own
// numbers for 17 event sequences and the tests hold fedguard to them;
// docs/privacy.md lists them.
//
// DistributedDiscreteGaussian accounts for the distributed discrete
// Gaussian mechanism of Kairouz, Liu and Steinke 2021 (noise added by each
// client inside secure aggregation), from their Theorem 1 and Proposition
// 14; its RDP composes with the events above by adding the curves.
//
// # Conventions
//
// Neighbouring datasets differ by adding or removing one record (dp_accounting's
// ADD_OR_REMOVE_ONE), which is what Poisson sampling needs. Every event is a
// Poisson-subsampled Gaussian: q = 1 is the plain Gaussian mechanism. σ is the
// noise multiplier, never the absolute standard deviation. ε is in nats.
//
// # Numerics
//
// Sums of exponentials are taken in log space (log-sum-exp), binomial
// coefficients through math.Lgamma, and log erfc through an asymptotic
// expansion where erfc underflows. No function returns NaN for inputs that
// pass validation: an order whose RDP cannot be represented is +Inf, which is
// conservative (it only removes that order from the minimum).
//
// # References
//
//   - I. Mironov. Rényi Differential Privacy. CSF 2017. arXiv:1702.07476.
//   - I. Mironov, K. Talwar, L. Zhang. Rényi Differential Privacy of the
//     Sampled Gaussian Mechanism. 2019. arXiv:1908.10530.
//   - C. Canonne, G. Kamath, T. Steinke. The Discrete Gaussian for
//     Differential Privacy. NeurIPS 2020. arXiv:2004.00010.
//   - B. Balle, G. Barthe, M. Gaboardi, J. Hsu, T. Sato. Hypothesis Testing
//     Interpretations and Rényi Differential Privacy. AISTATS 2020.
//     arXiv:1905.09982.
//   - P. Kairouz, Z. Liu, T. Steinke. The Distributed Discrete Gaussian
//     Mechanism for Federated Learning with Secure Aggregation. ICML 2021.
//     arXiv:2102.06387.
//   - Google dp_accounting, python/dp_accounting/dp_accounting/rdp/
//     rdp_privacy_accountant.py in github.com/google/differential-privacy.
package privacy
