package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// DefaultConfigFile is read when --config is not given and the file exists.
const DefaultConfigFile = "/etc/kedge/config.yaml"

// applyConfigFile sets every flag the user did not set on the command line
// from path and then from the files in path + ".d/*.yaml" (later files win).
// Keys are flag names; an unknown key, a wrong type or a malformed file is an
// error naming the file and the key. A missing file is an error only when
// required (the user named it with --config). Scalars reach the flags as
// written: `write-kubeconfig-mode: 0644` is the text "0644", not the YAML 1.1
// octal integer 420.
func applyConfigFile(fset *pflag.FlagSet, path string, required bool) error {
	files := []string{}
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if required || !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	dropIns, err := filepath.Glob(path + ".d/*.yaml")
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	sort.Strings(dropIns)
	files = append(files, dropIns...)

	values := map[string]*yaml.Node{}
	origin := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("config file %s: %w", f, err)
		}
		m, err := decodeConfig(raw, path)
		if err != nil {
			return fmt.Errorf("config file %s: %w", f, err)
		}
		for k, v := range m {
			values[k] = &v
			origin[k] = f
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if err := setFromFile(fset, key, values[key]); err != nil {
			return fmt.Errorf("config file %s: key %q: %w", origin[key], key, err)
		}
	}
	return nil
}

// decodeConfig reads the one YAML document of a config file: a mapping of
// flag names to values, or nothing. A second document ("---" and more keys)
// and a null key are errors, not ignored: kedge reads one document, and the
// drop-ins of path + ".d" are the way to split a configuration.
func decodeConfig(raw []byte, path string) (map[string]yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	var m map[string]yaml.Node
	if err := doc.Decode(&m); err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	if k := nullKey(&doc); k != nil {
		return nil, fmt.Errorf("line %d: a null key (~, null, or nothing before the colon); keys are flag names, e.g. cluster-cidr", k.Line)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		switch {
		case errors.Is(err, io.EOF):
			return m, nil
		case err != nil:
			return nil, fmt.Errorf("malformed YAML: %w", err)
		case len(next.Content) > 0 && !isNull(next.Content[0]):
			return nil, fmt.Errorf("line %d: a second YAML document (after ---); kedge reads only the first: put its keys there, or in a drop-in file %s.d/*.yaml", next.Line, path)
		}
	}
}

// nullKey returns the first null key of the mapping n, or of a mapping it
// merges in with "<<": decoding a map[string]… drops such a key without a
// word.
func nullKey(n *yaml.Node) *yaml.Node {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode: // "<<" may merge a list of mappings
		for _, c := range n.Content {
			if k := nullKey(c); k != nil {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; isNull(k) {
				return k
			} else if k.ShortTag() == "!!merge" {
				if k := nullKey(n.Content[i+1]); k != nil {
					return k
				}
			}
		}
	}
	return nil
}

// setFromFile sets one flag from a config file value unless the command line set it.
func setFromFile(fset *pflag.FlagSet, key string, v *yaml.Node) error {
	f := fset.Lookup(key)
	if f == nil || key == "config" || key == "help" {
		return errors.New("unknown key (config file keys are the flag names, e.g. cluster-cidr)")
	}
	if f.Changed {
		return nil
	}
	v = resolveAlias(v)
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		items := []string{}
		switch {
		case v.Kind == yaml.SequenceNode:
			for _, item := range v.Content {
				s, err := scalar(item)
				if err != nil {
					return err
				}
				items = append(items, s)
			}
		case isNull(v):
			// "tls-san:" with no value: an empty list.
		default:
			s, err := scalar(v)
			if err != nil {
				return err
			}
			items = []string{s}
		}
		if err := sv.Replace(items); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	s, err := scalar(v)
	if err != nil {
		return err
	}
	if f.Value.Type() == "bool" {
		// YAML 1.1 spellings of booleans, which config files still use.
		switch strings.ToLower(s) {
		case "yes", "y", "on":
			s = "true"
		case "no", "n", "off":
			s = "false"
		}
	}
	return fset.Set(key, s)
}

// scalar returns the text of a YAML scalar as written (without quotes): the
// flag text it stands for. A null is the empty string.
func scalar(v *yaml.Node) (string, error) {
	v = resolveAlias(v)
	switch v.Kind {
	case yaml.ScalarNode:
		if isNull(v) {
			return "", nil
		}
		return v.Value, nil
	case yaml.MappingNode:
		return "", errors.New("want a string, number or boolean, not a mapping")
	case yaml.SequenceNode:
		return "", errors.New("want a string, number or boolean, not a list")
	default:
		return "", fmt.Errorf("want a string, number or boolean, not YAML node kind %v", v.Kind)
	}
}

func isNull(v *yaml.Node) bool { return v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" }

// resolveAlias follows *anchor references to the node they name.
func resolveAlias(v *yaml.Node) *yaml.Node {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	return v
}
