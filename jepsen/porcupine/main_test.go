package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// op renders one history line; read and expected may be "" for null.
func op(process, call, ret int, key, f, value, expected, outcome, read string, casOk string) string {
	str := func(s string) string {
		if s == "" {
			return "null"
		}
		b, _ := json.Marshal(s)
		return string(b)
	}
	if casOk == "" {
		casOk = "null"
	}
	return `{"process":` + itoa(process) + `,"call_ns":` + itoa(call) + `,"return_ns":` + itoa(ret) +
		`,"key":` + str(key) + `,"f":"` + f + `","value":` + str(value) + `,"expected":` + str(expected) +
		`,"outcome":"` + outcome + `","read":` + str(read) + `,"cas_ok":` + casOk + "}"
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func mustCheck(t *testing.T, lines ...string) verdict {
	t.Helper()
	h, err := readHistory(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	return check(h, 0)
}

func TestConcurrentWritesAndReadsAreLinearizable(t *testing.T) {
	v := mustCheck(t,
		op(0, 0, 10, "x", "write", "1", "", "ok", "", ""),
		op(1, 5, 20, "x", "write", "2", "", "ok", "", ""),
		op(2, 6, 15, "x", "read", "", "", "ok", "1", ""), // concurrent with the write of 2
		op(2, 21, 30, "x", "read", "", "", "ok", "2", ""),
		op(3, 31, 40, "x", "cas", "3", "2", "ok", "", "true"),
		op(3, 41, 50, "x", "cas", "4", "2", "ok", "", "false"),
		op(4, 0, 1, "y", "read", "", "", "ok", "", ""), // y not found yet
	)
	if !v.Ok || v.Keys != 2 || v.CheckedOps != 7 || len(v.FailedKeys) != 0 {
		t.Fatalf("want linearizable over 2 keys, got %+v", v)
	}
}

func TestStaleReadAfterCompletedWriteIsNotLinearizable(t *testing.T) {
	v := mustCheck(t,
		op(0, 0, 10, "x", "write", "1", "", "ok", "", ""),
		op(1, 20, 30, "x", "write", "2", "", "ok", "", ""),
		op(2, 40, 50, "x", "read", "", "", "ok", "1", ""), // the write of 2 had completed
		op(3, 0, 5, "y", "write", "a", "", "ok", "", ""),
	)
	if v.Ok || len(v.FailedKeys) != 1 || v.FailedKeys[0] != "x" {
		t.Fatalf("want key x to fail, got %+v", v)
	}
}

func TestIndeterminateWriteMayOrMayNotHappen(t *testing.T) {
	info := op(0, 0, 1, "x", "write", "1", "", "info", "", "")
	seen := op(1, 100, 110, "x", "read", "", "", "ok", "1", "")
	unseen := op(1, 100, 110, "x", "read", "", "", "ok", "", "")
	if v := mustCheck(t, info, seen); !v.Ok {
		t.Fatalf("an info write may take effect: %+v", v)
	}
	if v := mustCheck(t, info, unseen); !v.Ok {
		t.Fatalf("an info write may never take effect: %+v", v)
	}
	// But once seen, it cannot vanish again.
	if v := mustCheck(t, info, seen, op(1, 200, 210, "x", "read", "", "", "ok", "", "")); v.Ok {
		t.Fatalf("a value that appeared cannot disappear: %+v", v)
	}
}

func TestFailedOperationsNeverHappened(t *testing.T) {
	v := mustCheck(t,
		op(0, 0, 10, "x", "write", "1", "", "fail", "", ""),
		op(1, 20, 30, "x", "read", "", "", "ok", "1", ""),
	)
	if v.Ok {
		t.Fatalf("reading a failed write must not be linearizable: %+v", v)
	}
}

func TestCasOnAbsentKey(t *testing.T) {
	v := mustCheck(t,
		op(0, 0, 10, "x", "cas", "1", "", "ok", "", "true"),
		op(1, 20, 30, "x", "cas", "2", "", "ok", "", "true"), // x exists now: must fail
	)
	if v.Ok {
		t.Fatalf("a second create-if-absent cannot succeed: %+v", v)
	}
}

func TestBadInputNamesTheLine(t *testing.T) {
	for _, bad := range []string{
		`{"process":1}`,
		op(0, 0, 1, "x", "frobnicate", "", "", "ok", "", ""),
		op(0, 0, 1, "x", "cas", "1", "", "ok", "", ""),
		op(0, 9, 1, "x", "read", "", "", "ok", "", ""),
		`not json`,
	} {
		_, err := readHistory(strings.NewReader("\n" + bad))
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: want an error naming line 2, got %v", bad, err)
		}
	}
}

func TestRunPrintsVerdictExitCodeAndVisualization(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.jsonl")
	lines := op(0, 0, 10, "x", "write", "1", "", "ok", "", "") + "\n" +
		op(1, 20, 30, "x", "read", "", "", "ok", "", "") + "\n"
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	viz := filepath.Join(dir, "out.html")
	var stdout, stderr bytes.Buffer
	if code := run([]string{path, "--viz", viz}, &stdout, &stderr); code != exitIllegal {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	var v verdict
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil || v.Ok || v.FailedKeys[0] != "x" || v.Ops != 2 {
		t.Fatalf("verdict %q: %v", stdout.String(), err)
	}
	if html, err := os.ReadFile(viz); err != nil || !bytes.Contains(html, []byte("<html")) {
		t.Fatalf("visualization not written: %v", err)
	}
	if code := run([]string{"--timeout", "soon", path}, &stdout, &stderr); code != exitBad {
		t.Fatalf("bad timeout: exit %d", code)
	}
	if code := run([]string{filepath.Join(dir, "missing.jsonl")}, &stdout, &stderr); code != exitBad {
		t.Fatalf("missing file: exit %d", code)
	}
}
