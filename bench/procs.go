package bench

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Process groups of the CPU breakdown.
const (
	groupGenerator  = "load generator"
	groupRedis      = "redis-server"
	groupPGSessions = "postgres: the deployment's sessions"
	groupPGShared   = "postgres: WAL writer, checkpointer, vacuum"
	groupOther      = "everything else on the machine"
)

// procSnapshot is the CPU time (ticks) used so far by each process of the
// machine that belongs to a group, read from /proc (Linux; empty elsewhere).
type procSnapshot struct {
	at    time.Time
	ticks map[int]float64
	group map[int]string
}

// snapshotProcs reads the CPU time of the processes of every group; own
// names the deployment's processes by pid, database is its database's name
// (its PostgreSQL sessions show it in their title).
func snapshotProcs(own map[int]string, database string) procSnapshot {
	s := procSnapshot{at: time.Now(), ticks: map[int]float64{}, group: map[int]string{}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return s
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		g := own[pid]
		if pid == self {
			g = groupGenerator
		}
		if g == "" {
			g = classify(pid, database)
		}
		if g == "" {
			continue
		}
		if t, ok := procTicks(pid); ok {
			s.ticks[pid], s.group[pid] = t, g
		}
	}
	return s
}

// classify puts a process that is not the deployment's own in a group, or "".
func classify(pid int, database string) string {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	switch strings.TrimSpace(string(comm)) {
	case "redis-server":
		return groupRedis
	case "postgres":
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		title := string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
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

// procTicks is the user and system CPU time of pid.
func procTicks(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:] // the command name may hold spaces
	}
	f := strings.Fields(rest) // state ppid ... utime(12) stime(13)
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	return ut + st, err1 == nil && err2 == nil
}

// GroupCPU is the CPU one group of processes used, in cores.
type GroupCPU struct {
	Group string
	Cores float64
}

// cpuByGroup is the CPU each group used between a and b, busiest first; the
// rest of the machine's busy time (machine, in cores) is groupOther.
func cpuByGroup(a, b procSnapshot, machine float64) []GroupCPU {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 || len(b.ticks) == 0 {
		return nil
	}
	sums := map[string]float64{}
	for pid, t := range b.ticks {
		sums[b.group[pid]] += t - a.ticks[pid] // a process born in between counts whole
	}
	var out []GroupCPU
	total := 0.0
	for g, t := range sums {
		c := t / clockTicks / secs
		total += c
		out = append(out, GroupCPU{g, c})
	}
	if machine > 0 {
		out = append(out, GroupCPU{groupOther, max(machine-total, 0)})
	}
	slices.SortFunc(out, func(x, y GroupCPU) int {
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
