package apicache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kedge-io/kedge/pkg/pki"
)

// entry is one cached answer: a collection (what a LIST, or a WATCH that
// sends its initial events, returned, kept current by the WATCH events the
// kubelet receives), or one object (a GET, a service account token).
type entry struct {
	Key string `json:"key"`
	// A collection: its list kind and version, the resourceVersion it is
	// current at, and its items by namespace/name.
	List            bool                       `json:"list,omitempty"`
	Kind            string                     `json:"kind,omitempty"`
	APIVersion      string                     `json:"apiVersion,omitempty"`
	ResourceVersion string                     `json:"resourceVersion,omitempty"`
	Items           map[string]json.RawMessage `json:"items,omitempty"`
	// One object, with the status code it was answered with (a token
	// request answers 201) and, for a token, when it expires.
	Object  json.RawMessage `json:"object,omitempty"`
	Code    int             `json:"code,omitempty"`
	Expires time.Time       `json:"expires,omitzero"`
	// Used is when the kubelet last asked for it or it last changed.
	Used time.Time `json:"used"`
}

// store is the cache: entries in memory, each persisted as a 0600 file in
// dir (0700), written at most once per flush.
type store struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	dirty   map[string]bool
}

// openStore loads the entries persisted in dir, creating it (0700). A file
// that cannot be read is logged and removed: the cache only ever helps.
func openStore(dir string, log *slog.Logger) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", dir, err)
	}
	s := &store{dir: dir, log: log, entries: map[string]*entry{}, dirty: map[string]bool{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		var e entry
		if err == nil {
			err = json.Unmarshal(raw, &e)
		}
		if err == nil && e.Key == "" {
			err = errors.New("no key")
		}
		if err != nil {
			log.Warn("dropping an unreadable cache file", "file", f, "err", err)
			_ = os.Remove(f)
			continue
		}
		s.entries[e.Key] = &e
	}
	return s, nil
}

// fileOf is the file of an entry: a hash of its key, which holds names.
func (s *store) fileOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:16])+".json")
}

// len is the number of entries.
func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// touch marks key as used now.
func (s *store) touch(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil {
		e.Used = time.Now()
		s.dirty[key] = true
	}
}

// putObject stores one object answered with code.
func (s *store) putObject(key string, code int, obj []byte, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[key] = &entry{Key: key, Object: slices.Clone(obj), Code: code, Expires: expires, Used: time.Now()}
	s.dirty[key] = true
}

// listBody is the part of a List the cache reads.
type listBody struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Metadata   metav1.ListMeta   `json:"metadata"`
	Items      []json.RawMessage `json:"items"`
}

// putList stores a LIST answer as the collection of key.
func (s *store) putList(key string, body []byte) error {
	var l listBody
	if err := json.Unmarshal(body, &l); err != nil {
		return err
	}
	if l.Metadata.Continue != "" {
		return nil // one page: not the whole collection
	}
	items := map[string]json.RawMessage{}
	for _, it := range l.Items {
		var m objectMeta
		if err := json.Unmarshal(it, &m); err != nil {
			return err
		}
		items[m.id()] = it
	}
	s.replace(key, l.Kind, l.APIVersion, l.Metadata.ResourceVersion, items)
	return nil
}

// replace sets the whole collection of key.
func (s *store) replace(key, kind, apiVersion, rv string, items map[string]json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[key] = &entry{Key: key, List: true, Kind: kind, APIVersion: apiVersion, ResourceVersion: rv, Items: items, Used: time.Now()}
	s.dirty[key] = true
}

// apply changes one item of the collection of key (obj nil: deletes it) and
// moves it to rv. It reports false when key has no collection: events
// alone never make one, as they do not say what existed before.
func (s *store) apply(key, id string, obj json.RawMessage, rv string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil || !e.List {
		return false
	}
	if obj == nil {
		delete(e.Items, id)
	} else {
		if e.Items == nil {
			e.Items = map[string]json.RawMessage{}
		}
		e.Items[id] = slices.Clone(obj)
	}
	if rv != "" {
		e.ResourceVersion = rv
	}
	e.Used = time.Now()
	s.dirty[key] = true
	return true
}

// get returns a copy of the entry of key, if any.
func (s *store) get(key string) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		return entry{}, false
	}
	c := *e
	c.Items = make(map[string]json.RawMessage, len(e.Items))
	for k, v := range e.Items {
		c.Items[k] = v
	}
	return c, true
}

