// Command porcupine-kv checks a detcd-check JSON Lines kv history with porcupine, for the
// side-by-side figures in the README ("What makes the checker fast on etcd histories").
// Nothing in CI builds it.
//
//	DETCD_CHECK_WRITE_DIR=/tmp/h cargo bench -p detcd-check --no-default-features --bench check
//	cd sim/check/porcupine && go run . -state value /tmp/h/kv-1-key-20-p-10000-StaleRead.jsonl
//
// The model is porcupine's usual kv model partitioned by key, with the state either the
// value alone or the value and etcd's per-key version (checked where a read reports one).
// As detcd-check does, failed operations are left out and reads with an unknown outcome
// observe nothing; writes with an unknown outcome return at the end of the history, which
// porcupine reads as "at any time after the invocation, or never".
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

type event struct {
	Process int     `json:"process"`
	Type    string  `json:"type"`
	F       string  `json:"f"`
	Key     string  `json:"key"`
	Value   *string `json:"value"`
	// Present and null means "the key must be absent".
	Expect  json.RawMessage `json:"expect"`
	Version *uint64         `json:"version"`
}

type input struct {
	key    string
	f      string
	value  string
	expect *string
}

type output struct {
	// For reads: what was read.
	value   *string
	version *uint64
	// The outcome is unknown: any result fits.
	unknown bool
}

type state struct {
	value   *string
	version uint64
}

func same(a, b *string) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func model(versions bool) porcupine.Model {
	return porcupine.Model{
		PartitionEvent: func(h []porcupine.Event) [][]porcupine.Event {
			byKey := map[string][]porcupine.Event{}
			keyOf := map[int]string{}
			var order []string
			for _, e := range h {
				if e.Kind == porcupine.CallEvent {
					k := e.Value.(input).key
					keyOf[e.Id] = k
					if _, seen := byKey[k]; !seen {
						order = append(order, k)
					}
				}
				k := keyOf[e.Id]
				byKey[k] = append(byKey[k], e)
			}
			var parts [][]porcupine.Event
			for _, k := range order {
				parts = append(parts, byKey[k])
			}
			return parts
		},
		Init: func() interface{} { return state{} },
		Step: func(st, in, out interface{}) (bool, interface{}) {
			s := st.(state)
			i := in.(input)
			o := out.(output)
			write := func(v *string) state {
				if v == nil {
					return state{}
				}
				if !versions {
					return state{value: v}
				}
				return state{value: v, version: s.version + 1}
			}
			switch i.f {
			case "get":
				ok := o.unknown || (same(o.value, s.value) &&
					(!versions || o.version == nil || *o.version == s.version))
				return ok, s
			case "put":
				v := i.value
				return true, write(&v)
			case "delete":
				return true, write(nil)
			default: // cas; with an unknown outcome it may have found another value
				if !same(i.expect, s.value) {
					return o.unknown, s
				}
				v := i.value
				return true, write(&v)
			}
		},
		Equal: func(a, b interface{}) bool {
			x, y := a.(state), b.(state)
			return same(x.value, y.value) && x.version == y.version
		},
	}
}

func main() {
	stateFlag := flag.String("state", "value", "value or version")
	timeout := flag.Duration("timeout", 60*time.Second, "porcupine's time limit")
	flag.Parse()
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		panic(err)
	}
	started := time.Now()
	var events []porcupine.Event
	pending := map[int]int{}
	var late []int
	ops := map[int]input{}
	dropped := map[int]bool{}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var e event
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			panic(err)
		}
		if e.Type == "invoke" {
			in := input{key: e.Key, f: e.F}
			if e.Value != nil {
				in.value = *e.Value
			}
			if len(e.Expect) > 0 && string(e.Expect) != "null" {
				var v string
				if err := json.Unmarshal(e.Expect, &v); err != nil {
					panic(err)
				}
				in.expect = &v
			}
			id := len(ops)
			ops[id] = in
			pending[e.Process] = id
			events = append(events, porcupine.Event{ClientId: e.Process, Kind: porcupine.CallEvent, Value: in, Id: id})
			continue
		}
		id := pending[e.Process]
		delete(pending, e.Process)
		switch e.Type {
		case "ok":
			events = append(events, porcupine.Event{ClientId: e.Process, Kind: porcupine.ReturnEvent, Value: output{value: e.Value, version: e.Version}, Id: id})
		case "fail":
			dropped[id] = true
		default: // info: returns at the end
			late = append(late, id)
		}
	}
	for _, id := range pending {
		late = append(late, id)
	}
	for _, id := range late {
		if ops[id].f == "get" {
			dropped[id] = true
			continue
		}
		events = append(events, porcupine.Event{Kind: porcupine.ReturnEvent, Value: output{unknown: true}, Id: id})
	}
	kept := events[:0]
	for _, e := range events {
		if !dropped[e.Id] {
			kept = append(kept, e)
		}
	}
	parsed := time.Since(started)
	result := porcupine.CheckEventsTimeout(model(*stateFlag == "version"), kept, *timeout)
	fmt.Printf("%s parse_ms=%d total_ms=%d result=%s\n", flag.Arg(0), parsed.Milliseconds(), time.Since(started).Milliseconds(), result)
}
