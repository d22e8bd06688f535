package main

// Reading a register history (the JSON-lines shape of jepsen/src/history.rs) and turning it
// into Porcupine operations, one partition per key.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// registerOp is one recorded operation, as the Rust runner writes it.
type registerOp struct {
	Process  *uint64 `json:"process"`
	CallNs   *uint64 `json:"call_ns"`
	ReturnNs *uint64 `json:"return_ns"`
	Key      *string `json:"key"`
	F        string  `json:"f"`
	Value    *string `json:"value"`
	Expected *string `json:"expected"`
	Outcome  string  `json:"outcome"`
	Read     *string `json:"read"`
	CasOk    *bool   `json:"cas_ok"`
}

// history is a parsed register history.
type history struct {
	ops []registerOp
}

// readHistory parses JSON lines; blank lines are skipped. Errors name the line.
func readHistory(r io.Reader) (*history, error) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 256*1024*1024)
	h := &history{}
	line := 0
	for scanner.Scan() {
		line++
		text := scanner.Bytes()
		if len(trimSpace(text)) == 0 {
			continue
		}
		var op registerOp
		if err := json.Unmarshal(text, &op); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if err := op.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		h.ops = append(h.ops, op)
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("after line %d: %v", line, err)
	}
	return h, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// validate checks the fields the model relies on.
func (op *registerOp) validate() error {
	switch {
	case op.Process == nil || op.CallNs == nil || op.ReturnNs == nil || op.Key == nil:
		return fmt.Errorf("process, call_ns, return_ns and key are required")
	case op.Outcome != "ok" && op.Outcome != "fail" && op.Outcome != "info":
		return fmt.Errorf("outcome %q is not ok, fail or info", op.Outcome)
	case op.F != "read" && op.F != "write" && op.F != "cas":
		return fmt.Errorf("f %q is not read, write or cas", op.F)
	case (op.F == "write" || op.F == "cas") && op.Value == nil:
		return fmt.Errorf("%s without a value", op.F)
	case op.F == "cas" && op.Outcome == "ok" && op.CasOk == nil:
		return fmt.Errorf("ok cas without cas_ok")
	case op.Outcome == "ok" && *op.ReturnNs < *op.CallNs:
		return fmt.Errorf("return_ns %d before call_ns %d", *op.ReturnNs, *op.CallNs)
	case *op.CallNs > maxTime || *op.ReturnNs > maxTime:
		return fmt.Errorf("times must stay below 2^62 ns")
	}
	return nil
}

// maxTime keeps every time, and the "end of history" after them, inside an int64.
const maxTime = 1 << 62

// partitions returns the Porcupine operations of each key, keys sorted. Failed operations
// certainly did not happen and are dropped; indeterminate reads constrain nothing and are
// dropped too; indeterminate writes and cas return at the end of the history with an unknown
// output. Clients are numbered densely from the processes, as the visualization wants.
func (h *history) partitions() ([]string, map[string][]porcupineOp) {
	end := int64(0)
	clients := map[uint64]int{}
	for _, op := range h.ops {
		end = max(end, int64(*op.CallNs)+1, int64(*op.ReturnNs)+1)
		if _, ok := clients[*op.Process]; !ok {
			clients[*op.Process] = len(clients)
		}
	}
	byKey := map[string][]porcupineOp{}
	for _, op := range h.ops {
		if op.Outcome == "fail" || (op.Outcome == "info" && op.F == "read") {
			continue
		}
		ret := int64(*op.ReturnNs)
		out := regOutput{Known: op.Outcome == "ok", Read: op.Read}
		if op.CasOk != nil {
			out.CasOk = *op.CasOk
		}
		if !out.Known {
			ret = end
		}
		in := regInput{Key: *op.Key, F: op.F, Value: op.Value, Expected: op.Expected}
		byKey[*op.Key] = append(byKey[*op.Key], newOp(clients[*op.Process], in, int64(*op.CallNs), out, ret))
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, byKey
}
