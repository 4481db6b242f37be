package syncer

// Failures returns how many syncs of the pool failed in a row.
func (r *Runner) Failures(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state(id).failures
}
