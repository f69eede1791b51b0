package cli

// commands is fedguard's whole command line: every command and subcommand,
// with the function that runs it and its line in `fedguard help`. Dispatch
// and help both read this one table, so a command exists exactly when it is
// listed here; each command's code lives in the file of its name. Help
// prints a level in the order listed, which is alphabetical (TestCommandTable
// keeps it so).
var commands = []*command{
	{name: "audit", summary: "the audit record: export, verify, prove, report, lineage, model, check", sub: []*command{
		{name: "check", summary: "check an audit database in place: its file, chain, Merkle tree and signed checkpoints", run: runAuditCheck},
		{name: "export", summary: "write an audit database as JSON lines (events, then signed checkpoints)", run: runAuditExport},
		{name: "lineage", summary: "which hospitals' data versions trained a model version, and what changed between rounds", run: runAuditLineage},
		{name: "model", summary: "write a round's model file and its signed manifest, for cosign and other DSSE tools", run: runAuditModel},
		{name: "prove", summary: "print an offline-checkable proof that one event is in the signed log", run: runAuditProve},
		{name: "report", summary: "per-round provenance report (Markdown or HTML)", run: runAuditReport},
		{name: "verify", summary: "verify an export (or an inclusion proof) offline with the coordinator's public key", run: runAuditVerify},
	}},
	{name: "bench", summary: "measure fedguard: round, aggregate, secagg", sub: []*command{
		{name: "aggregate", summary: "one aggregation rule on random updates, against one summing pass", run: runBenchAggregate},
		{name: "round", summary: "rounds over real mTLS on loopback with no-op training", run: runBenchRound},
		{name: "secagg", summary: "one secure-aggregation session with dropouts, against the AES-CTR keystream of one mask", run: runBenchSecAgg},
	}},
	{name: "ca", summary: "the federation CA: init, issue, sign, revoke, list, init-audit", sub: []*command{
		{name: "init", summary: "create a federation CA in a new directory", run: runCAInit},
		{name: "init-audit", summary: "start the audit log of a CA made before the CA log existed (a one-time migration)", run: runCAInitAudit},
		{name: "issue", summary: "issue the coordinator's server certificate and key", run: runCAIssue},
		{name: "list", summary: "list issued certificates and whether they are revoked", run: runCAList},
		{name: "revoke", summary: "revoke a certificate by serial, file or participant name", run: runCARevoke},
		{name: "sign", summary: "sign a participant's CSR", run: runCASign},
	}},
	{name: "coordinator", summary: "run a federation's coordinator (rounds, aggregation, persistence); 'coordinator init' creates a new federation and exits; 'coordinator rotate-keys' rotates its signing keys", run: runCoordinatorCommand},
	{name: "demo", summary: "run a whole federation on loopback with the shipped data (WDBC; MNIST with --trainer pytorch)", run: runDemo},
	{name: "model", summary: "the federation's model as a deployable file: export, verify", sub: []*command{
		{name: "export", summary: "write a round's model as safetensors with its signed manifest", run: runModelExport},
		{name: "verify", summary: "check a safetensors model against its signed manifest (the serving side's check)", run: runModelVerify},
	}},
	{name: "participant", summary: "the hospital agent: init, run, validate, witness, lineage", sub: []*command{
		{name: "init", summary: "make this hospital's key and certificate signing request", run: runParticipantInit},
		{name: "lineage", summary: "print this hospital's data version, or -check it against a round's manifest", run: runParticipantLineage},
		{name: "run", summary: "take part in a federation's training until it finishes", run: runParticipant},
		{name: "validate", summary: "check a data file against an expectations file, or propose one (--init)", run: runValidate},
		{name: "witness", summary: "print the audit checkpoint of the last accepted manifest, signed by this hospital", run: runParticipantWitness},
	}},
	{name: "predict", summary: "score a CSV file's rows with an exported tabular model and the federation's scaling (verified first with -manifest and -key)", run: runPredict},
	{name: "privacy", summary: "differential-privacy accounting: epsilon, sigma, steps", sub: []*command{
		{name: "epsilon", summary: "(ε, δ) of T steps of the Poisson-subsampled Gaussian mechanism, or (-mechanism) of T releases of the distributed discrete Gaussian", run: runPrivacyEpsilon},
		{name: "sigma", summary: "the noise multiplier that keeps T steps within an (ε, δ) budget, or (-mechanism) each client's σ for T releases of the distributed discrete Gaussian", run: runPrivacySigma},
		{name: "steps", summary: "how many steps an (ε, δ) budget allows, or (-mechanism) how many releases of the distributed discrete Gaussian", run: runPrivacySteps},
	}},
	{name: "simulate", summary: "poisoning attacks against aggregation rules, in process (simulate grid: every pair)", run: runSimulate},
	{name: "version", summary: "which build this is: version, commit, Go toolchain (--json)", run: runVersion},
}
