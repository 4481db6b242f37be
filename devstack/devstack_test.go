package devstack_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/devstack"
)

// A taken address stops Start before it writes anything, and the error names
// the address and what it was for.
func TestStartOnATakenAddressTouchesNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	addr := taken.Addr().String()

	for _, o := range []devstack.Options{{Addr: addr}, {ChainAddr: addr}} {
		o.DataDir = filepath.Join(t.TempDir(), "data")
		s, err := devstack.Start(context.Background(), o)
		if err == nil {
			_ = s.Close()
			t.Fatalf("%+v: started on a taken address", o)
		}
		want := "api"
		if o.ChainAddr != "" {
			want = "simulated chain"
		}
		if !errors.Is(err, devstack.ErrAddrInUse) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want ErrAddrInUse naming the %s address %s", o, err, want, addr)
		}
		if _, err := os.Stat(o.DataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%+v: the data directory was created (%v)", o, err)
		}
	}
}

// Two stacks run side by side on free ports, and Close removes the
// temporary data directory and may be called again.
func TestTwoStacksAndClose(t *testing.T) {
	ctx := context.Background()
	a, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		_ = a.Close()
		t.Fatal(err)
	}
	if a.APIURL == b.APIURL || a.AdminToken == b.AdminToken || len(a.AdminToken) != 32 {
		t.Errorf("stacks share an address or a token: %s %s %q %q", a.APIURL, b.APIURL, a.AdminToken, b.AdminToken)
	}
	if a.Pool.Asset != devstack.DemoAsset || a.Pool.Program != devstack.DemoProgram {
		t.Errorf("demo pool: %+v", a.Pool)
	}
	for _, s := range []*devstack.Stack{a, b} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}
