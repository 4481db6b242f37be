package testenv

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// LeakOptions are the goroutines goleak leaves out in every package: those of
// third-party libraries that outlive the tests by design, plus extra. A
// goroutine of bufferd's own code that outlives its test is a leak to fix.
func LeakOptions(extra ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		// fasthttp (under fiber) starts a goroutine that stamps the Date
		// header once a second, forever, with the first server.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// A fasthttp server's worker pool cleaner sleeps up to 10 s between
		// looks at its stop channel, so it outlives a server that has shut
		// down by that long.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	}, extra...)
}

// Main is the TestMain of a package: it runs the tests, releases what they
// shared (template databases, PostgreSQL's initial data directory) and fails the package when its tests passed but left
// goroutines running.
func Main(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(LeakOptions(extra...), goleak.Cleanup(func(code int) {
		ReleaseShared()
		os.Exit(code)
	}))...)
}

// AfterTests ends a TestMain that cleans up after m.Run: given m.Run's exit
// code, it releases what the tests shared (see Main) and returns 1 when the
// tests passed but left goroutines running (listed on stderr), else the code.
func AfterTests(code int, extra ...goleak.Option) int {
	ReleaseShared()
	if code != 0 {
		return code
	}
	if err := goleak.Find(LeakOptions(extra...)...); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
		return 1
	}
	return 0
}
