package metricsserver

import "github.com/fedguard/fedguard/aggregation/secagg"

// SecurePhases are the secure-aggregation phases, in order: the values of
// the phase label that the coordinator's and the participant's phase
// duration histograms both start at zero.
func SecurePhases() []secagg.Phase {
	return []secagg.Phase{
		secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseConsistencyCheck, secagg.PhaseUnmasking,
	}
}

// PhaseLabel is the phase label of a secure-aggregation phase, spelt the
// same by the coordinator and the participant so that one dashboard query
// joins them; "other" for anything else, so the label set stays bounded.
func PhaseLabel(p secagg.Phase) string {
	switch p {
	case secagg.PhaseAdvertiseKeys:
		return "advertise_keys"
	case secagg.PhaseShareKeys:
		return "share_keys"
	case secagg.PhaseMaskedInput:
		return "masked_input"
	case secagg.PhaseConsistencyCheck:
		return "consistency_check"
	case secagg.PhaseUnmasking:
		return "unmasking"
	}
	return "other"
}
