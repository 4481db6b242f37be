package loadgen

import (
	"testing"
	"time"
)

func TestHoldsFlagsAForgedDoubleGrant(t *testing.T) {
	t0 := time.Now()
	var h Holds
	a := h.Grant("u1", "a", t0)
	h.Release(a, t0.Add(10*time.Millisecond))
	h.Grant("u1", "b", t0.Add(11*time.Millisecond)) // after a's release was sent: fine
	c := h.Grant("u2", "c", t0)
	h.Release(c, t0.Add(10*time.Millisecond))
	if d := h.Duplicates(); len(d) != 0 {
		t.Fatalf("sequential holds flagged: %v", d)
	}
	h.Grant("u2", "forged", t0.Add(5*time.Millisecond)) // while c still held it
	if d := h.Duplicates(); len(d) != 1 {
		t.Fatalf("forged double grant: %v, want one", d)
	}
	h.Grant("u1", "forged2", t0.Add(time.Second)) // b never released
	if d := h.Duplicates(); len(d) != 2 {
		t.Fatalf("grant over an unreleased hold: %v, want two", d)
	}
}

func TestJournalDuplicatesFlagsOverlappingHolds(t *testing.T) {
	t0 := time.Now()
	rows := []JournalRow{
		{ID: "a", Fence: 1, Hashes: []string{"u1"}, State: "released", CreatedAt: t0, UpdatedAt: t0.Add(time.Second), ExpiresAt: t0.Add(time.Hour)},
		{ID: "b", Fence: 2, Hashes: []string{"u1"}, State: "expired", CreatedAt: t0.Add(time.Second), ExpiresAt: t0.Add(2 * time.Second)},
		{ID: "c", Fence: 3, Hashes: []string{"u1", "u2"}, State: "held", CreatedAt: t0.Add(2 * time.Second), ExpiresAt: t0.Add(time.Hour)},
	}
	if d := JournalDuplicates(rows, 5*time.Millisecond); len(d) != 0 {
		t.Fatalf("successive holders flagged: %v", d)
	}
	rows = append(rows, JournalRow{ID: "forged", Fence: 4, Hashes: []string{"u2"}, State: "held",
		CreatedAt: t0.Add(3 * time.Second), ExpiresAt: t0.Add(time.Hour)})
	if d := JournalDuplicates(rows, 5*time.Millisecond); len(d) != 1 {
		t.Fatalf("forged overlap: %v, want one", d)
	}
}

func TestSummaryQuantiles(t *testing.T) {
	var l Latencies
	for i := 1; i <= 1000; i++ {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	s := l.Summary()
	if s.Count != 1000 || s.P50 != 500*time.Millisecond || s.P99 != 990*time.Millisecond ||
		s.P999 != 999*time.Millisecond || s.Max != time.Second {
		t.Fatalf("summary %+v", s)
	}
	if (&Latencies{}).Summary() != (Summary{}) {
		t.Fatal("empty summary")
	}
}
