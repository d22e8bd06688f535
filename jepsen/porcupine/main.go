// Command porcupine-check judges a recorded register history for linearizability with
// Porcupine (github.com/anishathalye/porcupine), key by key.
//
//	porcupine-check <history.jsonl> [--viz out.html] [--timeout 60s]
//
// The history is JSON lines of register operations (jepsen/src/history.rs). It prints one JSON
// verdict line {"ok", "keys", "ops", "checked_ops", "failed_keys", "unknown_keys"} and exits 0
// when every key is linearizable, 1 when some key is not, 2 on bad input or usage, 3 when the
// timeout left some key undecided and none failed. --viz writes Porcupine's HTML visualization
// of the whole history (partial linearizations and the illegal points when it fails).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

const (
	exitOk      = 0
	exitIllegal = 1
	exitBad     = 2
	exitUnknown = 3
)

type options struct {
	history string
	viz     string
	timeout time.Duration
}

type verdict struct {
	Ok          bool     `json:"ok"`
	Keys        int      `json:"keys"`
	Ops         int      `json:"ops"`
	CheckedOps  int      `json:"checked_ops"`
	FailedKeys  []string `json:"failed_keys"`
	UnknownKeys []string `json:"unknown_keys"`
}

func parseArgs(args []string) (options, error) {
	var o options
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, inline := strings.Cut(arg, "=")
		if name != "--viz" && name != "--timeout" {
			if strings.HasPrefix(arg, "-") || o.history != "" {
				return o, fmt.Errorf("unexpected argument %q", arg)
			}
			o.history = arg
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				return o, fmt.Errorf("%s needs a value", name)
			}
			i++
			value = args[i]
		}
		if name == "--viz" {
			o.viz = value
			continue
		}
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return o, fmt.Errorf("--timeout %q is not a duration like 60s", value)
		}
		o.timeout = d
	}
	if o.history == "" {
		return o, fmt.Errorf("missing the history file")
	}
	return o, nil
}

// check decides each key; a zero timeout means no limit. The timeout bounds the whole run.
func check(h *history, timeout time.Duration) verdict {
	keys, byKey := h.partitions()
	v := verdict{Keys: len(keys), Ops: len(h.ops), FailedKeys: []string{}, UnknownKeys: []string{}}
	deadline := time.Now().Add(timeout)
	for _, k := range keys {
		v.CheckedOps += len(byKey[k])
		left := time.Duration(0)
		if timeout > 0 {
			left = max(time.Until(deadline), time.Millisecond)
		}
		switch porcupine.CheckOperationsTimeout(registerModel, byKey[k], left) {
		case porcupine.Illegal:
			v.FailedKeys = append(v.FailedKeys, k)
		case porcupine.Unknown:
			v.UnknownKeys = append(v.UnknownKeys, k)
		}
	}
	v.Ok = len(v.FailedKeys) == 0 && len(v.UnknownKeys) == 0
	return v
}

func visualize(h *history, timeout time.Duration, path string) error {
	keys, byKey := h.partitions()
	var all []porcupine.Operation
	for _, k := range keys {
		all = append(all, byKey[k]...)
	}
	_, info := porcupine.CheckOperationsVerbose(registerModel, all, timeout)
	return porcupine.VisualizePath(registerModel, info, path)
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "porcupine-check: %v\nusage: porcupine-check <history.jsonl> [--viz out.html] [--timeout 60s]\n", err)
		return exitBad
	}
	f, err := os.Open(o.history)
	if err != nil {
		fmt.Fprintf(stderr, "porcupine-check: %v\n", err)
		return exitBad
	}
	h, err := readHistory(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(stderr, "porcupine-check: %s: %v\n", o.history, err)
		return exitBad
	}
	v := check(h, o.timeout)
	if o.viz != "" {
		if err := visualize(h, o.timeout, o.viz); err != nil {
			fmt.Fprintf(stderr, "porcupine-check: writing %s: %v\n", o.viz, err)
			return exitBad
		}
	}
	line, _ := json.Marshal(v)
	fmt.Fprintln(stdout, string(line))
	switch {
	case len(v.FailedKeys) > 0:
		return exitIllegal
	case len(v.UnknownKeys) > 0:
		return exitUnknown
	default:
		return exitOk
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
