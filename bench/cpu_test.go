package bench

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCPUReadingsFromProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	a, pa := sampleCPU(), snapshotProcs(nil, "")
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); { // burn some CPU
	}
	b, pb := sampleCPU(), snapshotProcs(nil, "")
	use, ok := cpuBetween(a, b, runtime.NumCPU())
	if !ok || use.Generator < 0.2 || use.Generator > float64(runtime.NumCPU())+0.5 || use.Machine < use.Generator*0.5 {
		t.Errorf("CPU use over a busy 200 ms: %+v (ok %v), want the generator near one core", use, ok)
	}
	if pb.group[os.Getpid()] != groupGenerator || pb.secs[os.Getpid()] <= pa.secs[os.Getpid()] {
		t.Errorf("this process: group %q, %v s then %v s", pb.group[os.Getpid()], pa.secs[os.Getpid()], pb.secs[os.Getpid()])
	}
	groups := cpuByGroup(pa, pb, use.Machine)
	if len(groups) == 0 || groups[0].Group != groupGenerator && groups[0].Group != groupOther {
		t.Errorf("groups %+v", groups)
	}
	if f := strings.Fields(loadAverage()); len(f) != 3 {
		t.Errorf("load average %q", loadAverage())
	}
}
