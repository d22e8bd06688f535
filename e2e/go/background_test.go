package clients

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pingcap/kvproto/pkg/coprocessor"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/tikv/client-go/v2/tikvrpc"
	"github.com/tikv/pd/client/opt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// unimplementedLimit bounds how long an unsupported call may take to be refused.
const unimplementedLimit = 5 * time.Second

// TestPlacementCallsOfClientGo: what client-go asks the placement port
// besides regions and timestamps: GetAllStores (polled by the region cache),
// etcd MemberList (clientv3's endpoint sync) and KV/Range of the GC safe point
// key, gRPC health; and an etcd call it does not serve is refused with
// Unimplemented at once.
func TestPlacementCallsOfClientGo(t *testing.T) {
	c := mustTxnClient(t)
	stores, err := c.GetPDClient().GetAllStores(ctxTimeout(t), opt.WithExcludeTombstone())
	if err != nil {
		t.Fatalf("GetAllStores: %v", err)
	}
	var addrs []string
	for _, s := range stores {
		addrs = append(addrs, s.GetAddress())
	}
	want := append([]string{}, storeAddrs(t)...)
	sort.Strings(addrs)
	sort.Strings(want)
	mustEqualStrings(t, "GetAllStores addresses", addrs, want)

	etcd, err := clientv3.New(clientv3.Config{Endpoints: pdEndpoints(t), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer etcd.Close()
	members, err := etcd.MemberList(ctxTimeout(t))
	if err != nil {
		t.Fatalf("etcd MemberList: %v", err)
	}
	var clientURLs []string
	for _, m := range members.Members {
		clientURLs = append(clientURLs, m.ClientURLs...)
	}
	if len(members.Members) != len(pdEndpoints(t)) {
		t.Fatalf("etcd MemberList: %d members %v, want %d", len(members.Members), clientURLs, len(pdEndpoints(t)))
	}
	for _, ep := range pdEndpoints(t) {
		if !strings.Contains(strings.Join(clientURLs, " "), ep) {
			t.Fatalf("etcd MemberList client URLs %v lack %s", clientURLs, ep)
		}
	}
	if err := etcd.Sync(ctxTimeout(t)); err != nil {
		t.Fatalf("etcd Sync: %v", err)
	}
	if _, err := etcd.Get(ctxTimeout(t), "/tidb/store/gcworker/saved_safe_point"); err != nil {
		t.Fatalf("etcd Get of the GC safe point: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), unimplementedLimit)
	defer cancel()
	_, err = etcd.Put(ctx, "/ferrokv/not-served", "x")
	mustBeUnimplemented(t, "etcd Put", err)

	for _, ep := range pdEndpoints(t) {
		mustServeHealth(t, ep)
	}
}

// TestStoreCallsOfClientGo: what client-go sends each store besides reads and
// writes: StoreSafeTS (every 2 s, for stale reads) and gRPC health checks;
// and calls the store does not serve are refused with Unimplemented at once,
// as plain unary RPCs and inside the BatchCommands stream.
func TestStoreCallsOfClientGo(t *testing.T) {
	c := mustTxnClient(t)
	rpc := c.GetTiKVClient()
	for _, addr := range storeAddrs(t) {
		req := tikvrpc.NewRequest(tikvrpc.CmdStoreSafeTS, &kvrpcpb.StoreSafeTSRequest{
			KeyRange: &kvrpcpb.KeyRange{StartKey: []byte(""), EndKey: []byte("")},
		}, kvrpcpb.Context{})
		resp, err := rpc.SendRequest(ctxTimeout(t), addr, req, 5*time.Second)
		if err != nil {
			t.Fatalf("StoreSafeTS to %s: %v", addr, err)
		}
		if _, ok := resp.Resp.(*kvrpcpb.StoreSafeTSResponse); !ok {
			t.Fatalf("StoreSafeTS to %s answered %T", addr, resp.Resp)
		}
		mustServeHealth(t, addr)

		// Unary, not served: raw checksums.
		checksum := tikvrpc.NewRequest(tikvrpc.CmdRawChecksum, &kvrpcpb.RawChecksumRequest{
			Ranges: []*kvrpcpb.KeyRange{{StartKey: []byte("a"), EndKey: []byte("b")}},
		})
		start := time.Now()
		_, err = rpc.SendRequest(ctxTimeout(t), addr, checksum, unimplementedLimit)
		mustBeUnimplemented(t, "RawChecksum to "+addr, err)
		if took := time.Since(start); took > unimplementedLimit {
			t.Fatalf("RawChecksum refusal took %v", took)
		}
		// Batched, not served: a coprocessor request travels in BatchCommands.
		cop := tikvrpc.NewRequest(tikvrpc.CmdCop, &coprocessorRequest)
		start = time.Now()
		_, err = rpc.SendRequest(ctxTimeout(t), addr, cop, unimplementedLimit)
		if err == nil {
			t.Fatalf("a coprocessor request to %s succeeded", addr)
		}
		if took := time.Since(start); took >= unimplementedLimit {
			t.Fatalf("coprocessor refusal to %s took %v: %v", addr, took, err)
		}
	}
}

// mustServeHealth checks the standard gRPC health service answers SERVING.
func mustServeHealth(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(ctxTimeout(t), &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check of %s: %v", addr, err)
	}
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health of %s = %v, want SERVING", addr, resp.GetStatus())
	}
}

func mustBeUnimplemented(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded; want Unimplemented", what)
	}
	if st, ok := status.FromError(unwrapAll(err)); !ok || st.Code() != codes.Unimplemented {
		if !strings.Contains(err.Error(), "Unimplemented") {
			t.Fatalf("%s: %v; want Unimplemented", what, err)
		}
	}
}

// unwrapAll returns the innermost error of a chain.
func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

var coprocessorRequest = coprocessor.Request{Tp: 103, Data: []byte{}}