// forget removes the entry of key.
func (s *store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[key]; ok {
		delete(s.entries, key)
		s.dirty[key] = true
	}
}

// flush writes the entries changed since the last flush (0600) and removes
// the files of forgotten ones. With prune > 0, it first forgets the entries
// not used for prune: the answers of pods and Secrets this node no longer has.
func (s *store) flush(prune time.Duration) error {
	s.mu.Lock()
	if prune > 0 {
		for k, e := range s.entries {
			if time.Since(e.Used) > prune {
				delete(s.entries, k)
				s.dirty[k] = true
			}
		}
	}
	type write struct {
		path string
		data []byte
	}
	var writes []write
	var errs []error
	for k := range s.dirty {
		w := write{path: s.fileOf(k)}
		if e := s.entries[k]; e != nil {
			data, err := json.Marshal(e)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			w.data = data
		}
		writes = append(writes, w)
	}
	clear(s.dirty)
	s.mu.Unlock()
	for _, w := range writes {
		if w.data == nil {
			if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := pki.WriteFileAtomic(w.path, w.data, 0o600); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// objectMeta is the part of an object the cache reads.
type objectMeta struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
}

// id is the object's key in a collection.
func (m objectMeta) id() string { return m.Metadata.Namespace + "/" + m.Metadata.Name }

// watchEvent is one event of a JSON watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// tap keeps the collection of one key current from the events of a watch
// the kubelet receives. A watch that sends its initial events (watch-list)
// builds the collection anew, swapped in at the bookmark that ends them.
type tap struct {
	s       *store
	key     string
	initial map[string]json.RawMessage // nil once the initial events ended, or without them
}

// newTap returns the tap of a watch on key; initial: it sends its initial events.
func newTap(s *store, key string, initial bool) *tap {
	t := &tap{s: s, key: key}
	if initial {
		t.initial = map[string]json.RawMessage{}
	}
	return t
}

// event applies one raw watch event.
func (t *tap) event(raw []byte) {
	var ev watchEvent
	if err := json.Unmarshal(raw, &ev); err != nil || len(ev.Object) == 0 {
		return
	}
	var m objectMeta
	if err := json.Unmarshal(ev.Object, &m); err != nil {
		return
	}
	rv := m.Metadata.ResourceVersion
	switch ev.Type {
	case "ADDED", "MODIFIED":
		if t.initial != nil {
			t.initial[m.id()] = slices.Clone(ev.Object)
			return
		}
		t.s.apply(t.key, m.id(), ev.Object, rv)
	case "DELETED":
		if t.initial != nil {
			delete(t.initial, m.id())
			return
		}
		t.s.apply(t.key, m.id(), nil, rv)
	case "BOOKMARK":
		if t.initial != nil {
			if m.Metadata.Annotations[metav1.InitialEventsAnnotationKey] == "true" {
				t.s.replace(t.key, m.Kind+"List", m.APIVersion, rv, t.initial)
				t.initial = nil
			}
			return
		}
		t.s.apply(t.key, "", nil, rv)
	}
}

// listJSON renders a collection as the List a LIST answers.
func (e entry) listJSON() ([]byte, error) {
	ids := make([]string, 0, len(e.Items))
	for id := range e.Items {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	items := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		items = append(items, e.Items[id])
	}
	return json.Marshal(listBody{Kind: e.Kind, APIVersion: e.APIVersion, Metadata: metav1.ListMeta{ResourceVersion: e.ResourceVersion}, Items: items})
}

// initialEvents renders a collection as the events a watch-list sends
// first: an ADDED per item, then the bookmark that ends them.
func (e entry) initialEvents() ([][]byte, error) {
	var out [][]byte
	ids := make([]string, 0, len(e.Items))
	for id := range e.Items {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		b, err := json.Marshal(watchEvent{Type: "ADDED", Object: e.Items[id]})
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	bookmark := map[string]any{
		"kind":       strings.TrimSuffix(e.Kind, "List"),
		"apiVersion": e.APIVersion,
		"metadata": map[string]any{
			"resourceVersion": e.ResourceVersion,
			"annotations":     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
		},
	}
	obj, err := json.Marshal(bookmark)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(watchEvent{Type: "BOOKMARK", Object: obj})
	return append(out, b), err
}
