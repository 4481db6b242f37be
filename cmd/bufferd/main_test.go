package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
)

// binary is the bufferd executable the tests run as real processes.
var binary string

func TestMain(m *testing.M) {
	bin, remove, err := testenv.BuildBufferd("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	remove()
	os.Exit(testenv.AfterTests(code))
}

// proc is a bufferd process started by a test.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	seen   int           // how much of out waitLine has matched past
	grew   chan struct{} // signalled after each line is appended to out
	exited chan error
}

// start runs bufferd with args and env; it is killed when the test ends.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{grew: make(chan struct{}, 1), exited: make(chan error, 1)}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout = pw
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.grew <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		_ = pw.Close()
		p.exited <- err
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("output of bufferd %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitLine waits until the process prints, after the line the previous
// waitLine matched, a line containing s.
func (p *proc) waitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	p.waitOutput(t, "a line containing "+strconv.Quote(s), timeout, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		rest := p.out.String()[p.seen:]
		i := strings.Index(rest, s)
		if i < 0 {
			return false
		}
		p.seen += i + strings.IndexByte(rest[i:], '\n') + 1 // out holds whole lines
		return true
	})
}

// waitOutput waits until done, checked after each line the process prints,
// returns true.
func (p *proc) waitOutput(t *testing.T, what string, timeout time.Duration, done func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	for !done() {
		select {
		case <-p.grew:
		case err := <-p.exited:
			p.exited <- err // for stop and for a later wait
			t.Fatalf("bufferd exited (%v) before printing %s:\n%s", err, what, p.output())
		case <-deadline:
			t.Fatalf("bufferd did not print %s within %s:\n%s", what, timeout, p.output())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("bufferd exited with %v:\n%s", err, p.output())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("bufferd did not stop on SIGTERM:\n%s", p.output())
	}
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// envelope is the legacy response body.
type envelope struct {
	Code   int    `json:"code"`
	Msg    string `json:"msg"`
	Result struct {
		Data  json.RawMessage `json:"data"`
		Links struct {
			Next string `json:"next"`
		} `json:"_links"`
	} `json:"result"`
}

type legacyUTXO struct {
	Hash   string `json:"hash"`
	Asset  string `json:"asset"`
	Amount int64  `json:"amount"`
}

func postJSON(t *testing.T, url string, body any, header ...string) []byte {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	return out
}

func legacy(t *testing.T, url string, body any) envelope {
	t.Helper()
	var e envelope
	raw := postJSON(t, url, body)
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("%s: %v: %s", url, err, raw)
	}
	return e
}

func listUTXOs(t *testing.T, api, order string, limit int) []legacyUTXO {
	t.Helper()
	var e envelope
	// A pool just registered is briefly "restoring its state" until loaded.
	testenv.Eventually(t, 5*time.Second, func() error {
		e = legacy(t, fmt.Sprintf("%s/dapp/list-utxos?limit=%d", api, limit), map[string]any{
			"asset": demoAsset, "program": demoProgram, "sort": map[string]string{"by": "amount", "order": order},
		})
		if strings.HasPrefix(e.Msg, "service is restoring") {
			return fmt.Errorf("list-utxos: %+v", e)
		}
		return nil
	})
	if e.Code != 200 {
		t.Fatalf("list-utxos: %+v", e)
	}
	var us []legacyUTXO
	if err := json.Unmarshal(e.Result.Data, &us); err != nil {
		t.Fatal(err)
	}
	return us
}

func TestHelpExplainsEverySubcommandAndVariable(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, s := range []string{"api", "syncer", "migrate", "dev", "simchain", "version",
		"BUFFERD_DATABASE_URL", "BUFFERD_REDIS_URL", "BUFFERD_CHAIN_URL", "BUFFERD_CHAIN_KIND", "BUFFERD_ADMIN_TOKEN", "BUFFERD_ADDR", "redis+sentinel://"} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("--help does not mention %s", s)
		}
	}
	out, err = exec.Command(binary, "version").CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte("bufferd ")) {
		t.Fatalf("version: %v %s", err, out)
	}
	if err := exec.Command(binary, "nosuchcommand").Run(); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
}

