package clients

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tikverr "github.com/tikv/client-go/v2/error"
	"github.com/tikv/client-go/v2/rawkv"
	"github.com/tikv/client-go/v2/txnkv"
)

// Churn load: accounts moved between in transactions, raw values big enough
// that regions split under the writes.
const (
	churnAccounts   = 20
	churnBalance    = 100
	churnRawValue   = 1024
	churnMaxRuntime = 5 * time.Minute
)

// churnStats counts acknowledged operations and failed ones.
type churnStats struct {
	transfers, conflicts, txnErrors atomic.Int64
	raw, rawErrors                  atomic.Int64
	snapshots                       atomic.Int64
}

// TestChurn runs a transfer and a raw write load until its standard input
// closes, while the harness (e2e/tests/go_client.rs) moves leaders, lets
// regions split and kills a store. It prints "CHURN READY" once loaded and a
// PROGRESS line every half second. At the end every acknowledged raw write
// must read back, and the accounts' total must be what it was at the start,
// in every snapshot taken during the churn and after it.
func TestChurn(t *testing.T) {
	if os.Getenv("FERROKV_CHURN") == "" {
		t.Skip("driven by go_client_region_churn (needs the harness to cause the churn)")
	}
	txnClient := mustTxnClient(t)
	rawClient := mustRawClient(t)
	p := prefix("churn")
	accounts := make([][]byte, churnAccounts)
	seed := mustBegin(t, txnClient)
	for i := range accounts {
		accounts[i] = []byte(fmt.Sprintf("%sacct%02d", p, i))
		mustSet(t, seed, string(accounts[i]), strconv.Itoa(churnBalance))
	}
	if err := seed.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("seed accounts: %v", err)
	}

	ctx, stop := context.WithTimeout(context.Background(), churnMaxRuntime)
	defer stop()
	go func() { // the harness closes stdin when the churn is over
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	var stats churnStats
	var acked sync.Map // raw key -> value
	var wg sync.WaitGroup
	failures := make(chan string, 16)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			transferLoop(ctx, txnClient, accounts, int64(w), &stats)
		}(w)
	}
	wg.Add(2)
	go func() { defer wg.Done(); rawLoop(ctx, rawClient, p, &acked, &stats) }()
	go func() { defer wg.Done(); auditLoop(ctx, txnClient, accounts, &stats, failures) }()
	fmt.Println("CHURN READY")
	progressLoop(ctx, &stats)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	report := fmt.Sprintf("transfers=%d conflicts=%d txn_errors=%d raw=%d raw_errors=%d snapshots=%d",
		stats.transfers.Load(), stats.conflicts.Load(), stats.txnErrors.Load(),
		stats.raw.Load(), stats.rawErrors.Load(), stats.snapshots.Load())
	fmt.Println("CHURN DONE " + report)
	if stats.transfers.Load() == 0 || stats.raw.Load() == 0 {
		t.Fatalf("no progress: %s", report)
	}
	mustVerifyChurn(t, txnClient, rawClient, accounts, &acked)
}

func progressLoop(ctx context.Context, s *churnStats) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	w := bufio.NewWriter(os.Stdout)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fmt.Fprintf(w, "PROGRESS transfers=%d raw=%d snapshots=%d txn_errors=%d raw_errors=%d\n",
				s.transfers.Load(), s.raw.Load(), s.snapshots.Load(), s.txnErrors.Load(), s.rawErrors.Load())
			_ = w.Flush()
		}
	}
}

