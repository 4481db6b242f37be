package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/freeport"
)

// postgresReadyTimeout bounds how long a private PostgreSQL may take to accept
// queries, crash recovery after a Kill included.
const postgresReadyTimeout = 30 * time.Second

// PostgresServer is a private PostgreSQL server (its own initdb'd data
// directory and postmaster on a loopback port) owned by one test. Its methods
// call t.Fatal on failure, so call them from the test's goroutine. A server
// from LaunchPostgres has no test: use its methods that return errors
// (Crash, Shutdown, Pause, Resume, Relaunch, Close).
type PostgresServer struct {
	t    testing.TB
	port int
	proc *process
	// owned is the directory Close removes (LaunchPostgres's servers only).
	owned string
}

// StartPostgres initialises a data directory in a fresh temporary directory and
// starts a postgres on a free 127.0.0.1 port with durability off (fsync,
// full_page_writes and synchronous_commit), trust authentication and superuser
// postgres, then waits until it accepts queries. When the test ends the server
// is killed and the directory removed. Binaries are looked up on PATH, then in
// /usr/lib/postgresql/*/bin (newest version first). As root, initdb and postgres
// run as the postgres OS user. Without the binaries the test fails, or is
// skipped when TESTENV_ALLOW_SKIP=1.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	s, err := launchPostgres(func(d string) {
		t.Cleanup(func() {
			if err := os.RemoveAll(d); err != nil {
				t.Errorf("testenv: remove %s: %v", d, err)
			}
		})
	}, func(s *PostgresServer) {
		t.Cleanup(func() {
			if err := s.proc.kill(); err != nil {
				t.Error(err)
			}
		})
	})
	if err != nil {
		fatalOrUnavailable(t, err)
		return nil
	}
	s.t = t
	return s
}

// LaunchPostgres is StartPostgres for code that runs outside a test (the
// chaos checker): the same server, returned once it accepts queries. The
// caller ends it with Close, which also removes its directory.
func LaunchPostgres() (*PostgresServer, error) {
	var dir string
	s, err := launchPostgres(func(d string) { dir = d }, func(*PostgresServer) {})
	if err != nil {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	s.owned = dir
	return s, nil
}

// launchPostgres initialises a data directory and starts postgres on it,
// trying a few ports; made is called with the directory once created,
// started with each server process started.
func launchPostgres(made func(dir string), started func(*PostgresServer)) (*PostgresServer, error) {
	binDir, ok := postgresBinDir()
	if !ok {
		return nil, &missingError{msg: "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin"}
	}
	cred, ok := postgresCredential()
	if !ok {
		return nil, &missingError{msg: "running as root and there is no postgres OS user to run initdb and postgres as"}
	}

	dir, err := os.MkdirTemp(tempBase(cred != nil), "testenv-pg-")
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres temp dir: %w", err)
	}
	made(dir)
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("testenv: chown %s: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := copyInitialData(binDir, cred, data); err != nil {
		return nil, err
	}

	var lastErr error
	// A port chosen by FreePort may be taken before postgres binds it; try a
	// few ports before giving up.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freeport.Pick()
		if err != nil {
			return nil, err
		}
		s := &PostgresServer{port: port, proc: &process{
			name: fmt.Sprintf("postgres :%d", port),
			bin:  filepath.Join(binDir, "postgres"),
			args: []string{
				"-D", data,
				"-p", strconv.Itoa(port),
				"-k", dir,
				"-c", "listen_addresses=127.0.0.1",
				"-c", "fsync=off",
				"-c", "full_page_writes=off",
				"-c", "synchronous_commit=off",
			},
			dir:     dir,
			logPath: filepath.Join(dir, "postgres.log"),
			cred:    cred,
		}}
		if err := s.proc.start(); err != nil {
			return nil, err
		}
		started(s)
		err = s.waitReady()
		if err == nil {
			return s, nil
		}
		lastErr = err
		_ = s.proc.kill()
		if !strings.Contains(s.proc.logTail(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

// initialData is a data directory fresh from initdb, made once per process
// and copied for each server: a copy takes a fraction of initdb's time.
var initialData struct {
	once sync.Once
	dir  string // holds data/
	err  error
}

// copyInitialData copies the process's fresh data directory (initdb'd on
// first use) to data, keeping owners and modes. Outside a test binary (the
// chaos checker run by `bufferd bench chaos`), which has no TestMain to
// remove the copy's source, it runs initdb on data instead.
func copyInitialData(binDir string, cred *syscall.Credential, data string) error {
	if !testing.Testing() {
		return initdb(filepath.Join(binDir, "initdb"), data, filepath.Dir(data), cred)
	}
	initialData.once.Do(func() {
		dir, err := os.MkdirTemp(tempBase(cred != nil), "testenv-pg-initdb-")
		if err != nil {
			initialData.err = fmt.Errorf("testenv: postgres temp dir: %w", err)
			return
		}
		initialData.dir = dir
		if cred != nil {
			if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
				initialData.err = fmt.Errorf("testenv: chown %s: %w", dir, err)
				return
			}
		}
		initialData.err = initdb(filepath.Join(binDir, "initdb"), filepath.Join(dir, "data"), dir, cred)
	})
	if initialData.err != nil {
		return initialData.err
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(initialData.dir, "data"), data).CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: copy the initial data directory: %w\n%s", err, out)
	}
	return nil
}

// removeInitialData removes the process's fresh data directory.
func removeInitialData() {
	if initialData.dir != "" {
		_ = os.RemoveAll(initialData.dir)
	}
}

func initdb(bin, data, cwd string, cred *syscall.Credential) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = cwd
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: initdb: %w\n%s", err, out)
	}
	return nil
}

