package secagg

// Phases are the protocol's phases, in order: the values of the phase label
// that the coordinator's and the participant's phase duration histograms
// both start at zero.
func Phases() []Phase {
	return []Phase{
		PhaseAdvertiseKeys, PhaseShareKeys, PhaseMaskedInput, PhaseConsistencyCheck, PhaseUnmasking,
	}
}

// PhaseLabel is the phase label of a secure-aggregation phase, spelt the
// same by the coordinator and the participant so that one dashboard query
// joins them; "other" for anything else, so the label set stays bounded.
func PhaseLabel(p Phase) string {
	switch p {
	case PhaseAdvertiseKeys:
		return "advertise_keys"
	case PhaseShareKeys:
		return "share_keys"
	case PhaseMaskedInput:
		return "masked_input"
	case PhaseConsistencyCheck:
		return "consistency_check"
	case PhaseUnmasking:
		return "unmasking"
	}
	return "other"
}
