// Package e2e holds bufferd's process-level tests: they build the bufferd
// binary once and run it as real processes (simchain, syncer, several api
// replicas) against real Redis and PostgreSQL servers, then check the
// reservation invariants through the public HTTP contract only: one holder per
// UTXO across replicas and on Redis Cluster, linearizable reservation
// operations (checked with porcupine), fencing of a paused holder, and fail
// closed behaviour when Redis or PostgreSQL is flushed, killed or paused.
//
// The package has no non-test code; run it with
//
//	go test -race ./e2e/
package e2e
