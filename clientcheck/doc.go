// Package clientcheck holds the tests of the Go client (module
// github.com/bufferd/bufferd/client) that need the real service: the client
// is a module of its own so that a DApp backend importing it pulls in none of
// the server's dependencies, and its tests against bufferd (handlers, lockmgr
// and storage on real Redis and PostgreSQL; devstack for the examples) live
// here, in the root module, which uses the client of the working tree (a
// replace directive in go.mod). They also check that the client module stays
// that small (module_test.go).
//
// The package has no non-test code; run it with
//
//	go test -race ./clientcheck/
package clientcheck
