package coordinator

// FailCommits makes c's next n round commits fail before they write, as
// a crash between recording a round's close in the audit log and
// committing it would leave the files.
func FailCommits(c *Coordinator, n int, err error) {
	c.store.(*store).failCommit = func() error {
		if n == 0 {
			return nil
		}
		n--
		return err
	}
}

// BeforeCommit runs f once, just before c's next round commit writes: the
// moment after the round's close, checkpoint and manifest are in the
// audit log and before state.db holds the round.
func BeforeCommit(c *Coordinator, f func()) {
	c.store.(*store).failCommit = func() error {
		if f != nil {
			g := f
			f = nil
			g()
		}
		return nil
	}
}
