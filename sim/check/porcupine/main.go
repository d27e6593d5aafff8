// Command porcupine-kv checks a detcd-check JSON Lines kv history with porcupine, for the
// side-by-side figures in the README ("What makes the checker fast on etcd histories").
// Nothing in CI builds it.
//
//	DETCD_CHECK_WRITE_DIR=/tmp/h cargo bench -p detcd-check --no-default-features --bench check
//	cd sim/check/porcupine && go run . -state value /tmp/h/kv-1-key-20-p-10000-StaleRead.jsonl
//
// The model is porcupine's usual kv model partitioned by key, with the state either the
// value alone or the value and etcd's per-key version (checked where a read reports one);
// or, with -state etcd, the etcd model as etcd's robustness tests give it to porcupine:
// one partition, the store revision and every key's value, revisions and version.
// As detcd-check does, failed operations are left out and reads with an unknown outcome
// observe nothing; writes with an unknown outcome return at the end of the history, which
// porcupine reads as "at any time after the invocation, or never".
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
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
	Expect         json.RawMessage `json:"expect"`
	Version        *uint64         `json:"version"`
	Revision       *uint64         `json:"revision"`
	ModRevision    *uint64         `json:"mod_revision"`
	CreateRevision *uint64         `json:"create_revision"`
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
	// Under -state etcd: the header revision, and for reads the key's revisions.
	revision, modRevision, createRevision *uint64
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

// One live key under the etcd model.
type rec struct {
	value                                string
	createRevision, modRevision, version uint64
}

// All keys under one revision counter, as etcd's robustness tests model etcd for
// porcupine; keys is never changed in place, hash is the XOR of the keys' hashes.
type etcdState struct {
	revision uint64
	keys     map[string]rec
	hash     uint64
}

func recHash(k string, r rec) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d", k, r.value, r.createRevision, r.modRevision, r.version)
	return h.Sum64()
}

// The state with key k set to r (or removed), one revision later.
func (s etcdState) write(k string, r *rec) etcdState {
	keys := make(map[string]rec, len(s.keys)+1)
	hash := s.hash
	for key, v := range s.keys {
		keys[key] = v
	}
	if old, ok := keys[k]; ok {
		hash ^= recHash(k, old)
		delete(keys, k)
	}
	if r != nil {
		keys[k] = *r
		hash ^= recHash(k, *r)
	}
	return etcdState{revision: s.revision + 1, keys: keys, hash: hash}
}

func fits(reported *uint64, actual uint64) bool {
	return reported == nil || *reported == actual
}

// The etcd model (detcd-check's -model etcd): one partition, the store revision checked
// against each response's header revision.
func etcdModel() porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return etcdState{revision: 1, keys: map[string]rec{}} },
		Step: func(st, in, out interface{}) (bool, interface{}) {
			s := st.(etcdState)
			i := in.(input)
			o := out.(output)
			old, present := s.keys[i.key]
			put := func() etcdState {
				r := rec{value: i.value, createRevision: s.revision + 1, modRevision: s.revision + 1, version: 1}
				if present {
					r.createRevision, r.version = old.createRevision, old.version+1
				}
				return s.write(i.key, &r)
			}
			var next etcdState
			switch i.f {
			case "get":
				if o.unknown {
					return true, s
				}
				var value *string
				var r rec
				if present {
					value, r = &old.value, old
				}
				ok := same(o.value, value) && fits(o.modRevision, r.modRevision) &&
					fits(o.createRevision, r.createRevision) && fits(o.version, r.version) &&
					fits(o.revision, s.revision)
				return ok, s
			case "put":
				next = put()
			case "delete":
				next = s
				if present {
					next = s.write(i.key, nil)
				}
			default:
				var value *string
				if present {
					value = &old.value
				}
				if !same(i.expect, value) {
					return o.unknown, s
				}
				next = put()
			}
			return o.unknown || fits(o.revision, next.revision), next
		},
		Hash: func(st interface{}) uint64 {
			s := st.(etcdState)
			return s.hash ^ s.revision*0x9e3779b97f4a7c15
		},
		Equal: func(a, b interface{}) bool {
			x, y := a.(etcdState), b.(etcdState)
			if x.revision != y.revision || x.hash != y.hash || len(x.keys) != len(y.keys) {
				return false
			}
			for k, v := range x.keys {
				if w, ok := y.keys[k]; !ok || w != v {
					return false
				}
			}
			return true
		},
	}
}

func main() {
	stateFlag := flag.String("state", "value", "value, version, or etcd (the etcd model)")
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
			events = append(events, porcupine.Event{ClientId: e.Process, Kind: porcupine.ReturnEvent, Value: output{value: e.Value, version: e.Version, revision: e.Revision, modRevision: e.ModRevision, createRevision: e.CreateRevision}, Id: id})
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
	m := model(*stateFlag == "version")
	if *stateFlag == "etcd" {
		m = etcdModel()
	}
	result := porcupine.CheckEventsTimeout(m, kept, *timeout)
	fmt.Printf("%s parse_ms=%d total_ms=%d result=%s\n", flag.Arg(0), parsed.Milliseconds(), time.Since(started).Milliseconds(), result)
}
