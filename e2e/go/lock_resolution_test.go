package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/tikv/client-go/v2/oracle"
	"github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/tikvrpc"
	"github.com/tikv/client-go/v2/txnkv"
)

// Env vars of the helper process that dies mid-commit.
const (
	dieKeysEnv  = "FERROKV_DIE_KEYS"
	dieAsyncEnv = "FERROKV_DIE_ASYNC"
)

// TestTxnLockResolutionAfterClientDies: a client process prewrites five keys
// and is killed (SIGKILL) before it commits, leaving its locks behind. A new
// client reading the keys resolves them: a 2PC transaction whose primary was
// never committed is rolled back once its lock TTL passes; an async-commit
// transaction whose prewrites all succeeded is committed (found through the
// primary's secondaries, unless the dying client's commit messages got out
// first). Afterwards the keys take new writes.
func TestTxnLockResolutionAfterClientDies(t *testing.T) {
	c := mustTxnClient(t)
	for _, async := range []bool{false, true} {
		name := map[bool]string{false: "2PC", true: "AsyncCommit"}[async]
		t.Run(name, func(t *testing.T) {
			p := prefix("dies-" + name)
			keys := make([][]byte, 5)
			names := make([]string, 5)
			for i := range keys {
				names[i] = fmt.Sprintf("%sk%d", p, i)
				keys[i] = []byte(names[i])
			}
			mustRunDyingClient(t, names, async)
			want := "<absent>"
			if async {
				want = "dead-writer"
			}
			got := mustRead(t, c, keys...)
			mustEqualStrings(t, "after resolution", got, []string{want, want, want, want, want})
			txn := mustBegin(t, c)
			for _, k := range names {
				mustSet(t, txn, k, "after")
			}
			if err := txn.Commit(ctxTimeout(t)); err != nil {
				t.Fatalf("writing keys whose locks were resolved: %v", err)
			}
		})
	}
}

// mustRunDyingClient runs TestHelperDieMidCommit in a child process and
// checks that it reported its prewrite and then died of SIGKILL.
func mustRunDyingClient(t *testing.T, keys []string, async bool) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperDieMidCommit$", "-test.v")
	cmd.Env = append(os.Environ(), dieKeysEnv+"="+strings.Join(keys, ","), fmt.Sprintf("%s=%t", dieAsyncEnv, async))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	exit, ok := err.(*exec.ExitError)
	if !ok || !exit.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("the dying client did not die by a signal (err %v):\n%s", err, out.String())
	}
	mode := map[bool]string{false: "mode=2pc", true: "mode=async_commit"}[async]
	if !strings.Contains(out.String(), "PREWRITTEN") || !strings.Contains(out.String(), mode) {
		t.Fatalf("the dying client died before its prewrite succeeded:\n%s", out.String())
	}
}

