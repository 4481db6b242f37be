package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFencingPausedHolder pauses a client process holding a reservation past
// its TTL: another client must get the UTXO with a higher fence, and the paused
// holder's late extend, submit and release must all fail without touching the
// journal.
func TestFencingPausedHolder(t *testing.T) {
	s := startStack(t, stackConfig{APIs: 2, UTXOs: 3})
	target := s.hashes[1]

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		holderEnv+"=1",
		holderAPIEnv+"="+s.apis[0],
		holderPoolEnv+"="+strconv.FormatInt(s.pool, 10),
		holderHashEnv+"="+target,
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder := startProc(t, "holder", cmd)
	var oldID string
	var oldFence int64
	if _, err := fmt.Sscan(holder.waitOutput(t, "reserved ", 30*time.Second), &oldID, &oldFence); err != nil {
		t.Fatalf("holder's reservation: %v", err)
	}
	granted := time.Now()
	holder.signal(t, syscall.SIGSTOP)
	t.Logf("holder (pid %d) holds %s as %s, fence %d, ttl 2s; paused", cmd.Process.Pid, target[:12], oldID, oldFence)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// While the hold is live nobody else gets the UTXO.
	if r := reserve(ctx, s.apis[1], reserveReq{Pool: s.pool, Hashes: []string{target}, TTLSeconds: 60}); r.Status != http.StatusConflict {
		t.Fatalf("reserve of a held utxo: %s", r)
	}
	time.Sleep(time.Until(granted.Add(3 * time.Second))) // the paused holder's 3 s TTL runs out

	r := reserve(ctx, s.apis[1], reserveReq{Pool: s.pool, Hashes: []string{target}, TTLSeconds: 60, Owner: "successor"})
	if r.Err != nil || r.Status != http.StatusCreated || r.hash() != target {
		t.Fatalf("reserve after the paused holder's TTL: %s", r)
	}
	newID, newFence := r.Res.ID, r.Res.Fence
	if newFence <= oldFence {
		t.Fatalf("successor's fence %d is not above the paused holder's %d", newFence, oldFence)
	}
	t.Logf("successor %s got %s with fence %d", newID, target[:12], newFence)

	// Nothing but the holder may change the journal from here: the syncer is
	// paused too, and the rows must have settled.
	s.syncer.signal(t, syscall.SIGSTOP)
	defer func() { _ = s.syncer.cmd.Process.Signal(syscall.SIGCONT) }()
	before := stableSnapshot(t, s.dbURL)
	for _, id := range []string{oldID, newID} {
		if !slices.ContainsFunc(before, func(row string) bool { return strings.Contains(row, `"id":"`+id+`"`) }) {
			t.Fatalf("journal has no row for %s: %v", id, before)
		}
	}

	holder.signal(t, syscall.SIGCONT)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	var codes [3]int
	if _, err := fmt.Sscan(holder.waitOutput(t, "late-codes ", 30*time.Second), &codes[0], &codes[1], &codes[2]); err != nil {
		t.Fatalf("holder's late calls: %v", err)
	}
	t.Logf("paused holder's late extend, submit, release: %v", codes)
	for i, op := range []string{"extend", "submit", "release"} {
		if codes[i] != http.StatusGone && codes[i] != http.StatusNotFound {
			t.Errorf("late %s by the paused holder answered %d, want 410 or 404", op, codes[i])
		}
	}

	after := journalSnapshot(t, s.dbURL)
	if !slices.Equal(before, after) {
		t.Errorf("the paused holder's late calls changed the journal:\nbefore %v\nafter  %v", before, after)
	}
	// The successor still holds the UTXO.
	g := getReservation(ctx, s.apis[0], newID)
	if g.Status != http.StatusOK || g.Res.State != "held" || g.Res.Fence != newFence {
		t.Errorf("successor's reservation after the late calls: %s", g)
	}
	if o := getReservation(ctx, s.apis[0], oldID); o.Status != http.StatusOK || o.Res.State == "held" || o.Res.State == "submitted" {
		t.Errorf("paused holder's reservation after its TTL: %s", o)
	}
}

// stableSnapshot returns the journal once two snapshots 300 ms apart agree.
func stableSnapshot(t *testing.T, dbURL string) []string {
	t.Helper()
	prev := journalSnapshot(t, dbURL)
	for i := 0; i < 20; i++ {
		time.Sleep(300 * time.Millisecond) // the window a stable journal must hold still over
		cur := journalSnapshot(t, dbURL)
		if slices.Equal(prev, cur) {
			return cur
		}
		prev = cur
	}
	t.Fatalf("the journal keeps changing with no client acting: %v", prev)
	return nil
}
