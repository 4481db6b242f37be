// Package deploy validates bufferd's deployment files offline, with no cluster
// and no Docker engine: its tests render the Helm chart (helm/bufferd) for every
// environment with the Helm Go SDK, lint it, decode every rendered object
// strictly into Kubernetes API types and check that selectors, labels, ports
// and probes line up; they check that values.schema.json rejects bad values,
// and load docker-compose.yml with compose-go to check its services, health
// checks and dependency graph, and the Dockerfile's shape.
//
// It is a Go module of its own so that the bufferd binary never pulls in Helm.
// Run it with: cd deploy && go test ./...
package deploy
