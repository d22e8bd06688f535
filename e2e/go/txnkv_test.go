package clients

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	tikverr "github.com/tikv/client-go/v2/error"
	"github.com/tikv/client-go/v2/kv"
	"github.com/tikv/client-go/v2/txnkv"
)

// TestTxnOptimistic: read-your-writes inside a transaction, puts and deletes
// committed together, a rolled-back transaction leaves nothing.
func TestTxnOptimistic(t *testing.T) {
	c := mustTxnClient(t)
	txnOptimistic(t, c)
}

func txnOptimistic(t *testing.T, c *txnkv.Client) {
	p := prefix("txn-opt")
	a, b, gone := p+"a", p+"b", p+"gone"
	seed := mustBegin(t, c)
	mustSet(t, seed, gone, "old")
	if err := seed.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("Commit seed: %v", err)
	}

	txn := mustBegin(t, c)
	mustSet(t, txn, a, "1")
	mustSet(t, txn, b, "2")
	if err := txn.Delete([]byte(gone)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, txn, []byte(a)); string(got) != "1" {
		t.Fatalf("read-your-writes: %q", got)
	}
	if got := mustGet(t, txn, []byte(gone)); got != nil {
		t.Fatalf("deleted key read in its own txn: %q", got)
	}
	if err := txn.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	got := mustRead(t, c, []byte(a), []byte(b), []byte(gone))
	mustEqualStrings(t, "after commit", got, []string{"1", "2", "<absent>"})

	aborted := mustBegin(t, c)
	mustSet(t, aborted, a, "never")
	if err := aborted.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	got = mustRead(t, c, []byte(a))
	mustEqualStrings(t, "after rollback", got, []string{"1"})
}

// TestTxnConflictExactlyOneWins: two transactions read and write the same key
// and commit at the same time; exactly one commits, the other gets a write
// conflict, for every commit protocol.
func TestTxnConflictExactlyOneWins(t *testing.T) {
	c := mustTxnClient(t)
	for _, mode := range commitModes {
		t.Run(mode.name, func(t *testing.T) {
			for round := 0; round < 5; round++ {
				conflictRound(t, c, mode, round)
			}
		})
	}
}

func conflictRound(t *testing.T, c *txnkv.Client, mode commitMode, round int) {
	key := []byte(prefix("conflict") + "k")
	t1, t2 := mustBegin(t, c), mustBegin(t, c)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, txn := range []*txnkvTxn{t1, t2} {
		mode.apply(txn)
		_ = mustGet(t, txn, key)
		mustSet(t, txn, string(key), fmt.Sprintf("writer-%d", i))
	}
	for i, txn := range []*txnkvTxn{t1, t2} {
		wg.Add(1)
		go func(i int, txn *txnkvTxn) {
			defer wg.Done()
			errs[i] = txn.Commit(ctxTimeout(t))
		}(i, txn)
	}
	wg.Wait()
	winners := 0
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			winner = i
		case tikverr.IsErrWriteConflict(err):
		default:
			t.Fatalf("round %d: committer %d failed with an unexpected error: %v", round, i, err)
		}
	}
	if winners != 1 {
		t.Fatalf("round %d: %d committers won (errors %v), want exactly 1", round, winners, errs)
	}
	got := mustRead(t, c, key)
	mustEqualStrings(t, "winner's value", got, []string{fmt.Sprintf("writer-%d", winner)})
}

// TestTxnSnapshotIsolation: a transaction reads the snapshot of its start
// timestamp: later commits, and locks of transactions started after it, are
// invisible; a snapshot at an explicit timestamp reads that version.
func TestTxnSnapshotIsolation(t *testing.T) {
	c := mustTxnClient(t)
	p := prefix("si")
	key := []byte(p + "k")
	commitValue(t, c, key, "v1")
	oldTS, err := c.GetTimestamp(ctxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	reader := mustBegin(t, c)
	commitValue(t, c, key, "v2")
	if got := mustGet(t, reader, key); string(got) != "v1" {
		t.Fatalf("reader started before v2 read %q, want v1", got)
	}
	// A prewritten but uncommitted write of a later transaction does not block
	// or show: hold one open past prewrite with a pessimistic lock.
	holder := mustBegin(t, c)
	holder.SetPessimistic(true)
	if err := holder.LockKeysWithWaitTime(ctxTimeout(t), kv.LockNoWait, key); err != nil {
		t.Fatalf("LockKeys: %v", err)
	}
	mustSet(t, holder, string(key), "v3")
	if got := mustGet(t, reader, key); string(got) != "v1" {
		t.Fatalf("reader read %q while a later txn held the key, want v1", got)
	}
	if got := mustRead(t, c, key); got[0] != "v2" {
		t.Fatalf("new reader read %q under a pessimistic lock, want v2", got[0])
	}
	if err := holder.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("Commit holder: %v", err)
	}
	if got := mustGet(t, reader, key); string(got) != "v1" {
		t.Fatalf("reader read %q after v3, want v1", got)
	}
	snap := c.GetSnapshot(oldTS)
	v, err := snap.Get(ctxTimeout(t), key)
	if err != nil || string(v.Value) != "v1" {
		t.Fatalf("snapshot at %d read %q, %v; want v1", oldTS, v.Value, err)
	}
	if got := mustRead(t, c, key); got[0] != "v3" {
		t.Fatalf("latest read %q, want v3", got[0])
	}
	_ = reader.Rollback()
}

