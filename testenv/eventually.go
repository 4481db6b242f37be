package testenv

import (
	"errors"
	"testing"
	"time"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 10 * time.Millisecond

// Eventually calls cond every 10 ms until it returns nil, and fails the test
// with cond's last error if that has not happened within timeout. The
// timeout only bounds a failing test: a passing one returns as soon as cond
// holds. Call it from the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("not within %s: %v", timeout, err)
	}
}

// Poll is Eventually for code outside a test's goroutine: it returns nil once
// cond does, or cond's last error when timeout has passed.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		<-tick.C
	}
}

// errNotYet is what Is returns for false.
var errNotYet = errors.New("condition not met")

// Is adapts a boolean condition to Eventually: Eventually(t, d, Is(f)).
func Is(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}
}
