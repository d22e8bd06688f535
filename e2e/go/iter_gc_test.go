package clients

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	tikverr "github.com/tikv/client-go/v2/error"
	"github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/txnkv"
)

// TestTxnIterAcrossRegions: 3000 keys written in transactions spread over
// several regions (the stores split at 64 KiB); Iter and IterReverse over the
// whole range return every key once, in order, with its value, and merge the
// transaction's own uncommitted writes.
func TestTxnIterAcrossRegions(t *testing.T) {
	c := mustTxnClient(t)
	p := prefix("iter")
	const n, batch = 3000, 500
	key := func(i int) []byte { return []byte(fmt.Sprintf("%s%05d", p, i)) }
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 100) }
	for start := 0; start < n; start += batch {
		txn := mustBegin(t, c)
		for i := start; i < start+batch; i++ {
			if err := txn.Set(key(i), value(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.Commit(ctxTimeout(t)); err != nil {
			t.Fatalf("Commit keys %d..: %v", start, err)
		}
	}
	regions := mustRegionsAtLeast(t, c, []byte(p), []byte(p+"\xff"), 3, time.Minute)
	t.Logf("%d keys over %d regions", n, regions)

	txn := mustBegin(t, c)
	defer func() { _ = txn.Rollback() }()
	// Uncommitted: one key changed, one deleted, one added past the end.
	mustSet(t, txn, string(key(10)), "mine")
	if err := txn.Delete(key(11)); err != nil {
		t.Fatal(err)
	}
	mustSet(t, txn, p+"99999", "added")
	want := func(i int) ([]byte, []byte) { return key(i), value(i) }
	it, err := txn.Iter([]byte(p), []byte(p+"\xff"))
	if err != nil {
		t.Fatalf("Iter: %v", err)
	}
	seen := 0
	for i := 0; it.Valid(); i++ {
		if i == 11 {
			i++
		}
		wk, wv := want(i)
		if i == 10 {
			wv = []byte("mine")
		}
		if i == n {
			wk, wv = []byte(p+"99999"), []byte("added")
		}
		if !bytes.Equal(it.Key(), wk) || !bytes.Equal(it.Value(), wv) {
			t.Fatalf("Iter entry %d = %q (%d bytes), want %q", seen, it.Key(), len(it.Value()), wk)
		}
		seen++
		if err := it.Next(); err != nil {
			t.Fatalf("Iter.Next after %q: %v", it.Key(), err)
		}
	}
	it.Close()
	if seen != n {
		t.Fatalf("Iter saw %d entries, want %d", seen, n)
	}

	rev, err := txn.IterReverse([]byte(p+"\xff"), []byte(p))
	if err != nil {
		t.Fatalf("IterReverse: %v", err)
	}
	count := 0
	var prev []byte
	for ; rev.Valid(); count++ {
		if prev != nil && bytes.Compare(rev.Key(), prev) >= 0 {
			t.Fatalf("IterReverse out of order: %q after %q", rev.Key(), prev)
		}
		prev = append(prev[:0], rev.Key()...)
		if err := rev.Next(); err != nil {
			t.Fatalf("IterReverse.Next: %v", err)
		}
	}
	rev.Close()
	if count != n {
		t.Fatalf("IterReverse saw %d entries, want %d", count, n)
	}
}

// mustRegionsAtLeast waits until placement reports at least min regions over
// [start, end), and returns how many.
func mustRegionsAtLeast(t *testing.T, c *txnkv.Client, start, end []byte, min int, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		bo := tikv.NewBackofferWithVars(ctxTimeout(t), 5000, nil)
		regions, err := c.GetRegionCache().LoadRegionsInKeyRange(bo, start, end)
		if err == nil && len(regions) >= min {
			return len(regions)
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d regions over the range after %v (%d, err %v)", min, limit, len(regions), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestGCSafePoint: the client's GC API (resolve locks below the safe point,
// then UpdateGCSafePoint on placement) moves the cluster's GC safe point; the
// client's safe point checker, which reads it through etcd on the placement
// port, then refuses snapshots older than it with ErrGCTooEarly, while newer
// reads go on. It runs last among the txn tests (its safe point is cluster-wide).
func TestGCSafePoint(t *testing.T) {
	c := mustTxnClient(t)
	key := []byte(prefix("gc") + "k")
	commitValue(t, c, key, "v1")
	oldTS, err := c.GetTimestamp(ctxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	commitValue(t, c, key, "v2")
	safePoint, err := c.GetTimestamp(ctxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GC(ctxTimeout(t), safePoint)
	if err != nil {
		t.Fatalf("GC(%d): %v", safePoint, err)
	}
	if got != safePoint {
		t.Fatalf("GC(%d) answered safe point %d", safePoint, got)
	}
	// A lower request never moves it back.
	if back, err := c.GC(ctxTimeout(t), oldTS); err != nil || back != safePoint {
		t.Fatalf("GC(%d) below the safe point = %d, %v; want %d", oldTS, back, err, safePoint)
	}
	// The checker polls etcd every 10 s.
	deadline := time.Now().Add(45 * time.Second)
	for {
		_, err := c.GetSnapshot(oldTS).Get(ctxTimeout(t), key)
		var tooEarly *tikverr.ErrGCTooEarly
		if errors.As(err, &tooEarly) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a snapshot below the GC safe point still reads (err %v) after 45 s", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	mustEqualStrings(t, "read above the safe point", mustRead(t, c, key), []string{"v2"})
}
