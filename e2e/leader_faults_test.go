package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/testenv"
)

// leaderTTL is the sync leadership lease of the leader fault test.
const leaderTTL = 2 * time.Second

// statusLeader is the leader of GET /v1/status.
type statusLeader struct {
	ID    string `json:"id"`
	Epoch int64  `json:"epoch"`
}

func currentLeader(ctx context.Context, api string) (statusLeader, error) {
	_, body, err := call(ctx, http.MethodGet, api+"/v1/status", nil)
	if err != nil {
		return statusLeader{}, err
	}
	var st struct {
		Leader *statusLeader `json:"leader"`
	}
	if err := json.Unmarshal(body, &st); err != nil || st.Leader == nil {
		return statusLeader{}, err
	}
	return *st.Leader, nil
}

// Three syncers follow the chain while two APIs serve a reserve/release
// workload; the leading syncer is killed with SIGKILL, then the next one is
// paused with SIGSTOP past its lease and resumed. Invariants 1-3 hold for the
// workload throughout (the APIs never depend on the syncer), and invariant 4:
// at every moment one leader with a growing epoch, the paused one's late
// writes refused, and the last leader's term owning the sync cursor.
func TestSyncLeaderKilledAndPausedUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a workload across syncer faults")
	}
	s := startStack(t, stackConfig{APIs: 2, UTXOs: faultUTXOs, Env: []string{
		"BUFFERD_LEADER_TTL=" + leaderTTL.String(), "BUFFERD_INSTANCE_ID=s1"}})
	syncers := map[string]*proc{"s1": s.syncer}
	for _, id := range []string{"s2", "s3"} {
		syncers[id] = startBufferd(t, id, append(s.env, "BUFFERD_INSTANCE_ID="+id), "syncer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leaderAfter := func(prev statusLeader) statusLeader {
		t.Helper()
		var l statusLeader
		testenv.Eventually(t, 30*time.Second, func() (err error) {
			if l, err = currentLeader(ctx, s.api(0)); err == nil && (l.ID == "" || l.ID == prev.ID || l.Epoch <= prev.Epoch) {
				err = fmt.Errorf("no new leader after %s (epoch %d): %+v", prev.ID, prev.Epoch, l)
			}
			return err
		})
		return l
	}
	first := leaderAfter(statusLeader{})

	w := startWorkload(s, faultClients, faultKeep)
	defer w.cancel()
	w.waitGrants(t, 0, 20)
	faultStart := w.now()

	syncers[first.ID].kill()
	second := leaderAfter(first)
	t.Logf("leader %s (epoch %d) killed: %s leads with epoch %d", first.ID, first.Epoch, second.ID, second.Epoch)

	paused := syncers[second.ID]
	paused.signal(t, syscall.SIGSTOP)
	third := leaderAfter(second)
	t.Logf("leader %s (epoch %d) paused: %s leads with epoch %d", second.ID, second.Epoch, third.ID, third.Epoch)
	time.Sleep(leaderTTL) // the fault lasts: paused a lease's length past its replacement
	paused.signal(t, syscall.SIGCONT)
	faultEnd := w.now()
	time.Sleep(2 * leaderTTL) // the resumed leader's stale term plays out: what it must not do has no event
	w.halt()
	t.Logf("syncer faults from %s to %s; reserves: %s; releases: %s", faultStart.Round(time.Millisecond),
		faultEnd.Round(time.Millisecond), statusCounts(w.reserves), statusCounts(w.releases))

	// The API does not depend on the syncer: every call succeeded.
	for _, a := range w.reserves {
		if a.Status != http.StatusCreated {
			t.Errorf("reserve sent at %s answered %d %s %s during syncer faults", a.Call, a.Status, a.Code, a.Err)
		}
	}
	for _, a := range w.releases {
		if a.Status != http.StatusOK {
			t.Errorf("release sent at %s answered %d %s %s during syncer faults", a.Call, a.Status, a.Code, a.Err)
		}
	}
	checkGrantsKnown(t, w)
	checkOneHolder(t, w.grants)
	checkFences(t, w.grants, faultStart, faultEnd)
	checkLiveAfter(t, s, w.grants)
	checkJournal(t, s, w.grants)

	// One writer: the third term still leads, the paused one stepped down,
	// and the pool's sync cursor belongs to the third term.
	if l, err := currentLeader(ctx, s.api(1)); err != nil || l.ID != third.ID || l.Epoch != third.Epoch {
		t.Fatalf("leader at the end: %+v, %v; want %s/%d", l, err, third.ID, third.Epoch)
	}
	if out := paused.output(); !strings.Contains(out, "stepping down") && !strings.Contains(out, "term ended") {
		t.Errorf("the paused leader never ended its term:\n%s", tail(out, 3000))
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var epoch int64
	if err := conn.QueryRow(ctx, `SELECT epoch FROM sync_cursors WHERE pool_id = $1 AND job = 'utxo'`, s.pool).Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	if epoch != third.Epoch {
		t.Errorf("the pool's sync cursor has epoch %d, want the last term's %d", epoch, third.Epoch)
	}
}
