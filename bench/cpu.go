package bench

import (
	"fmt"
	"time"

	"github.com/prometheus/procfs"
)

// cpuSample is the CPU time the machine and this process have used so far,
// read from /proc (Linux, github.com/prometheus/procfs); ok is false elsewhere.
type cpuSample struct {
	at          time.Time
	busy, total float64 // machine, all CPUs, in seconds
	self        float64 // this process, in seconds
	ok          bool
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return s
	}
	stat, err1 := fs.Stat()
	self, err2 := fs.Self()
	if err1 != nil || err2 != nil {
		return s
	}
	ps, err := self.Stat()
	if err != nil {
		return s
	}
	c := stat.CPUTotal
	s.busy = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
	s.total = s.busy + c.Idle + c.Iowait
	s.self, s.ok = ps.CPUTime(), true
	return s
}

// cpuUse is how busy the CPUs were over a span, in cores.
type cpuUse struct {
	// Machine is the CPU time of everything on the machine per second.
	Machine float64
	// Generator is the load generator's own share.
	Generator float64
	// Groups is the machine's busy time by process group, busiest first.
	Groups []groupCPU
}

func cpuBetween(a, b cpuSample, cpus int) (cpuUse, bool) {
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || b.total <= a.total || secs <= 0 {
		return cpuUse{}, false
	}
	return cpuUse{
		Machine:   (b.busy - a.busy) / (b.total - a.total) * float64(cpus),
		Generator: (b.self - a.self) / secs,
	}, true
}

// loadAverage returns the 1, 5 and 15 minute load averages ("" when unknown).
func loadAverage() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ""
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%.2f %.2f %.2f", l.Load1, l.Load5, l.Load15)
}
