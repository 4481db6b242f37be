package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/bufferd/bufferd/internal/freeport"
)

// AllowSkipEnv names the environment variable that, when set to 1, lets tests
// skip instead of fail when a server binary (redis-server, postgres, ...) is
// missing. CI leaves it unset so that a missing install step fails loudly.
const AllowSkipEnv = "TESTENV_ALLOW_SKIP"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a
// server process the test starts: one below the kernel's ephemeral range,
// which no outgoing connection can take before the process binds it (see
// internal/freeport).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// unavailable ends the test because something it needs is not installed: a
// skip when TESTENV_ALLOW_SKIP=1, a failure otherwise.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(AllowSkipEnv) == "1" {
		t.Skipf("testenv: %s (skipped: %s=1)", msg, AllowSkipEnv)
		return
	}
	t.Fatalf("testenv: %s; run scripts/ensure-services.sh to install it, or set %s=1 to skip", msg, AllowSkipEnv)
}

// missingError is what the launchers without a testing.TB return when a
// server binary is not installed; the test wrappers turn it into unavailable.
type missingError struct{ msg string }

func (e *missingError) Error() string { return "testenv: " + e.msg }

// fatalOrUnavailable ends the test with err: a skip or failure through
// unavailable when a binary is missing, a failure otherwise.
func fatalOrUnavailable(t testing.TB, err error) {
	t.Helper()
	var missing *missingError
	if errors.As(err, &missing) {
		unavailable(t, "%s", missing.msg)
		return
	}
	t.Fatal(err)
}

// process is one server process, run in its own process group so that signals
// reach its children too (PostgreSQL backends), with its output in a log file.
type process struct {
	name    string
	bin     string
	args    []string
	dir     string              // working directory
	logPath string              // stdout and stderr, appended across restarts
	cred    *syscall.Credential // nil: run as the current user
	env     []string            // nil: the current environment

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// start launches the process; it does not wait for it to be ready.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !closed(p.done) {
		return fmt.Errorf("testenv: %s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: %s log: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Kill the server if the test binary dies without running its
		// cleanups (a panic or a -timeout), so no server outlives it. Linux
		// ties this to the starting OS thread, which Go keeps alive unless a
		// goroutine exits while locked to it (runtime.LockOSThread).
		Pdeathsig:  syscall.SIGKILL,
		Credential: p.cred,
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("testenv: start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// running reports whether the process has been started and not yet exited.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !closed(p.done)
}

// exited returns a channel closed when the current process exits.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// pid is the process id of the current (or last) process, 0 if never started.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// signal sends sig to a running process, its process group and all its
// descendants (PostgreSQL's backends each run in a session of their own, so
// the process group alone does not reach them).
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || closed(p.done) {
		return fmt.Errorf("testenv: %s is not running", p.name)
	}
	if err := signalTree(p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("testenv: signal %v to %s: %w", sig, p.name, err)
	}
	return nil
}

// kill sends SIGKILL to the process and all its descendants and waits for the
// process to exit. Killing a process that is not running is a no-op.
func (p *process) kill() error {
	p.mu.Lock()
	if p.cmd == nil || closed(p.done) {
		p.mu.Unlock()
		return nil
	}
	pid, done := p.cmd.Process.Pid, p.done
	p.mu.Unlock()
	tree := descendants(pid)
	if err := signalTree(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("testenv: kill %s: %w", p.name, err)
	}
	deadline := time.After(10 * time.Second)
	select {
	case <-done:
	case <-deadline:
		return fmt.Errorf("testenv: %s (pid %d) did not exit after SIGKILL", p.name, pid)
	}
	// The children too: a postgres started again refuses to run while a
	// backend of the killed one still has its shared memory attached. (At
	// most 5 s: a pid may be reused by an unrelated process.)
	children := time.Now().Add(5 * time.Second)
	for _, c := range tree {
		for running(c) && time.Now().Before(children) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// running reports whether pid is a process that has not exited (a zombie,
// which no parent reaped yet, has).
func running(pid int) bool {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return false
	}
	st, err := p.Stat()
	return err == nil && st.State != "Z" && st.State != "X"
}

// signalTree sends sig to the process group led by pid and to every descendant
// of pid. Unless sig is SIGCONT, the leader is stopped first so that it cannot
// fork new children while they are being listed.
func signalTree(pid int, sig syscall.Signal) error {
	if sig != syscall.SIGCONT {
		if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
			return ignoreGone(err)
		}
	}
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, sig) // a child may have exited meanwhile
	}
	return ignoreGone(syscall.Kill(-pid, sig))
}

func ignoreGone(err error) error {
	if err == syscall.ESRCH {
		return nil
	}
	return err
}

// descendants lists the live descendants of pid, read from /proc.
func descendants(pid int) []int {
	all, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, p := range all {
		if st, err := p.Stat(); err == nil {
			children[st.PPID] = append(children[st.PPID], p.PID)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// interrupt sends sig to the process alone (not its group or children) and
// waits up to timeout for it to exit: PostgreSQL's postmaster shuts down its
// backends itself on SIGINT.
func (p *process) interrupt(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	if p.cmd == nil || closed(p.done) {
		p.mu.Unlock()
		return nil
	}
	pid, done := p.cmd.Process.Pid, p.done
	p.mu.Unlock()
	if err := ignoreGone(syscall.Kill(pid, sig)); err != nil {
		return fmt.Errorf("testenv: signal %v to %s: %w", sig, p.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("testenv: %s (pid %d) did not exit within %s of %v", p.name, pid, timeout, sig)
	}
}

// logTail returns the last few lines of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const tail = 2000
	if len(b) > tail {
		b = b[len(b)-tail:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// lookBinary finds an executable by name on PATH.
func lookBinary(name string) (string, bool) {
	p, err := exec.LookPath(name)
	return p, err == nil
}
