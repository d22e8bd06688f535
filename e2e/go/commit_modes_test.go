package clients

import (
	"fmt"
	"testing"

	"github.com/tikv/client-go/v2/txnkv"
)

// commitMode is one setting of client-go's async commit and 1PC switches.
type commitMode struct {
	name        string
	asyncCommit bool
	onePC       bool
}

var commitModes = []commitMode{
	{"2PC", false, false},
	{"AsyncCommit", true, false},
	{"1PC", false, true},
	{"AsyncCommitAnd1PC", true, true},
}

func (m commitMode) apply(txn *txnkvTxn) {
	txn.SetEnableAsyncCommit(m.asyncCommit)
	txn.SetEnable1PC(m.onePC)
}

// wantSingleKey is the protocol client-go must end up using for a small
// transaction whose keys all lie in one region, and wantMultiRegion the one
// for a transaction spanning regions (1PC needs a single region).
func (m commitMode) wantSingleRegion() string {
	switch {
	case m.onePC:
		return "1pc"
	case m.asyncCommit:
		return "async_commit"
	default:
		return "2pc"
	}
}

// TestTxnCommitProtocols: with async commit and 1PC each on and off, a
// transaction commits with exactly the protocol asked for (client-go's own
// commit report: no silent fallback to 2PC), its writes are visible to a later
// transaction and invisible to one that started before the commit.
func TestTxnCommitProtocols(t *testing.T) {
	c := mustTxnClient(t)
	for _, mode := range commitModes {
		t.Run(mode.name, func(t *testing.T) { commitProtocol(t, c, mode) })
	}
}

func commitProtocol(t *testing.T, c *txnkv.Client, mode commitMode) {
	p := prefix("protocol-" + mode.name)
	keys := make([][]byte, 5)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("%sk%d", p, i))
	}
	before := mustBegin(t, c)
	txn := mustBegin(t, c)
	mode.apply(txn)
	for i, k := range keys {
		mustSet(t, txn, string(k), fmt.Sprintf("v%d", i))
	}
	info, err := commitWithInfo(ctxTimeout(t), txn)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if info.TxnCommitMode != mode.wantSingleRegion() || info.AsyncCommitFallback || info.OnePCFallback {
		t.Fatalf("commit report %+v, want mode %s without fallback", info.TxnInfo, mode.wantSingleRegion())
	}
	if info.CommitTS <= info.StartTS {
		t.Fatalf("commit ts %d not after start ts %d", info.CommitTS, info.StartTS)
	}
	got := mustRead(t, c, keys...)
	mustEqualStrings(t, "after commit", got, []string{"v0", "v1", "v2", "v3", "v4"})
	for _, k := range keys {
		if v := mustGet(t, before, k); v != nil {
			t.Fatalf("txn started before the commit read %s = %q", k, v)
		}
	}
	_ = before.Rollback()
}