func TestDevServesTheDemoPoolAndSurvivesARestart(t *testing.T) {
	data := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	chainAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	api := "http://" + addr
	for run := 1; run <= 2; run++ {
		began := time.Now()
		p := start(t, nil, "dev", "--data", data, "--addr", addr, "--chain-addr", chainAddr)
		p.waitLine(t, "bufferd dev is ready", 30*time.Second)
		t.Logf("run %d: ready after %s (race detector on)", run, time.Since(began).Round(time.Millisecond))

		desc := listUTXOs(t, api, "desc", 100)
		if len(desc) < 20 {
			t.Fatalf("run %d: demo pool lists %d utxos, want at least 20", run, len(desc))
		}
		for i := 1; i < len(desc); i++ {
			if desc[i-1].Amount < desc[i].Amount {
				t.Fatalf("run %d: not descending: %v", run, desc)
			}
		}
		asc := listUTXOs(t, api, "asc", 100)
		if len(asc) != len(desc) || asc[0] != desc[len(desc)-1] {
			t.Fatalf("run %d: asc is not desc reversed", run)
		}
		req, _ := http.NewRequest(http.MethodHead, api+"/dapp", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("run %d: HEAD /dapp: %v %v", run, resp, err)
		}
		_ = resp.Body.Close()

		e := legacy(t, api+"/dapp/update-utxo", map[string]string{"hash": desc[0].Hash})
		if e.Code != 200 {
			t.Fatalf("run %d: update-utxo: %+v", run, e)
		}
		for _, u := range listUTXOs(t, api, "desc", 100) {
			if u.Hash == desc[0].Hash {
				t.Fatalf("run %d: locked utxo still listed", run)
			}
		}
		p.stop(t)
	}
}

func TestProcessesShareOneRedisAndPostgres(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts several processes")
	}
	ctx := context.Background()
	_ = ctx
	dbURL := testenv.Postgres(t)
	_, prefix := testenv.Redis(t)
	chainAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := []string{
		"BUFFERD_DATABASE_URL=" + dbURL,
		"BUFFERD_REDIS_URL=" + testenv.RedisURL(),
		"BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_CHAIN_URL=http://" + chainAddr,
		"BUFFERD_ADMIN_TOKEN=s3cret",
		"BUFFERD_SYNC_INTERVAL=200ms",
		"BUFFERD_METRICS_ADDR=127.0.0.1:0",
		"BUFFERD_DATABASE_MAX_CONNS=4",
	}

	// Several replicas migrating at once must all succeed.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(binary, "migrate", "up")
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent migrate up: %v", err)
	}

	sim := start(t, env, "simchain", "--seed", "--addr", chainAddr)
	sim.waitLine(t, "simulated chain listening", 20*time.Second)
	var apis []string
	for i := 0; i < 3; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		start(t, env, "api", "--addr", addr)
		apis = append(apis, "http://"+addr)
	}
	for _, a := range apis {
		waitHTTP(t, a+"/readyz", 20*time.Second)
	}
	// The pool is registered through one replica with the admin token.
	e := legacy(t, apis[0]+"/dapp/update-base", map[string]string{"asset": demoAsset, "program": demoProgram})
	if e.Code != 300 {
		t.Fatalf("update-base without a token: %+v", e)
	}
	raw := postJSON(t, apis[1]+"/dapp/update-base", map[string]string{"asset": demoAsset, "program": demoProgram},
		"Authorization", "Bearer s3cret")
	if !bytes.Contains(raw, []byte(`"code":200`)) {
		t.Fatalf("update-base: %s", raw)
	}
	syncer := start(t, env, "syncer")
	var free []legacyUTXO
	testenv.Eventually(t, 20*time.Second, func() error {
		if free = listUTXOs(t, apis[2], "desc", 100); len(free) != len(demoAmounts()) {
			return fmt.Errorf("syncer made %d utxos available, want %d", len(free), len(demoAmounts()))
		}
		return nil
	})

	// 50 concurrent locks of one UTXO spread over three API processes: one wins.
	target := free[3].Hash
	codes := make(chan envelope, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			codes <- legacy(t, apis[i%3]+"/dapp/update-utxo", map[string]string{"hash": target})
		}(i)
	}
	wg.Wait()
	close(codes)
	won := 0
	for e := range codes {
		switch {
		case e.Code == 200:
			won++
		case e.Code == 300 && e.Msg == "utxo is locked":
		default:
			t.Errorf("unexpected answer %+v", e)
		}
	}
	if won != 1 {
		t.Fatalf("%d of 50 concurrent update-utxo won, want exactly 1", won)
	}
	for _, a := range apis {
		for _, u := range listUTXOs(t, a, "desc", 100) {
			if u.Hash == target {
				t.Fatalf("%s still lists the locked utxo", a)
			}
		}
	}
	syncer.stop(t)
	sim.stop(t)
}
