// Package clients holds the end-to-end tests of the official Go client
// (github.com/tikv/client-go/v2) against a running ferrokv cluster.
//
// The tests are run by the Rust suite e2e/tests/go_client.rs, which starts a
// cluster of 3 placement members and 3 stores, builds this package's test
// binary once (go test -c, cached by the hash of this directory) and runs it
// with the cluster's endpoints in the environment:
//
//	FERROKV_PD      placement client endpoints, comma-separated (host:port)
//	FERROKV_STORES  store gRPC addresses, comma-separated
//
// Without FERROKV_PD every test skips, saying so.
package clients
