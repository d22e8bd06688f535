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
// (`store_replica_reads_total{outcome="served"}` on the status port).
func replicaReadsServed(t *testing.T) int {
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
			if !strings.HasPrefix(line, `store_replica_reads_total{outcome="served"} `) {
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
