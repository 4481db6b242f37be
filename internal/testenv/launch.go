package testenv

import (
	"errors"
	"syscall"

	"github.com/bufferd/bufferd/internal/freeport"
)

// Process is a program started by Launch, outside any test: it runs in a
// process group of its own (so that signals reach its children too), with its
// standard output and error appended to a log file, and it is killed when the
// launching program dies (Pdeathsig). It is what the test servers of this
// package run on, offered to drivers that fault processes (the chaos checker
// of bench/chaos).
type Process struct {
	p *process
}

// Launch starts bin with args and env (nil: the current environment),
// appending its output to logPath; it does not wait for the program to be
// ready.
func Launch(name, bin string, args, env []string, logPath string) (*Process, error) {
	p := &Process{p: &process{name: name, bin: bin, args: args, env: env, logPath: logPath}}
	if err := p.p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// Pid is the process id of the current (or last) run, 0 if never started.
func (p *Process) Pid() int { return p.p.pid() }

// Running reports whether the process runs (a stopped process runs).
func (p *Process) Running() bool { return p.p.running() }

// Exited returns a channel closed when the current run exits.
func (p *Process) Exited() <-chan struct{} { return p.p.exited() }

// Signal sends sig to the process and all its descendants; signalling a
// process that has exited fails.
func (p *Process) Signal(sig syscall.Signal) error { return p.p.signal(sig) }

// Kill sends SIGKILL to the process and its descendants and waits until it
// exited; killing a process that is not running does nothing.
func (p *Process) Kill() error { return p.p.kill() }

// Relaunch starts the program again with the same arguments, killing the
// current run first if it still runs.
func (p *Process) Relaunch() error {
	return errors.Join(p.p.kill(), p.p.start())
}

// LogTail returns the last lines of the process's log.
func (p *Process) LogTail() string { return p.p.logTail() }

// FreeLoopbackPort is FreePort for code that runs outside a test: a TCP port
// on 127.0.0.1 that was free a moment ago.
func FreeLoopbackPort() (int, error) { return freeport.Pick() }
