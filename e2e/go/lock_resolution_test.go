package clients

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
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
// primary's secondaries). Afterwards the keys take new writes.
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
	if !strings.Contains(out.String(), "PREWRITTEN") {
		t.Fatalf("the dying client died before its prewrite succeeded:\n%s", out.String())
	}
}

// TestHelperDieMidCommit is the child of TestTxnLockResolutionAfterClientDies:
// it commits its keys and, once every prewrite has succeeded and the commit
// timestamp is chosen, kills itself before any commit is sent.
func TestHelperDieMidCommit(t *testing.T) {
	raw := os.Getenv(dieKeysEnv)
	if raw == "" {
		t.Skip("helper process of TestTxnLockResolutionAfterClientDies")
	}
	c := mustTxnClient(t)
	txn := mustBegin(t, c)
	txn.SetEnableAsyncCommit(os.Getenv(dieAsyncEnv) == "true")
	txn.SetEnable1PC(false)
	for _, k := range strings.Split(raw, ",") {
		mustSet(t, txn, k, "dead-writer")
	}
	txn.SetCommitTSUpperBoundCheck(func(commitTS uint64) bool {
		w := bufio.NewWriter(os.Stdout)
		fmt.Fprintf(w, "PREWRITTEN start_ts=%d commit_ts=%d\n", txn.StartTS(), commitTS)
		_ = w.Flush()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
		return false
	})
	err := txn.Commit(ctxTimeout(t))
	t.Fatalf("Commit returned (%v) instead of the process dying", err)
}