func commitValue(t testing.TB, c *txnkv.Client, key []byte, value string) {
	t.Helper()
	txn := mustBegin(t, c)
	mustSet(t, txn, string(key), value)
	if err := txn.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("Commit %s=%s: %v", key, value, err)
	}
}

// TestTxnPessimisticCounter: workers increment one counter in pessimistic
// transactions (lock with the current value returned, write, commit),
// waiting for each other's locks; no increment is lost.
func TestTxnPessimisticCounter(t *testing.T) {
	c := mustTxnClient(t)
	key := []byte(prefix("pessimistic") + "counter")
	const workers, increments = 3, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments; i++ {
				if err := pessimisticIncrement(c, key); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("pessimistic increment: %v", err)
	}
	got := mustRead(t, c, key)
	mustEqualStrings(t, "counter", got, []string{strconv.Itoa(workers * increments)})
}

// pessimisticIncrement adds one to key as TiDB's SELECT ... FOR UPDATE would:
// lock with a fresh for-update timestamp and the value returned, retrying the
// lock on a write conflict.
func pessimisticIncrement(c *txnkv.Client, key []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
	defer cancel()
	txn, err := c.Begin()
	if err != nil {
		return err
	}
	txn.SetPessimistic(true)
	for attempt := 0; ; attempt++ {
		if attempt == 50 {
			_ = txn.Rollback()
			return fmt.Errorf("no lock on %s after 50 conflicts", key)
		}
		forUpdateTS, err := c.GetTimestamp(ctx)
		if err != nil {
			return err
		}
		lockCtx := kv.NewLockCtx(forUpdateTS, 10_000, time.Now())
		lockCtx.InitReturnValues(1)
		err = txn.LockKeys(ctx, lockCtx, key)
		if tikverr.IsErrWriteConflict(err) {
			continue
		}
		if err != nil {
			_ = txn.Rollback()
			return fmt.Errorf("LockKeys: %w", err)
		}
		n := 0
		if rv := lockCtx.Values[string(key)]; rv.Exists {
			if n, err = strconv.Atoi(string(rv.Value)); err != nil {
				return fmt.Errorf("counter value %q: %w", rv.Value, err)
			}
		}
		if err := txn.Set(key, []byte(strconv.Itoa(n+1))); err != nil {
			return err
		}
		return txn.Commit(ctx)
	}
}

// TestTxnPessimisticNoWait: a pessimistic lock held by one transaction makes
// another's no-wait lock fail at once, and a waiting lock proceed once the
// holder rolls back.
func TestTxnPessimisticNoWait(t *testing.T) {
	c := mustTxnClient(t)
	key := []byte(prefix("nowait") + "k")
	holder := mustBegin(t, c)
	holder.SetPessimistic(true)
	if err := holder.LockKeysWithWaitTime(ctxTimeout(t), kv.LockNoWait, key); err != nil {
		t.Fatalf("holder LockKeys: %v", err)
	}
	other := mustBegin(t, c)
	other.SetPessimistic(true)
	err := other.LockKeysWithWaitTime(ctxTimeout(t), kv.LockNoWait, key)
	if err == nil {
		t.Fatalf("no-wait lock on a locked key succeeded")
	}
	if !isLockNoWait(err) {
		t.Fatalf("no-wait lock on a locked key: %v, want ErrLockAcquireFailAndNoWaitSet", err)
	}
	done := make(chan error, 1)
	waiter := mustBegin(t, c)
	waiter.SetPessimistic(true)
	go func() { done <- waiter.LockKeysWithWaitTime(ctxTimeout(t), 20_000, key) }()
	select {
	case err := <-done:
		t.Fatalf("waiting lock returned while the holder still held the key: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := holder.Rollback(); err != nil {
		t.Fatalf("holder Rollback: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting lock after the holder rolled back: %v", err)
		}
	case <-time.After(callTimeout):
		t.Fatalf("waiting lock did not proceed within %v of the holder's rollback", callTimeout)
	}
	mustSet(t, waiter, string(key), "waited")
	if err := waiter.Commit(ctxTimeout(t)); err != nil {
		t.Fatalf("waiter Commit: %v", err)
	}
	_ = other.Rollback()
	mustEqualStrings(t, "after waiter", mustRead(t, c, key), []string{"waited"})
}

func isLockNoWait(err error) bool {
	return errors.Is(err, tikverr.ErrLockAcquireFailAndNoWaitSet)
}
