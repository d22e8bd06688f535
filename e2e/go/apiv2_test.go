package clients

import (
	"testing"
)

// TestAPIV2BesideV1: raw and txn clients of API V2 (keyspace DEFAULT) run the
// same scenarios as V1 clients on the same cluster at the same time, and the
// two versions' data stay apart: the same key holds a different value for
// each.
func TestAPIV2BesideV1(t *testing.T) {
	rawV1, rawV2 := mustRawClient(t), mustRawClient(t, v2Raw()...)
	txnV1, txnV2 := mustTxnClient(t), mustTxnClient(t, v2Txn()...)

	t.Run("RawV2", func(t *testing.T) { rawSuite(t, rawV2) })
	t.Run("RawV2CompareAndSwap", func(t *testing.T) {
		cas := mustRawClient(t, v2Raw()...)
		cas.SetAtomicForCAS(true)
		rawCAS(t, cas)
	})
	t.Run("TxnV2", func(t *testing.T) { txnOptimistic(t, txnV2) })
	t.Run("TxnV2Protocols", func(t *testing.T) {
		for _, mode := range commitModes {
			commitProtocol(t, txnV2, mode)
		}
	})

	key := []byte(prefix("apart") + "k")
	if err := rawV1.Put(ctxTimeout(t), key, []byte("raw-v1")); err != nil {
		t.Fatal(err)
	}
	if err := rawV2.Put(ctxTimeout(t), key, []byte("raw-v2")); err != nil {
		t.Fatal(err)
	}
	commitValue(t, txnV1, key, "txn-v1")
	commitValue(t, txnV2, key, "txn-v2")
	mustRawValue(t, rawV1, key, "raw-v1")
	mustRawValue(t, rawV2, key, "raw-v2")
	mustEqualStrings(t, "V1 txn read", mustRead(t, txnV1, key), []string{"txn-v1"})
	mustEqualStrings(t, "V2 txn read", mustRead(t, txnV2, key), []string{"txn-v2"})
	if err := rawV2.Delete(ctxTimeout(t), key); err != nil {
		t.Fatal(err)
	}
	mustRawValue(t, rawV1, key, "raw-v1")
}
