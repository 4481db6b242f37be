package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times.
const clockTicks = 100

// cpuSample is the CPU time the machine and this process have used so far,
// read from /proc (Linux); ok is false elsewhere.
type cpuSample struct {
	at          time.Time
	busy, total float64 // machine, all CPUs, in ticks
	self        float64 // this process, in ticks
	ok          bool
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	stat, err1 := os.ReadFile("/proc/stat")
	self, err2 := os.ReadFile("/proc/self/stat")
	if err1 != nil || err2 != nil {
		return s
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return s
	}
	for i, f := range fields[1:9] {
		v, _ := strconv.ParseFloat(f, 64)
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	// The command name may hold spaces: fields are counted after its ')'.
	rest := string(self)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	pf := strings.Fields(rest) // state ppid ... utime(12) stime(13)
	if len(pf) < 13 {
		return s
	}
	ut, _ := strconv.ParseFloat(pf[11], 64)
	st, _ := strconv.ParseFloat(pf[12], 64)
	s.self, s.ok = ut+st, true
	return s
}

// CPUUse is how busy the CPUs were over a span, in cores.
type CPUUse struct {
	// Machine is the CPU time of everything on the machine per second.
	Machine float64
	// Generator is the load generator's own share.
	Generator float64
	// Groups is the machine's busy time by process group, busiest first.
	Groups []GroupCPU
}

func cpuBetween(a, b cpuSample, cpus int) (CPUUse, bool) {
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || b.total <= a.total || secs <= 0 {
		return CPUUse{}, false
	}
	return CPUUse{
		Machine:   (b.busy - a.busy) / (b.total - a.total) * float64(cpus),
		Generator: (b.self - a.self) / clockTicks / secs,
	}, true
}

// loadAverage returns the 1, 5 and 15 minute load averages ("" when unknown).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
