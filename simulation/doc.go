// Package simulation runs a federation in one process to measure how the
// aggregation rules hold against poisoning attacks, on fedguard's own code
// paths: every client trains through participant.TrainUpdate, the
// participants' training code, and the global model moves by the aggregate
// of aggregation.New, the coordinator's rules, with their pre-steps. It is
// what `fedguard simulate` runs.
//
// # A run
//
// Run loads the data set (MNIST's own training and test sets, or WDBC
// split 80/20 and standardized with the training rows' scaling), splits
// the training rows among the clients with partition.Split, picks
// Options.Byzantine of the clients at random and passes their rows once
// through the attack's Poison (data poisoning then trains on them through
// the same training path). Each round every client trains from the global
// model; the attack's Craft replaces the Byzantine clients' updates,
// seeing the honest ones unless attack.Config.OwnOnly; the rule aggregates
// all of them, each weighted (for fedavg) by its client's row count; the
// global model becomes global + aggregate, saturating at ±MaxFloat32 as
// the coordinator does, and is evaluated on the test rows. For a backdoor
// attack the attack success rate is measured too (see
// RoundResult.AttackSuccess). A client whose training diverges sends a
// zero update and is counted in RoundResult.Diverged.
//
// # Determinism
//
// Everything random derives from Options.Seed: the WDBC split, the
// partition, the Byzantine clients, the initial model, the poisoning and
// each round's attack randomness from SHA-256 of a domain string, the
// purpose, the seed and the round or client; a client's shuffling from
// participant.RoundRand(client, seed, round), as a hospital's from its
// seed, the assignment's and the round; the rule's randomness (bucketing)
// from rand.NewChaCha8 of such a hash of the seed and the round. Clients
// write their own slots and the evaluation sums fixed chunks in order, so
// the same options give the same numbers bit for bit whatever
// Options.Workers and the number of cores (Result.ModelSHA256 is the final
// model's digest).
//
// # Momentum and the papers' set-ups
//
// Options.LocalSteps makes a round a few SGD steps on fresh mini-batches,
// as in the robustness papers (Options.BatchOrder walks each client's rows
// epoch by epoch instead, as a PyTorch DataLoader does); Options.WorkerMomentum keeps a momentum per
// client across rounds (the client sends it instead of its update),
// Options.ServerMomentum one for the server, in the convention
// Options.MomentumStyle names; Options.ClippingCenter starts centered
// clipping from the previous aggregate as its authors define it. With both
// momenta 0 the runs are those without momentum, bit for bit. Presets
// (LookupPreset) mirror papers' experiments as their code runs them; see
// docs/reproductions.md.
//
// # Detectors and secure mode
//
// Every run also runs the coordinator's anomaly heuristics (package
// anomaly) on every round and counts in Result.Detection how many of the
// Byzantine and of the honest clients' updates each flagged: the
// detection and false-positive rates of `fedguard simulate`. With
// Options.Secure the run is the secure + robust mode the coordinator runs
// (see secure.go): the production bucket split (secureround.Plan.Buckets),
// the participants' clipping and SecAgg encoding of their inputs
// (secureround.Plan.Input), the modular sum and decoding of each bucket,
// and the rule over bucket means; masking and dropouts are not simulated.
//
// # Grids
//
// Grid runs every (attack, rule) pair of a base configuration in parallel
// and WriteCSV, WriteHeatmap and WriteAccuracyPlots turn the results into
// a CSV file and PNG plots (gonum.org/v1/plot). aggregation.Defaults gives
// a rule's parameters from its name, n and f. GridShard runs one Shard of
// the cells, and MergeGrid joins the shards' GridFiles into the results
// of the whole grid, so that WriteCSV gives the same bytes.
package simulation
