package clients

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/tikv/client-go/v2/config"
	"github.com/tikv/client-go/v2/rawkv"
	"github.com/tikv/client-go/v2/txnkv"
)

// callTimeout bounds every single client call of the tests: a call that hangs
// fails its test with the call named, instead of tripping the suite deadline.
const callTimeout = 30 * time.Second

// pdEndpoints is the placement members' client endpoints, or nil when the
// tests run outside the Rust harness.
func pdEndpoints(t testing.TB) []string {
	t.Helper()
	raw := os.Getenv("FERROKV_PD")
	if raw == "" {
		t.Skip("SKIPPED: FERROKV_PD is not set; run through `cargo test -p e2e --test go_client`")
	}
	return strings.Split(raw, ",")
}

// storeAddrs is the stores' gRPC addresses.
func storeAddrs(t testing.TB) []string {
	t.Helper()
	raw := os.Getenv("FERROKV_STORES")
	if raw == "" {
		t.Fatal("FERROKV_STORES is not set")
	}
	return strings.Split(raw, ",")
}

var runID = fmt.Sprintf("%x", time.Now().UnixNano())

var keySeq atomic.Uint64

// prefix returns a key prefix unique to this run and call, so tests sharing
// one cluster never see each other's keys.
func prefix(name string) string {
	return fmt.Sprintf("go-%s-%s-%d/", runID, name, keySeq.Add(1))
}

func ctxTimeout(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// mustTxnClient connects a txnkv client (API V1, or V2 with keyspace).
func mustTxnClient(t testing.TB, opts ...txnkv.ClientOpt) *txnkv.Client {
	t.Helper()
	client, err := txnkv.NewClient(pdEndpoints(t), opts...)
	if err != nil {
		t.Fatalf("txnkv.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// mustRawClient connects a rawkv client (API V1, or V2 with keyspace).
func mustRawClient(t testing.TB, opts ...rawkv.ClientOpt) *rawkv.Client {
	t.Helper()
	client, err := rawkv.NewClientWithOpts(ctxTimeout(t), pdEndpoints(t), opts...)
	if err != nil {
		t.Fatalf("rawkv.NewClientWithOpts: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// v2Txn and v2Raw are the options of API V2 clients in the DEFAULT keyspace.
func v2Txn() []txnkv.ClientOpt {
	return []txnkv.ClientOpt{txnkv.WithAPIVersion(kvrpcpb.APIVersion_V2), txnkv.WithKeyspace("DEFAULT")}
}

func v2Raw() []rawkv.ClientOpt {
	return []rawkv.ClientOpt{rawkv.WithAPIVersion(kvrpcpb.APIVersion_V2), rawkv.WithKeyspace("DEFAULT")}
}

func TestMain(m *testing.M) {
	// Quieter client logs: the harness prints the test output on failure.
	config.UpdateGlobal(func(c *config.Config) {
		c.TiKVClient.GrpcConnectionCount = 2
	})
	os.Exit(m.Run())
}