// postgresBinDir returns a directory holding both initdb and postgres: that of
// the binaries on PATH (symlinks resolved), else the newest
// /usr/lib/postgresql/VERSION/bin.
func postgresBinDir() (string, bool) {
	var dirs []string
	for _, name := range []string{"postgres", "initdb"} {
		if p, err := exec.LookPath(name); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				p = r
			}
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool {
		return versionLess(filepath.Base(filepath.Dir(versioned[j])), filepath.Base(filepath.Dir(versioned[i])))
	})
	dirs = append(dirs, versioned...)
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "postgres")) {
			return d, true
		}
	}
	return "", false
}

// versionLess compares dotted numeric versions ("9.6" < "15").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.Atoi(as[i])
		y, _ := strconv.Atoi(bs[i])
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// postgresCredential returns nil when not root (run as the current user), the
// postgres OS user's credential as root, and false if that user is missing.
func postgresCredential() (*syscall.Credential, bool) {
	if os.Geteuid() != 0 {
		return nil, true
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, false
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, true
}

// tempBase is the directory to create the server's directory in: os.TempDir,
// unless another user must reach it and some parent is not searchable by
// others, then /tmp.
func tempBase(otherUser bool) string {
	base := os.TempDir()
	if !otherUser {
		return base
	}
	for d := base; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// waitReady polls a connection and SELECT 1 until they work or postgres exits.
func (s *PostgresServer) waitReady() error {
	return waitUntil(postgresReadyTimeout, s.proc, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, s.URL()+"&connect_timeout=1")
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(context.Background()) }()
		_, err = conn.Exec(ctx, "SELECT 1")
		return err
	})
}

// Addr is the server's host:port (127.0.0.1:PORT).
func (s *PostgresServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is an admin URL: superuser postgres, database postgres, no TLS. Pass it
// to CreateDatabase for a fresh database on this server.
func (s *PostgresServer) URL() string {
	return "postgres://postgres@" + s.Addr() + "/postgres?sslmode=disable"
}

// Pid is the process id of the current postmaster.
func (s *PostgresServer) Pid() int { return s.proc.pid() }

// Kill sends SIGKILL to the postmaster and all its backends and waits until the
// postmaster has exited; killing a server that is not running does nothing.
func (s *PostgresServer) Kill() {
	s.t.Helper()
	if err := s.Crash(); err != nil {
		s.t.Fatal(err)
	}
}

// Stop pauses the postmaster and all its backends with SIGSTOP: connections are
// accepted by the kernel but nothing answers until Cont.
func (s *PostgresServer) Stop() {
	s.t.Helper()
	if err := s.Pause(); err != nil {
		s.t.Fatal(err)
	}
}

// Cont resumes a server paused by Stop with SIGCONT.
func (s *PostgresServer) Cont() {
	s.t.Helper()
	if err := s.Resume(); err != nil {
		s.t.Fatal(err)
	}
}

// Restart starts postgres again on the same port and data directory (a server
// still running is killed first) and waits until it accepts queries, after
// crash recovery. Data committed before a CHECKPOINT survives; with durability
// off, the last commits before a Kill may not.
func (s *PostgresServer) Restart() {
	s.t.Helper()
	if err := s.Relaunch(); err != nil {
		s.t.Fatal(err)
	}
}

// Crash is Kill returning its error.
func (s *PostgresServer) Crash() error { return s.proc.kill() }

// shutdownTimeout bounds a fast shutdown.
const shutdownTimeout = 30 * time.Second

// Shutdown stops the server cleanly, as pg_ctl stop -m fast does: SIGINT to
// the postmaster, which rolls back open transactions, disconnects every
// client and writes a checkpoint, so every committed transaction survives.
// It waits until the postmaster exited; Relaunch starts it again.
func (s *PostgresServer) Shutdown() error { return s.proc.interrupt(syscall.SIGINT, shutdownTimeout) }

// Pause is Stop returning its error.
func (s *PostgresServer) Pause() error { return s.proc.signal(syscall.SIGSTOP) }

// Resume is Cont returning its error.
func (s *PostgresServer) Resume() error { return s.proc.signal(syscall.SIGCONT) }

// Relaunch is Restart returning its error; after Shutdown it starts the
// server again without a crash recovery.
func (s *PostgresServer) Relaunch() error {
	if err := s.proc.kill(); err != nil {
		return err
	}
	if err := s.proc.start(); err != nil {
		return err
	}
	return s.waitReady()
}

// Running reports whether the postmaster runs (paused or not).
func (s *PostgresServer) Running() bool { return s.proc.running() }

// Close kills a server from LaunchPostgres and removes its directory.
func (s *PostgresServer) Close() error {
	err := s.proc.kill()
	if s.owned != "" {
		err = errors.Join(err, os.RemoveAll(s.owned))
	}
	return err
}