// TestHelperDieMidCommit is the child of TestTxnLockResolutionAfterClientDies:
// it commits its keys and kills itself before any commit message is sent.
//
// In 2PC it dies in the commit-ts upper bound check, which client-go calls once
// every prewrite has succeeded and the commit timestamp is chosen. client-go
// turns async commit off when that check is set, so an async-commit
// transaction instead dies as soon as Commit returns: the transaction is
// committed once its prewrites succeed, and client-go sends the commit
// messages from a goroutine afterwards, which the SIGKILL cuts short.
func TestHelperDieMidCommit(t *testing.T) {
	raw := os.Getenv(dieKeysEnv)
	if raw == "" {
		t.Skip("helper process of TestTxnLockResolutionAfterClientDies")
	}
	async := os.Getenv(dieAsyncEnv) == "true"
	c := mustTxnClient(t)
	txn := mustBegin(t, c)
	txn.SetEnableAsyncCommit(async)
	txn.SetEnable1PC(false)
	for _, k := range strings.Split(raw, ",") {
		mustSet(t, txn, k, "dead-writer")
	}
	die := func(what string) {
		w := bufio.NewWriter(os.Stdout)
		fmt.Fprintf(w, "PREWRITTEN start_ts=%d %s\n", txn.StartTS(), what)
		_ = w.Flush()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	if async {
		// The commit callback runs as Commit returns, right after the commit
		// messages' goroutine is spawned.
		txn.SetCommitCallback(func(raw string, err error) {
			var info commitInfo
			_ = json.Unmarshal([]byte(raw), &info.TxnInfo)
			if err == nil {
				die(fmt.Sprintf("mode=%s commit_ts=%d", info.TxnCommitMode, info.CommitTS))
			}
		})
		err := txn.Commit(ctxTimeout(t))
		t.Fatalf("async commit returned (%v) instead of the process dying", err)
	}
	txn.SetCommitTSUpperBoundCheck(func(commitTS uint64) bool {
		die(fmt.Sprintf("mode=2pc commit_ts=%d", commitTS))
		return false
	})
	err := txn.Commit(ctxTimeout(t))
	t.Fatalf("Commit returned (%v) instead of the process dying", err)
}

// TestTxnOrphanedLockIsRolledBackAfterItsTTL: a transaction that died after
// one secondary lock landed and before its primary lock did leaves an orphan,
// a lock whose primary holds neither a lock nor a commit or rollback record.
// The store answers CheckTxnStatus on that primary with TxnNotFound until the
// caller asks for a rollback; client-go asks once the orphan's TTL has passed.
// The read then finds the key absent, the dead transaction can no longer
// commit (its late primary prewrite is refused), and the key takes new writes.
func TestTxnOrphanedLockIsRolledBackAfterItsTTL(t *testing.T) {
	c := mustTxnClient(t)
	p := prefix("orphan")
	primary, secondary := []byte(p+"primary"), []byte(p+"secondary")
	startTS, err := c.CurrentTimestamp(oracle.GlobalTxnScope)
	if err != nil {
		t.Fatalf("CurrentTimestamp: %v", err)
	}
	const ttl = 2000
	prewrite := func(key []byte) *kvrpcpb.PrewriteResponse {
		bo := tikv.NewBackofferWithVars(ctxTimeout(t), 20000, nil)
		loc, err := c.GetRegionCache().LocateKey(bo, key)
		if err != nil {
			t.Fatalf("locating %q: %v", key, err)
		}
		req := tikvrpc.NewRequest(tikvrpc.CmdPrewrite, &kvrpcpb.PrewriteRequest{
			Mutations:    []*kvrpcpb.Mutation{{Op: kvrpcpb.Op_Put, Key: key, Value: []byte("orphan")}},
			PrimaryLock:  primary,
			StartVersion: startTS,
			LockTtl:      ttl,
		})
		resp, err := c.SendReq(bo, req, loc.Region, callTimeout)
		if err != nil {
			t.Fatalf("prewriting %q: %v", key, err)
		}
		if regionErr, _ := resp.GetRegionError(); regionErr != nil {
			t.Fatalf("prewriting %q: region error %v", key, regionErr)
		}
		return resp.Resp.(*kvrpcpb.PrewriteResponse)
	}
	if errs := prewrite(secondary).GetErrors(); len(errs) != 0 {
		t.Fatalf("the orphan's prewrite failed: %v", errs)
	}
	mustEqualStrings(t, "the orphaned key", mustRead(t, c, secondary), []string{"<absent>"})
	if now := oracle.GetTimeFromTS(mustTS(t, c)); now.Before(oracle.GetTimeFromTS(startTS).Add(ttl * time.Millisecond)) {
		t.Fatalf("the orphan was rolled back at %v, before its TTL ran out", now)
	}
	if errs := prewrite(primary).GetErrors(); len(errs) == 0 {
		t.Fatalf("the rolled-back transaction could still prewrite its primary")
	}
	txn := mustBegin(t, c)
	mustSet(t, txn, string(secondary), "after")
	if err := txn.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("writing the key the orphan held: %v", err)
	}
	mustEqualStrings(t, "after the orphan", mustRead(t, c, secondary), []string{"after"})
}

func mustTS(t testing.TB, c *txnkv.Client) uint64 {
	t.Helper()
	ts, err := c.CurrentTimestamp(oracle.GlobalTxnScope)
	if err != nil {
		t.Fatalf("CurrentTimestamp: %v", err)
	}
	return ts
}
