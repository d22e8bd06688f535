package clients

import (
	"context"
	"encoding/json"
	"testing"

	tikverr "github.com/tikv/client-go/v2/error"
	"github.com/tikv/client-go/v2/txnkv"
	"github.com/tikv/client-go/v2/txnkv/transaction"
)

// txnkvTxn is client-go's transaction type.
type txnkvTxn = transaction.KVTxn

// commitInfo is what client-go reports about a commit through the commit
// callback: the protocol it really used and whether it fell back.
type commitInfo struct {
	transaction.TxnInfo
}

// mustBegin starts a transaction or fails the test.
func mustBegin(t testing.TB, c *txnkv.Client) *transaction.KVTxn {
	t.Helper()
	txn, err := c.Begin()
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return txn
}

// commitWithInfo commits txn and returns client-go's own account of how.
func commitWithInfo(ctx context.Context, txn *transaction.KVTxn) (commitInfo, error) {
	var info commitInfo
	txn.SetCommitCallback(func(raw string, _ error) {
		_ = json.Unmarshal([]byte(raw), &info.TxnInfo)
	})
	err := txn.Commit(ctx)
	return info, err
}

// mustGet reads key in txn; absent reads as nil.
func mustGet(t testing.TB, txn *transaction.KVTxn, key []byte) []byte {
	t.Helper()
	v, err := txn.Get(ctxTimeout(t), key)
	if tikverr.IsErrNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("Get(%s) at %d: %v", key, txn.StartTS(), err)
	}
	return v.Value
}

// mustRead reads keys in a fresh transaction.
func mustRead(t testing.TB, c *txnkv.Client, keys ...[]byte) []string {
	t.Helper()
	txn := mustBegin(t, c)
	defer func() { _ = txn.Rollback() }()
	out := make([]string, len(keys))
	for i, k := range keys {
		v := mustGet(t, txn, k)
		if v == nil {
			out[i] = "<absent>"
		} else {
			out[i] = string(v)
		}
	}
	return out
}

func mustSet(t testing.TB, txn *transaction.KVTxn, key, value string) {
	t.Helper()
	if err := txn.Set([]byte(key), []byte(value)); err != nil {
		t.Fatalf("Set(%s): %v", key, err)
	}
}

func mustEqualStrings(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s = %q, want %q", what, got, want)
		}
	}
}
