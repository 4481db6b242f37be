package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
)

// The APIs (and the syncer) reach Redis through a TCP proxy that adds
// latency, drops every connection several times and refuses connections for
// a while, under a reserve/release workload: nothing is granted twice,
// fences grow, every acknowledged reservation is in the journal and reads
// back, answers are 201/200 or a clean 503, and service resumes by itself.
func TestRedisLatencyAndDroppedConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a workload across network faults")
	}
	srv := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, srv.Addr())
	s := startStack(t, stackConfig{APIs: 2, UTXOs: faultUTXOs, RedisURL: "redis://" + proxy.Addr() + "/0"})
	w := startWorkload(s, faultClients, faultKeep)
	defer w.cancel()
	w.waitGrants(t, 0, 20)

	// The faults last, each a while: the sleeps are their length.
	faultStart := w.now()
	proxy.SetLatency(20 * time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	dropped := 0
	for range 3 {
		dropped += proxy.DropAll()
		time.Sleep(300 * time.Millisecond)
	}
	proxy.SetLatency(0)
	proxy.Refuse(true)
	dropped += proxy.DropAll()
	time.Sleep(time.Second)
	proxy.Refuse(false)
	faultEnd := w.now()
	recovered, ok := w.firstGrantAfter(faultEnd, recoveryLimit)
	if ok {
		w.waitGrants(t, faultEnd, 20)
	}
	w.halt()
	t.Logf("faults from %s to %s (%d connections dropped); reserves: %s; releases: %s", faultStart.Round(time.Millisecond),
		faultEnd.Round(time.Millisecond), dropped, statusCounts(w.reserves), statusCounts(w.releases))
	if !ok {
		t.Fatalf("no reserve was granted within %s after the faults ended", recoveryLimit)
	}
	t.Logf("first grant %s after the faults ended", (recovered - faultEnd).Round(time.Millisecond))
	checkFaultAnswers(t, w, faultStart, faultEnd, nil)
	checkOneHolder(t, w.grants)
	checkFences(t, w.grants, faultStart, faultEnd)
	checkLiveAfter(t, s, w.grants)
	checkJournal(t, s, w.grants)
}

// One of three APIs is killed with SIGKILL while requests are in flight, then
// restarted: the clients of the dead one see transport errors only, nothing
// is granted twice, every acknowledged grant is in the journal, and a grant
// whose answer was lost is at worst a held journal row that expires.
func TestAPIKilledMidRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a workload across an API crash")
	}
	// The sweep writes the releases a killed API answered but did not
	// journal.
	s := startStack(t, stackConfig{APIs: 3, UTXOs: faultUTXOs, Env: []string{"BUFFERD_SWEEP_INTERVAL=" + faultSweep.String()}})
	w := startWorkload(s, 3*faultClients, faultKeep)
	defer w.cancel()
	w.waitGrants(t, 0, 20)

	faultStart := w.now()
	victim := s.apiProcs[1]
	victim.signal(t, syscall.SIGKILL)
	<-victim.done
	time.Sleep(time.Second) // the fault lasts: the API stays dead that long
	addr := strings.TrimPrefix(s.apis[1], "http://")
	s.apiProcs[1] = startBufferd(t, "api1-restarted", s.env, "api", "--addr", addr)
	waitHTTP(t, s.apis[1]+"/readyz", 30*time.Second, s.apiProcs[1])
	faultEnd := w.now()
	w.waitGrants(t, faultEnd, 20)
	w.halt()
	t.Logf("api killed at %s, back at %s; reserves: %s; releases: %s", faultStart.Round(time.Millisecond),
		faultEnd.Round(time.Millisecond), statusCounts(w.reserves), statusCounts(w.releases))

	lost, dry := 0, 0
	for _, a := range append(append([]attempt(nil), w.reserves...), w.releases...) {
		if a.Status == http.StatusConflict && a.Code == "no_utxo_available" {
			// A normal answer: the grants whose answers died with the
			// process hold their UTXOs until they expire, and clients whose
			// releases failed reserved more meanwhile, so the pool can run dry.
			dry++
			continue
		}
		switch a.Status {
		// A release answers 200, also when retried after its first try
		// died with the process and took effect (release is idempotent);
		// 410 would mean it ended otherwise, and nothing here expires.
		case http.StatusCreated, http.StatusOK:
		case 0: // the connection died with the process, or it was down
			lost++
			if a.Ret < faultStart || a.Call > faultEnd {
				t.Errorf("transport error outside the crash window: call %s: %s", a.Call, a.Err)
			}
		default:
			t.Errorf("call at %s answered %d %s %s", a.Call, a.Status, a.Code, a.Err)
		}
	}
	t.Logf("%d calls lost with the killed process; %d reserves found the pool empty", lost, dry)
	if lost == 0 {
		t.Error("no call was lost: the kill hit no request in flight")
	}
	checkGrantsKnown(t, w)
	checkOneHolder(t, w.grants)
	checkFences(t, w.grants, faultStart, faultEnd)
	checkLiveAfter(t, s, w.grants)
	checkJournal(t, s, w.grants)
}
