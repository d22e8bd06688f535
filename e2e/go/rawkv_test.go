package clients

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/tikv/client-go/v2/rawkv"
)

// rawSuite runs every rawkv scenario against one client.
func rawSuite(t *testing.T, client *rawkv.Client) {
	t.Run("PutGetDelete", func(t *testing.T) { rawPutGetDelete(t, client) })
	t.Run("Batch", func(t *testing.T) { rawBatch(t, client) })
	t.Run("ScanAndReverseScan", func(t *testing.T) { rawScans(t, client) })
	t.Run("DeleteRange", func(t *testing.T) { rawDeleteRange(t, client) })
	t.Run("TTL", func(t *testing.T) { rawTTL(t, client) })
}

// TestRawKV: put/get/batch/scan/reverse scan/delete/delete-range/TTL through
// an API V1 rawkv client.
func TestRawKV(t *testing.T) {
	rawSuite(t, mustRawClient(t))
}

// TestRawCompareAndSwap: CAS in atomic mode, against an absent and a present
// value, with the previous value returned on failure.
func TestRawCompareAndSwap(t *testing.T) {
	client := mustRawClient(t)
	client.SetAtomicForCAS(true)
	rawCAS(t, client)
}

func rawPutGetDelete(t *testing.T, c *rawkv.Client) {
	key := []byte(prefix("raw") + "k")
	if v, err := c.Get(ctxTimeout(t), key); err != nil || v != nil {
		t.Fatalf("Get(absent) = %q, %v; want nil, nil", v, err)
	}
	if err := c.Put(ctxTimeout(t), key, []byte("v1")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	mustRawValue(t, c, key, "v1")
	if err := c.Put(ctxTimeout(t), key, []byte("v2")); err != nil {
		t.Fatalf("Put (overwrite): %v", err)
	}
	mustRawValue(t, c, key, "v2")
	if err := c.Delete(ctxTimeout(t), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if v, err := c.Get(ctxTimeout(t), key); err != nil || v != nil {
		t.Fatalf("Get(deleted) = %q, %v; want nil, nil", v, err)
	}
}

func rawBatch(t *testing.T, c *rawkv.Client) {
	p := prefix("raw-batch")
	var keys, values [][]byte
	for i := 0; i < 100; i++ {
		keys = append(keys, []byte(fmt.Sprintf("%sk%03d", p, i)))
		values = append(values, []byte(fmt.Sprintf("v%03d", i)))
	}
	if err := c.BatchPut(ctxTimeout(t), keys, values); err != nil {
		t.Fatalf("BatchPut: %v", err)
	}
	probe := [][]byte{keys[7], []byte(p + "absent"), keys[99], keys[0]}
	got, err := c.BatchGet(ctxTimeout(t), probe)
	if err != nil {
		t.Fatalf("BatchGet: %v", err)
	}
	want := []string{"v007", "", "v099", "v000"}
	for i := range probe {
		if string(got[i]) != want[i] {
			t.Fatalf("BatchGet[%d] (%s) = %q, want %q", i, probe[i], got[i], want[i])
		}
	}
	if got[1] != nil {
		t.Fatalf("BatchGet of an absent key = %q, want nil", got[1])
	}
	if err := c.BatchDelete(ctxTimeout(t), keys[:50]); err != nil {
		t.Fatalf("BatchDelete: %v", err)
	}
	left, _, err := c.Scan(ctxTimeout(t), []byte(p), []byte(p+"\xff"), 1000)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(left) != 50 || !bytes.Equal(left[0], keys[50]) {
		t.Fatalf("after BatchDelete of 50: %d keys left, first %q", len(left), first(left))
	}
}

func rawScans(t *testing.T, c *rawkv.Client) {
	p := prefix("raw-scan")
	keys, values := numbered(p, 20)
	if err := c.BatchPut(ctxTimeout(t), keys, values); err != nil {
		t.Fatalf("BatchPut: %v", err)
	}
	// [k05, k15) forwards, limit 100: ten keys in order.
	got, vals, err := c.Scan(ctxTimeout(t), keys[5], keys[15], 100)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	mustKeys(t, "Scan [5,15)", got, keys[5:15])
	if string(vals[0]) != "v05" {
		t.Fatalf("Scan value = %q, want v05", vals[0])
	}
	// Limit stops early.
	got, _, err = c.Scan(ctxTimeout(t), []byte(p), []byte(p+"\xff"), 3)
	if err != nil {
		t.Fatalf("Scan limit 3: %v", err)
	}
	mustKeys(t, "Scan limit 3", got, keys[:3])
	// Key-only scans return no values.
	got, vals, err = c.Scan(ctxTimeout(t), keys[0], keys[2], 10, rawkv.ScanKeyOnly())
	if err != nil {
		t.Fatalf("Scan key only: %v", err)
	}
	mustKeys(t, "Scan key only", got, keys[:2])
	for _, v := range vals {
		if len(v) != 0 {
			t.Fatalf("key-only scan returned value %q", v)
		}
	}
	// Reverse: [k05, k15) from the top down.
	got, vals, err = c.ReverseScan(ctxTimeout(t), keys[15], keys[5], 100)
	if err != nil {
		t.Fatalf("ReverseScan: %v", err)
	}
	mustKeys(t, "ReverseScan [5,15)", got, reversed(keys[5:15]))
	if string(vals[0]) != "v14" {
		t.Fatalf("ReverseScan first value = %q, want v14", vals[0])
	}
	got, _, err = c.ReverseScan(ctxTimeout(t), []byte(p+"\xff"), []byte(p), 4)
	if err != nil {
		t.Fatalf("ReverseScan limit 4: %v", err)
	}
	mustKeys(t, "ReverseScan limit 4", got, reversed(keys[16:]))
}

func rawDeleteRange(t *testing.T, c *rawkv.Client) {
	p := prefix("raw-delrange")
	keys, values := numbered(p, 20)
	if err := c.BatchPut(ctxTimeout(t), keys, values); err != nil {
		t.Fatalf("BatchPut: %v", err)
	}
	if err := c.DeleteRange(ctxTimeout(t), keys[3], keys[17]); err != nil {
		t.Fatalf("DeleteRange: %v", err)
	}
	got, _, err := c.Scan(ctxTimeout(t), []byte(p), []byte(p+"\xff"), 100)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	want := append(append([][]byte{}, keys[:3]...), keys[17:]...)
	mustKeys(t, "after DeleteRange [3,17)", got, want)
}

func rawTTL(t *testing.T, c *rawkv.Client) {
	p := prefix("raw-ttl")
	short, long, plain := []byte(p+"short"), []byte(p+"long"), []byte(p+"plain")
	if err := c.PutWithTTL(ctxTimeout(t), short, []byte("s"), 2); err != nil {
		t.Fatalf("PutWithTTL: %v", err)
	}
	if err := c.PutWithTTL(ctxTimeout(t), long, []byte("l"), 3600); err != nil {
		t.Fatalf("PutWithTTL: %v", err)
	}
	if err := c.Put(ctxTimeout(t), plain, []byte("p")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	ttl, err := c.GetKeyTTL(ctxTimeout(t), long)
	if err != nil || ttl == nil || *ttl == 0 || *ttl > 3600 {
		t.Fatalf("GetKeyTTL(long) = %v, %v; want 0 < ttl <= 3600", deref(ttl), err)
	}
	ttl, err = c.GetKeyTTL(ctxTimeout(t), plain)
	if err != nil || ttl == nil || *ttl != 0 {
		t.Fatalf("GetKeyTTL(no ttl) = %v, %v; want 0", deref(ttl), err)
	}
	ttl, err = c.GetKeyTTL(ctxTimeout(t), []byte(p+"absent"))
	if err != nil || ttl != nil {
		t.Fatalf("GetKeyTTL(absent) = %v, %v; want nil", deref(ttl), err)
	}
	mustRawValue(t, c, short, "s")
	// The short key expires (TTL 2 s): poll with a bound.
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := c.Get(ctxTimeout(t), short)
		if err != nil {
			t.Fatalf("Get(short): %v", err)
		}
		if v == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key with TTL 2 s still readable after 15 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustRawValue(t, c, long, "l")
	got, _, err := c.Scan(ctxTimeout(t), []byte(p), []byte(p+"\xff"), 10)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	mustKeys(t, "Scan after expiry", got, [][]byte{long, plain})
}

func rawCAS(t *testing.T, c *rawkv.Client) {
	key := []byte(prefix("raw-cas") + "k")
	prev, ok, err := c.CompareAndSwap(ctxTimeout(t), key, nil, []byte("a"))
	if err != nil || !ok || prev != nil {
		t.Fatalf("CAS(absent -> a) = %q, %v, %v; want nil, true", prev, ok, err)
	}
	prev, ok, err = c.CompareAndSwap(ctxTimeout(t), key, nil, []byte("b"))
	if err != nil || ok || string(prev) != "a" {
		t.Fatalf("CAS(absent -> b) on a present key = %q, %v, %v; want a, false", prev, ok, err)
	}
	prev, ok, err = c.CompareAndSwap(ctxTimeout(t), key, []byte("x"), []byte("b"))
	if err != nil || ok || string(prev) != "a" {
		t.Fatalf("CAS(x -> b) = %q, %v, %v; want a, false", prev, ok, err)
	}
	prev, ok, err = c.CompareAndSwap(ctxTimeout(t), key, []byte("a"), []byte("b"))
	if err != nil || !ok || string(prev) != "a" {
		t.Fatalf("CAS(a -> b) = %q, %v, %v; want a, true", prev, ok, err)
	}
	mustRawValue(t, c, key, "b")
	if err := c.Delete(ctxTimeout(t), key); err != nil {
		t.Fatalf("Delete in atomic mode: %v", err)
	}
	prev, ok, err = c.CompareAndSwap(ctxTimeout(t), key, []byte("b"), []byte("c"))
	if err != nil || ok || prev != nil {
		t.Fatalf("CAS(b -> c) on a deleted key = %q, %v, %v; want nil, false", prev, ok, err)
	}
}

func mustRawValue(t *testing.T, c *rawkv.Client, key []byte, want string) {
	t.Helper()
	v, err := c.Get(ctxTimeout(t), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	if string(v) != want {
		t.Fatalf("Get(%s) = %q, want %q", key, v, want)
	}
}

// numbered returns keys p+"k00".. and values "v00"...
func numbered(p string, n int) (keys, values [][]byte) {
	for i := 0; i < n; i++ {
		keys = append(keys, []byte(fmt.Sprintf("%sk%02d", p, i)))
		values = append(values, []byte(fmt.Sprintf("v%02d", i)))
	}
	return keys, values
}

func mustKeys(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys %q, want %d %q", what, len(got), got, len(want), want)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: key %d = %q, want %q", what, i, got[i], want[i])
		}
	}
}

func reversed(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[len(keys)-1-i] = k
	}
	return out
}

func first(keys [][]byte) []byte {
	if len(keys) == 0 {
		return nil
	}
	return keys[0]
}

func deref(p *uint64) any {
	if p == nil {
		return nil
	}
	return *p
}
