package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// configSeeds are config files, real and hostile: every kind of flag,
// YAML 1.1 spellings, anchors, tags, several documents, deep nesting and
// malformed YAML.
var configSeeds = []string{
	"",
	"---\n",
	"null\n",
	"cluster-cidr: 10.60.0.0/16\nservice-cidr: 10.61.0.0/16\ncluster-dns: 10.61.0.10\nnode-name: main\n",
	"write-kubeconfig-mode: 0644\nhttps-listen-port: 7443\n",
	"disable-agent: yes\ndebug: off\ncluster-init: on\n",
	"tls-san: [a.example, 10.0.0.1]\nkube-apiserver-arg:\n  - profiling=true\n  - enable-admission-plugins=A,B\n",
	"tls-san:\nkubelet-arg: max-pods=200\n",
	"server: https://10.0.0.1:6443\ntoken: KEDGE1abc::x\n",
	"base: &b 10.60.0.0/16\n",
	"cluster-cidr: &b 10.60.0.0/16\nservice-cidr: *b\n",
	"tls-san: &l [a, b]\nkubelet-arg: *l\n",
	"node-name: !!str 0x10\nhttps-listen-port: !!int 0o17\n",
	"node-name: !!binary aGVsbG8=\n",
	"<<: {node-name: a}\n",
	"node-name: a\n---\ncluster-cidr: 10.99.0.0/16\n",
	"---\nnode-name: a\n...\n---\nbogus: 1\n",
	"{node-name: a, debug: true}\n",
	"node-name: a\nnode-name: b\n",
	"node-name:\n  first: a\n",
	"tls-san:\n  - a: b\n",
	"tls-san: [[a]]\n",
	"https-listen-port: https\n",
	"https-listen-port: 99999999999999999999\n",
	"debug: maybe\n",
	"config: /elsewhere.yaml\nhelp: true\n",
	"1: a\ntrue: b\n~: c\n",
	"? [a, b]\n: c\n",
	"- cluster-cidr\n",
	"cluster-cidr: [10.42.0.0/16\n",
	"\t\x00\xff",
	"node-name: \"\\u0000\"\n",
	"a: &a [*a]\n",
	"a: &a [x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\ntls-san: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
	strings.Repeat("[", 1000) + strings.Repeat("]", 1000),
	"tls-san: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n",
}

// FuzzApplyConfigFile applies any YAML as a config file onto the real
// server and agent flag sets, then validates them as the commands would:
// it never panics; an error names the file (and the key when one is at
// fault); when the file is accepted, every key of every document it holds
// has set its flag, so that nothing in it is ignored without a word; the
// validation errors name a flag.
func FuzzApplyConfigFile(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, content []byte, agent bool) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		fset := pflag.NewFlagSet("kedge", pflag.ContinueOnError)
		var validate func() error
		if agent {
			af := &agentFlags{}
			af.register(fset)
			validate = func() error { _, err := af.agentConfig(); return err }
		} else {
			sf := &serverFlags{}
			sf.register(fset)
			validate = func() error { _, err := sf.serverConfig(time.Now()); return err }
		}
		if err := applyConfigFile(fset, path, true); err != nil {
			if !strings.HasPrefix(err.Error(), "config file "+path+": ") {
				t.Fatalf("error %q does not start with the file's name", err)
			}
			return
		}
		for _, key := range configKeys(t, content) {
			if fl := fset.Lookup(key); fl == nil || !fl.Changed {
				t.Errorf("the file was accepted but its key %q set no flag", key)
			}
		}
		if err := validate(); err != nil && !strings.Contains(err.Error(), "--") {
			t.Errorf("validation error %q names no flag", err)
		}
	})
}

// configKeys returns the keys of every mapping document of a YAML stream
// that yaml.v3 reads (a stream it cannot read returns what came before).
func configKeys(t *testing.T, content []byte) []string {
	t.Helper()
	var keys []string
	dec := yaml.NewDecoder(bytes.NewReader(content))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) || err != nil {
			return keys
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		keys = append(keys, mappingKeys(doc.Content[0])...)
	}
}

// mappingKeys returns the keys of a mapping, those merged in with "<<"
// included.
func mappingKeys(m *yaml.Node) []string {
	var keys []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k, v := m.Content[i], resolveAlias(m.Content[i+1]); k.Value == "<<" && k.ShortTag() == "!!merge" {
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, mm := range merged {
				if mm = resolveAlias(mm); mm.Kind == yaml.MappingNode {
					keys = append(keys, mappingKeys(mm)...)
				}
			}
			continue
		}
		keys = append(keys, m.Content[i].Value)
	}
	return keys
}

// A second YAML document used to be ignored without a word (found by
// FuzzApplyConfigFile's seeds): "---" and more keys took no effect. So was a
// null key (~, null, or an anchor and no key: found by fuzzing), which
// yaml.v3 drops from a map.
func TestApplyConfigFileRefusesWhatItWouldIgnore(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []string // substrings of the error; nil: accepted
	}{
		{"keys after ---", "node-name: a\n---\ncluster-cidr: 10.99.0.0/16\n", []string{"line 2", "second YAML document", "config.yaml.d/*.yaml"}},
		{"after an end marker", "node-name: a\n...\n---\nbogus: 1\n", []string{"second YAML document"}},
		{"malformed second document", "node-name: a\n---\n[\n", []string{"malformed YAML"}},
		{"null key", "node-name: a\n~: 10.0.0.0/8\n", []string{"line 2", "null key"}},
		{"null spelled out", "null: x\n", []string{"line 1", "null key"}},
		{"anchored empty key", "&a : x\n", []string{"null key"}},
		{"null key merged in", "<<: [{node-name: a}, {? : x}]\n", []string{"null key"}},
		{"leading ---", "---\nnode-name: a\n", nil},
		{"merge", "<<: {node-name: a}\n", nil},
		{"trailing ---", "node-name: a\n---\n", nil},
		{"empty documents", "---\n---\n...\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"config.yaml": tc.content})
			_, fs := parseServerFlags(t)
			err := applyConfigFile(fs, filepath.Join(dir, "config.yaml"), true)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error with %q", tc.want)
			}
			for _, w := range append(tc.want, filepath.Join(dir, "config.yaml")) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
