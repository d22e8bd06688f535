package main

// The sequential specification Porcupine checks against: one register per key, which may be
// absent, with read, write and compare-and-swap.

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// regInput is what an operation asked for.
type regInput struct {
	Key      string
	F        string  // "read", "write" or "cas"
	Value    *string // write: the value; cas: the new value
	Expected *string // cas: the required current value; nil = the key must be absent
}

// regOutput is what the client saw; Known is false for indeterminate operations.
type regOutput struct {
	Known bool
	Read  *string // read: the value seen; nil = not found
	CasOk bool    // cas: whether it swapped
}

// regState is the register's value; comparable, so Porcupine can cache states with ==.
type regState struct {
	Exists bool
	Value  string
}

type porcupineOp = porcupine.Operation

func newOp(client int, in regInput, call int64, out regOutput, ret int64) porcupineOp {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func holds(st regState, v *string) bool {
	if v == nil {
		return !st.Exists
	}
	return st.Exists && st.Value == *v
}

func step(state, input, output interface{}) (bool, interface{}) {
	st := state.(regState)
	in := input.(regInput)
	out := output.(regOutput)
	switch in.F {
	case "read":
		return !out.Known || holds(st, out.Read), st
	case "write":
		return true, regState{Exists: true, Value: *in.Value}
	default: // cas
		swaps := holds(st, in.Expected)
		next := st
		if swaps {
			next = regState{Exists: true, Value: *in.Value}
		}
		return !out.Known || out.CasOk == swaps, next
	}
}

func show(v *string) string {
	if v == nil {
		return "∅"
	}
	return fmt.Sprintf("%q", *v)
}

func describeOperation(input, output interface{}) string {
	in := input.(regInput)
	out := output.(regOutput)
	result := "?"
	switch {
	case !out.Known:
	case in.F == "read":
		result = show(out.Read)
	case in.F == "cas":
		result = fmt.Sprint(out.CasOk)
	default:
		result = "ok"
	}
	switch in.F {
	case "read":
		return fmt.Sprintf("get(%q) -> %s", in.Key, result)
	case "write":
		return fmt.Sprintf("put(%q, %s) -> %s", in.Key, show(in.Value), result)
	default:
		return fmt.Sprintf("cas(%q, %s -> %s) -> %s", in.Key, show(in.Expected), show(in.Value), result)
	}
}

func describeState(state interface{}) string {
	st := state.(regState)
	if !st.Exists {
		return "∅"
	}
	return fmt.Sprintf("%q", st.Value)
}

// partitionByKey splits a history so each key is checked on its own.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(regInput).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// registerModel is the register specification, partitioned by key.
var registerModel = porcupine.Model{
	Partition:         partitionByKey,
	Init:              func() interface{} { return regState{} },
	Step:              step,
	DescribeOperation: describeOperation,
	DescribeState:     describeState,
}
