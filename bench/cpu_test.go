package bench

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCPUReadingsFromProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	a, pa := sampleCPU(), snapshotProcs(nil, "")
	spins := 0 // burn some CPU
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
		spins++
	}
	b, pb := sampleCPU(), snapshotProcs(nil, "")
	use, ok := cpuBetween(a, b, runtime.NumCPU())
	// The machine may be shared: only the ranges are sure.
	if !ok || use.Generator <= 0 || use.Generator > float64(runtime.NumCPU())+0.5 || use.Machine <= 0 ||
		use.Machine > float64(runtime.NumCPU())+0.5 {
		t.Errorf("CPU use over a busy 200 ms: %+v (ok %v), want the generator above 0, both at most the CPUs", use, ok)
	}
	if pb.group[os.Getpid()] != groupGenerator || pb.secs[os.Getpid()] <= pa.secs[os.Getpid()] {
		t.Errorf("this process: group %q, %v s then %v s", pb.group[os.Getpid()], pa.secs[os.Getpid()], pb.secs[os.Getpid()])
	}
	if groups := cpuByGroup(pa, pb, use.Machine); !slices.ContainsFunc(groups, func(g groupCPU) bool {
		return g.Group == groupGenerator && g.Cores > 0
	}) {
		t.Errorf("groups %+v, want the load generator's", groups)
	}
	if f := strings.Fields(loadAverage()); len(f) != 3 {
		t.Errorf("load average %q", loadAverage())
	}
}
