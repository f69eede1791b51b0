package coordinator

// StallAfter is stallAfter, for the external tests.
const StallAfter = stallAfter
