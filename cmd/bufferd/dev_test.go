package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
)

// The banner of `bufferd dev` names the status page, the docs and the
// metrics, and its copy-paste commands work as printed.
func TestDevBannerCommandsWork(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := start(t, nil, "dev", "--data", t.TempDir(), "--addr", addr,
		"--chain-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	p.waitLine(t, "bufferd dev is ready", 30*time.Second)
	var banner string
	p.waitOutput(t, "the banner's two commands", 5*time.Second, func() bool {
		banner = p.output()
		return len(bannerCommands(banner)) == 2 // each complete up to its last line
	})
	api := "http://" + addr
	for _, want := range []string{"status page      " + api + "/", api + "/docs", api + "/metrics", "demo pool        id 1: 24 UTXOs"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	cmds := bannerCommands(banner)
	want := []string{`"state":"held"`, `"code":200`}
	for i, c := range cmds {
		out, err := exec.Command("sh", "-c", c).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want[i]) {
			t.Errorf("%s\n=> %v %s, want %s", c, err, out, want[i])
		}
	}
}

// bannerCommands returns the banner's shell commands, each joined from its
// continuation lines.
func bannerCommands(banner string) []string {
	var cmds []string
	cur := ""
	for _, l := range strings.Split(banner, "\n") {
		l = strings.TrimSpace(l)
		if cur == "" && !strings.HasPrefix(l, "curl ") {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		cmds = append(cmds, cur+l)
		cur = ""
	}
	return cmds
}

// A second copy on the same ports names the API's address (the one a user
// chose, not the chain's) and leaves its data directory alone.
func TestDevOnATakenPortSaysWhichAndTouchesNothing(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	data := filepath.Join(t.TempDir(), "data")
	out, err := exec.Command(binary, "dev", "--data", data, "--addr", taken.Addr().String(),
		"--chain-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))).CombinedOutput()
	if err == nil {
		t.Fatalf("dev started on a taken port:\n%s", out)
	}
	if !strings.Contains(string(out), "api listen address "+taken.Addr().String()) || !strings.Contains(string(out), "already in use") {
		t.Errorf("error does not name the API address %s:\n%s", taken.Addr(), out)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory was created (%v)", err)
	}
}
