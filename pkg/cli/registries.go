package cli

import (
	"github.com/spf13/pflag"

	"github.com/kedge-io/kedge/pkg/registries"
)

// registriesFlag is --private-registry, of `kedge server` and `kedge agent`.
type registriesFlag struct {
	path    string
	changed func() bool
}

func (f *registriesFlag) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.path, "private-registry", registries.DefaultFile, "registry mirrors, rewrites, credentials and TLS settings (k3s's registries.yaml format), read on every start")
	f.changed = func() bool { return fs.Changed("private-registry") }
}

// load reads the file; a missing file is no configuration unless the user
// named it (on the command line or in the config file).
func (f *registriesFlag) load() (registries.Registries, error) {
	return registries.Load(f.path, f.changed != nil && f.changed())
}
