package clients

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tikv/client-go/v2/kv"
)

// replicaReadsServed sums, over every store, the reads served by a follower or learner
// after a read index round (`store_replica_reads_total{outcome="served"}`).
func replicaReadsServed(t *testing.T) int {
	t.Helper()
	return replicaReads(t, "served")
}

// replicaReads sums `store_replica_reads_total{outcome=...}` over every store's status port.
func replicaReads(t *testing.T, outcome string) int {
	t.Helper()
	raw := os.Getenv("FERROKV_STORE_STATUS")
	if raw == "" {
		t.Fatal("FERROKV_STORE_STATUS is not set")
	}
	client := http.Client{Timeout: 10 * time.Second}
	total := 0
	for _, addr := range strings.Split(raw, ",") {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", addr, err)
		}
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			line := scanner.Text()
			if !strings.HasPrefix(line, `store_replica_reads_total{outcome="`+outcome+`"} `) {
				continue
			}
			n, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatalf("metrics of %s: %q: %v", addr, line, err)
			}
			total += n
		}
		resp.Body.Close()
	}
	return total
}

// TestFollowerRead: client-go's follower read (KVSnapshot.SetReplicaRead) is served by
// followers, and each read, taken right after a commit, returns that commit's value: a
// follower waits until it has applied what the leader had committed, never answering stale.
func TestFollowerRead(t *testing.T) {
	c := mustTxnClient(t)
	p := prefix("follower-read")
	key := []byte(p + "k")
	before := replicaReadsServed(t)
	const rounds = 20
	for i := 0; i < rounds; i++ {
		want := fmt.Sprintf("v%d", i)
		txn := mustBegin(t, c)
		mustSet(t, txn, string(key), want)
		if err := txn.Commit(ctxTimeout(t)); err != nil {
			t.Fatalf("Commit %d: %v", i, err)
		}
		snap := c.GetSnapshot(mustTS(t, c))
		snap.SetReplicaRead(kv.ReplicaReadFollower)
		got, err := snap.Get(ctxTimeout(t), key)
		if err != nil {
			t.Fatalf("follower Get %d: %v", i, err)
		}
		if string(got.Value) != want {
			t.Fatalf("follower read %d returned %q, want %q (stale)", i, got.Value, want)
		}
	}
	served := replicaReadsServed(t) - before
	if served < rounds {
		t.Fatalf("followers served %d of %d replica reads (the rest went to the leader)", served, rounds)
	}
	t.Logf("followers served %d replica reads", served)
}

// TestStaleRead: client-go's stale read (KVSnapshot.SetIsStalenessReadOnly) at a timestamp a
// few seconds old is served by whichever replica it picks, followers from their own data
// below their safe ts, and returns exactly what was committed by then, not the later write;
// at the present timestamp (above the followers' safe ts: DataIsNotReady, then the leader)
// it returns the latest write.
func TestStaleRead(t *testing.T) {
	c := mustTxnClient(t)
	key := []byte(prefix("stale-read") + "k")
	commit := func(v string) {
		txn := mustBegin(t, c)
		mustSet(t, txn, string(key), v)
		if err := txn.Commit(ctxTimeout(t)); err != nil {
			t.Fatalf("Commit %s: %v", v, err)
		}
	}
	staleGet := func(ts uint64) string {
		snap := c.GetSnapshot(ts)
		snap.SetIsStalenessReadOnly(true)
		got, err := snap.Get(ctxTimeout(t), key)
		if err != nil {
			t.Fatalf("stale Get at %d: %v", ts, err)
		}
		return string(got.Value)
	}
	commit("old")
	at := mustTS(t, c)
	commit("new")
	before := replicaReads(t, "stale")
	// Followers learn a resolved ts about once a second.
	time.Sleep(3 * time.Second)
	for i := 0; i < 10; i++ {
		if got := staleGet(at); got != "old" {
			t.Fatalf("stale read %d at %d returned %q, want the value committed by then", i, at, got)
		}
	}
	if got := staleGet(mustTS(t, c)); got != "new" {
		t.Fatalf("stale read at the present returned %q, want the latest write", got)
	}
	served := replicaReads(t, "stale") - before
	if served < 1 {
		t.Fatalf("no stale read was served by a follower from its own data")
	}
	t.Logf("followers served %d of 11 stale reads locally", served)
}

// TestStaleReadMeetsAsyncCommitLock: a client dies right after its async-commit transaction's
// prewrites succeeded, leaving locks (unless its commit messages got out first). A stale read
// at a later ts cannot be served by a follower (its safe ts stays below the oldest lock:
// DataIsNotReady), so client-go reads from the leader, meets the lock, resolves it as TiKV's
// clients do (every prewrite succeeded: committed) and returns the dead writer's value.
func TestStaleReadMeetsAsyncCommitLock(t *testing.T) {
	c := mustTxnClient(t)
	p := prefix("stale-async")
	names := make([]string, 3)
	for i := range names {
		names[i] = fmt.Sprintf("%sk%d", p, i)
	}
	notReady := replicaReads(t, "data_not_ready")
	mustRunDyingClient(t, names, true)
	at := mustTS(t, c)
	// Long enough for followers to have learnt a resolved ts past `at`, were there no lock.
	time.Sleep(3 * time.Second)
	for _, name := range names {
		snap := c.GetSnapshot(at)
		snap.SetIsStalenessReadOnly(true)
		got, err := snap.Get(ctxTimeout(t), []byte(name))
		if err != nil {
			t.Fatalf("stale Get %s at %d: %v", name, at, err)
		}
		if string(got.Value) != "dead-writer" {
			t.Fatalf("stale read of %s at %d returned %q, want the committed async-commit value", name, at, got.Value)
		}
	}
	t.Logf("followers answered DataIsNotReady %d times", replicaReads(t, "data_not_ready")-notReady)
}