// transferLoop moves 1 between two random accounts per transaction. A commit
// that fails other than by conflict may or may not have landed: either way
// the total stays, which the audit checks.
func transferLoop(ctx context.Context, c *txnkv.Client, accounts [][]byte, seed int64, s *churnStats) {
	rng := rand.New(rand.NewSource(seed))
	for ctx.Err() == nil {
		from, to := rng.Intn(len(accounts)), rng.Intn(len(accounts)-1)
		if to >= from {
			to++
		}
		err := transfer(ctx, c, accounts[from], accounts[to])
		switch {
		case err == nil:
			s.transfers.Add(1)
		case tikverr.IsErrWriteConflict(err):
			s.conflicts.Add(1)
		case ctx.Err() != nil:
		default:
			s.txnErrors.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func transfer(ctx context.Context, c *txnkv.Client, from, to []byte) error {
	call, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	txn, err := c.Begin()
	if err != nil {
		return err
	}
	values, err := txn.BatchGet(call, [][]byte{from, to})
	if err != nil {
		_ = txn.Rollback()
		return err
	}
	a, errA := strconv.Atoi(string(values[string(from)].Value))
	b, errB := strconv.Atoi(string(values[string(to)].Value))
	if errA != nil || errB != nil {
		_ = txn.Rollback()
		return fmt.Errorf("balances %q %q", values[string(from)].Value, values[string(to)].Value)
	}
	if err := txn.Set(from, []byte(strconv.Itoa(a-1))); err != nil {
		return err
	}
	if err := txn.Set(to, []byte(strconv.Itoa(b+1))); err != nil {
		return err
	}
	return txn.Commit(call)
}

func rawLoop(ctx context.Context, c *rawkv.Client, p string, acked *sync.Map, s *churnStats) {
	for i := 0; ctx.Err() == nil; i++ {
		key := []byte(fmt.Sprintf("%sraw%07d", p, i))
		value := rawValue(i)
		call, cancel := context.WithTimeout(ctx, callTimeout)
		err := c.Put(call, key, value)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.rawErrors.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		acked.Store(string(key), i)
		s.raw.Add(1)
	}
}

func rawValue(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%07d|", i)), churnRawValue/8)
}

// auditLoop reads every account in one snapshot and checks the total.
func auditLoop(ctx context.Context, c *txnkv.Client, accounts [][]byte, s *churnStats, failures chan<- string) {
	for ctx.Err() == nil {
		total, err := snapshotTotal(ctx, c, accounts)
		if err == nil {
			s.snapshots.Add(1)
			if total != churnAccounts*churnBalance {
				failures <- fmt.Sprintf("a snapshot during the churn saw a total of %d, want %d", total, churnAccounts*churnBalance)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func snapshotTotal(ctx context.Context, c *txnkv.Client, accounts [][]byte) (int, error) {
	call, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ts, err := c.GetTimestamp(call)
	if err != nil {
		return 0, err
	}
	values, err := c.GetSnapshot(ts).BatchGet(call, accounts)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, a := range accounts {
		n, err := strconv.Atoi(string(values[string(a)].Value))
		if err != nil {
			return 0, fmt.Errorf("account %s = %q", a, values[string(a)].Value)
		}
		total += n
	}
	return total, nil
}

func mustVerifyChurn(t *testing.T, txnClient *txnkv.Client, rawClient *rawkv.Client, accounts [][]byte, acked *sync.Map) {
	total, err := snapshotTotal(context.Background(), txnClient, accounts)
	if err != nil {
		t.Fatalf("final audit: %v", err)
	}
	if total != churnAccounts*churnBalance {
		t.Fatalf("final total %d, want %d", total, churnAccounts*churnBalance)
	}
	var keys [][]byte
	var want []int
	acked.Range(func(k, v any) bool {
		keys = append(keys, []byte(k.(string)))
		want = append(want, v.(int))
		return true
	})
	for start := 0; start < len(keys); start += 256 {
		end := min(start+256, len(keys))
		got, err := rawClient.BatchGet(ctxTimeout(t), keys[start:end])
		if err != nil {
			t.Fatalf("BatchGet of acknowledged raw keys: %v", err)
		}
		for i, v := range got {
			if !bytes.Equal(v, rawValue(want[start+i])) {
				t.Fatalf("acknowledged raw write %s reads %d bytes, want its value", keys[start+i], len(v))
			}
		}
	}
	fmt.Printf("CHURN VERIFIED raw=%d accounts=%d\n", len(keys), len(accounts))
}
