package clients

import (
	"context"
	"testing"

	"github.com/tikv/client-go/v2/txnkv"
)

// TestArticleProgram is the Go example of the TiKV article, unchanged:
// txnkv.NewClient, Begin, two Sets and Commit; then a new transaction reads
// both keys back.
func TestArticleProgram(t *testing.T) {
	client, err := txnkv.NewClient(pdEndpoints(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	txn, err := client.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("key1"), []byte("value1")); err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("key2"), []byte("value2")); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}

	reader, err := client.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"key1": "value1", "key2": "value2"} {
		got, err := reader.Get(ctxTimeout(t), []byte(key))
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		if string(got.Value) != want {
			t.Fatalf("Get(%s) = %q, want %q", key, got.Value, want)
		}
	}
	if err := reader.Rollback(); err != nil {
		t.Fatal(err)
	}
}
