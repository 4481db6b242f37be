package testenv

import (
	"errors"
	"testing"
	"time"
)

// Eventually checks cond first at once, then after 10 ms, with the pause
// doubling up to 250 ms, until it returns nil, and fails the test with cond's
// last error if that has not happened within timeout. The timeout only
// bounds a failing test: a passing one returns as soon as cond holds. Call it
// from the test's goroutine.
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
	pause := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		time.Sleep(min(pause, left)) // the poll's pause: nothing to wait on but time
		pause = min(2*pause, 250*time.Millisecond)
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
