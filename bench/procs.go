package bench

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Process groups of the CPU breakdown.
const (
	groupGenerator  = "load generator"
	groupRedis      = "redis-server"
	groupPGSessions = "postgres: the deployment's sessions"
	groupPGShared   = "postgres: WAL writer, checkpointer, vacuum"
	groupOther      = "everything else on the machine"
)

// procSnapshot is the CPU time (seconds) used so far by each process of the
// machine that belongs to a group, read from /proc (Linux, through
// github.com/prometheus/procfs; empty elsewhere).
type procSnapshot struct {
	at    time.Time
	secs  map[int]float64
	group map[int]string
}

// snapshotProcs reads the CPU time of the processes of every group; own
// names the deployment's processes by pid, database is its database's name
// (its PostgreSQL sessions show it in their title).
func snapshotProcs(own map[int]string, database string) procSnapshot {
	s := procSnapshot{at: time.Now(), secs: map[int]float64{}, group: map[int]string{}}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return s
	}
	all, err := fs.AllProcs()
	if err != nil {
		return s
	}
	self := os.Getpid()
	for _, p := range all {
		g := own[p.PID]
		if p.PID == self {
			g = groupGenerator
		}
		if g == "" {
			g = classify(p, database)
		}
		if g == "" {
			continue
		}
		if st, err := p.Stat(); err == nil {
			s.secs[p.PID], s.group[p.PID] = st.CPUTime(), g
		}
	}
	return s
}

// classify puts a process that is not the deployment's own in a group, or "".
func classify(p procfs.Proc, database string) string {
	comm, err := p.Comm()
	if err != nil {
		return ""
	}
	switch comm {
	case "redis-server":
		return groupRedis
	case "postgres":
		cmd, _ := p.CmdLine()
		title := strings.Join(cmd, " ") + " "
		switch {
		case database != "" && strings.Contains(title, " "+database+" "):
			return groupPGSessions
		case strings.Contains(title, "("), strings.Contains(title, "[local]"):
			return "" // a session of another database
		}
		return groupPGShared
	}
	return ""
}

// groupCPU is the CPU one group of processes used, in cores.
type groupCPU struct {
	Group string
	Cores float64
}

// cpuByGroup is the CPU each group used between a and b, busiest first; the
// rest of the machine's busy time (machine, in cores) is groupOther.
func cpuByGroup(a, b procSnapshot, machine float64) []groupCPU {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 || len(b.secs) == 0 {
		return nil
	}
	sums := map[string]float64{}
	for pid, t := range b.secs {
		sums[b.group[pid]] += t - a.secs[pid] // a process born in between counts whole
	}
	var out []groupCPU
	total := 0.0
	for g, t := range sums {
		c := t / secs
		total += c
		out = append(out, groupCPU{g, c})
	}
	if machine > 0 {
		out = append(out, groupCPU{groupOther, max(machine-total, 0)})
	}
	slices.SortFunc(out, func(x, y groupCPU) int {
		if x.Cores != y.Cores {
			if x.Cores > y.Cores {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Group, y.Group)
	})
	return out
}
