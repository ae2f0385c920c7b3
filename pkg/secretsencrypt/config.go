// Package secretsencrypt keeps Secrets encrypted at rest in etcd: the
// apiserver's encryption config (<data-dir>/server/cred/encryption-config.json,
// one secretbox key and the identity provider as a fallback for data
// written before), generated when a cluster is created, handed to joining
// servers by the supervisor, and replaced on every server by
// `kedge secrets-encrypt rotate-keys` through the supervisor's Path.
//
//	if err := secretsencrypt.Generate(file); err != nil { … }
//	apiserverCfg.EncryptionConfig = file // --encryption-provider-config, reloaded automatically
package secretsencrypt

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"github.com/kedge-io/kedge/pkg/pki"
)

// FileName is the encryption config's name in the server's cred dir.
const FileName = "encryption-config.json"

// keyBytes is a secretbox key's length (XSalsa20-Poly1305, 256 bits).
const keyBytes = 32

// Provider is the provider kedge writes with.
const Provider = "secretbox"

// Config is the apiserver's EncryptionConfiguration for Secrets.
type Config = apiserverv1.EncryptionConfiguration

// newKey returns a random secretbox key named after now.
func newKey(now time.Time) (apiserverv1.Key, error) {
	b := make([]byte, keyBytes)
	if _, err := rand.Read(b); err != nil {
		return apiserverv1.Key{}, err
	}
	return apiserverv1.Key{Name: "key-" + strconv.FormatInt(now.UnixNano(), 36), Secret: base64.StdEncoding.EncodeToString(b)}, nil
}

// build returns the config with keys (the first encrypts) and identity last,
// which reads Secrets stored before encryption was on.
func build(keys []apiserverv1.Key) Config {
	return Config{
		TypeMeta: metaTypes,
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: keys}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
}

var metaTypes = func() (t apiserverv1.EncryptionConfiguration) {
	t.APIVersion, t.Kind = "apiserver.config.k8s.io/v1", "EncryptionConfiguration"
	return t
}().TypeMeta

// Generate writes a new config with one fresh key to path (0600), unless
// path exists.
func Generate(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	k, err := newKey(time.Now())
	if err != nil {
		return err
	}
	raw, err := Encode(build([]apiserverv1.Key{k}))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, raw, 0o600)
}

// Encode renders c as the file's JSON.
func Encode(c Config) ([]byte, error) {
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

// Decode reads a config and checks it is one kedge can rotate: Secrets
// only, secretbox keys of 32 bytes with distinct names, identity last.
func Decode(raw []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("not an EncryptionConfiguration: %w", err)
	}
	if _, err := Keys(c); err != nil {
		return c, err
	}
	return c, nil
}

// Keys returns the secretbox keys, the first of which encrypts.
func Keys(c Config) ([]apiserverv1.Key, error) {
	if len(c.Resources) != 1 || len(c.Resources[0].Resources) != 1 || c.Resources[0].Resources[0] != "secrets" {
		return nil, errors.New("want one resources entry for [secrets]")
	}
	p := c.Resources[0].Providers
	if len(p) != 2 || p[0].Secretbox == nil || p[1].Identity == nil || len(p[0].Secretbox.Keys) == 0 {
		return nil, errors.New("want the providers secretbox (one or more keys), then identity")
	}
	seen := map[string]bool{}
	for _, k := range p[0].Secretbox.Keys {
		b, err := base64.StdEncoding.DecodeString(k.Secret)
		if err != nil || len(b) != keyBytes {
			return nil, fmt.Errorf("secretbox key %q: want %d bytes in base64", k.Name, keyBytes)
		}
		if k.Name == "" || seen[k.Name] {
			return nil, fmt.Errorf("secretbox key name %q: empty or repeated", k.Name)
		}
		seen[k.Name] = true
	}
	return p[0].Secretbox.Keys, nil
}

// Read reads and decodes the config at path.
func Read(path string) (Config, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, err
	}
	c, err := Decode(raw)
	if err != nil {
		return c, raw, fmt.Errorf("%s: %w", path, err)
	}
	return c, raw, nil
}

// Hash is the apiserver's hash of a config file's bytes ("sha256:<hex>"),
// the label of its apiserver_encryption_config_controller_last_config_info
// metric.
func Hash(raw []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(raw)) }

// The stages of a key rotation, each applied on every server before the next.

// Prepare adds a new key after the current ones: every server can read
// what it encrypts before any server writes with it.
func Prepare(c Config, now time.Time) (Config, error) {
	keys, err := Keys(c)
	if err != nil {
		return c, err
	}
	k, err := newKey(now)
	if err != nil {
		return c, err
	}
	return build(append(append([]apiserverv1.Key(nil), keys...), k)), nil
}

// Promote moves the last key first: the servers encrypt with it.
func Promote(c Config) (Config, error) {
	keys, err := Keys(c)
	if err != nil {
		return c, err
	}
	last := keys[len(keys)-1]
	return build(append([]apiserverv1.Key{last}, keys[:len(keys)-1]...)), nil
}

// Retire keeps only the first key (after every Secret was rewritten with it).
func Retire(c Config) (Config, error) {
	keys, err := Keys(c)
	if err != nil {
		return c, err
	}
	return build(keys[:1]), nil
}

// KeyNames lists the key names, the active one first.
func KeyNames(c Config) []string {
	keys, _ := Keys(c)
	var out []string
	for _, k := range keys {
		out = append(out, k.Name)
	}
	return out
}
