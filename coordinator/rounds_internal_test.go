package coordinator

import "testing"

// TestRoundsNotAheadOfInstalled: a round whose close is committed to the
// store but not yet installed (the close relocks c.mu to install it) is
// not listed by Rounds. Before, Rounds read the store alone, and a test
// that waited for it asked GetManifest for a round the coordinator still
// called unclosed ("round 1 has no manifest (last closed round: 0)").
func TestRoundsNotAheadOfInstalled(t *testing.T) {
	s := newMemStore()
	if err := s.saveInitial([]byte("model 0")); err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{store: s}
	if err := s.commitRound(record(1, []byte("model 1")), []byte("model 1"), []byte("manifest 1"), 2); err != nil {
		t.Fatal(err)
	}
	recs, err := c.Rounds()
	if err != nil || len(recs) != 0 {
		t.Fatalf("committed, not installed: Rounds = %d records, %v; want none", len(recs), err)
	}
	c.lastRound = 1 // installed
	recs, err = c.Rounds()
	if err != nil || len(recs) != 1 || recs[0].Round != 1 {
		t.Fatalf("installed: Rounds = %+v, %v; want round 1", recs, err)
	}
}
