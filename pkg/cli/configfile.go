package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// DefaultConfigFile is read when --config is not given and the file exists.
const DefaultConfigFile = "/etc/kedge/config.yaml"

// applyConfigFile sets every flag the user did not set on the command line
// from path and then from the files in path + ".d/*.yaml" (later files win).
// Keys are flag names; an unknown key, a wrong type or a malformed file is an
// error naming the file and the key. A missing file is an error only when
// required (the user named it with --config).
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

	values := map[string]any{}
	origin := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("config file %s: %w", f, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("config file %s: malformed YAML: %w", f, err)
		}
		for k, v := range m {
			values[k] = v
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

// setFromFile sets one flag from a config file value unless the command line set it.
func setFromFile(fset *pflag.FlagSet, key string, v any) error {
	f := fset.Lookup(key)
	if f == nil || key == "config" || key == "help" {
		return errors.New("unknown key (config file keys are the flag names, e.g. cluster-cidr)")
	}
	if f.Changed {
		return nil
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		var items []string
		switch t := v.(type) {
		case []any:
			for _, item := range t {
				s, err := scalar(item)
				if err != nil {
					return err
				}
				items = append(items, s)
			}
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
	return fset.Set(key, s)
}

// scalar renders a YAML scalar as the flag text it stands for.
func scalar(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return fmt.Sprint(t), nil
	case float64:
		if t == float64(int64(t)) {
			return fmt.Sprint(int64(t)), nil
		}
		return fmt.Sprint(t), nil
	case nil:
		return "", nil
	case map[string]any:
		return "", errors.New("want a string, number or boolean, not a mapping")
	case []any:
		return "", errors.New("want a string, number or boolean, not a list")
	default:
		return "", fmt.Errorf("want a string, number or boolean, not %T", v)
	}
}
