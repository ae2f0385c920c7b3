package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestEnsureEncryption: only a new cluster gets a key, unless
// --secrets-encryption=false; a file once there stays in use.
func TestEnsureEncryption(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name       string
		cfg        Config
		etcdData   bool
		wantConfig bool
	}{
		{"new cluster", Config{SecretsEncryption: true}, false, true},
		{"opt out", Config{SecretsEncryption: false}, false, false},
		{"joining server", Config{SecretsEncryption: true, JoinURL: "https://192.0.2.1:6443"}, false, false},
		{"cluster created before", Config{SecretsEncryption: true}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.DataDir = t.TempDir()
			if tc.etcdData {
				if err := os.MkdirAll(filepath.Join(cfg.dbDir(), "member"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ensureEncryption(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			if (got != "") != tc.wantConfig {
				t.Fatalf("config %q, want one: %v", got, tc.wantConfig)
			}
			if got == "" {
				if _, err := os.Stat(cfg.EncryptionConfigFile()); !os.IsNotExist(err) {
					t.Fatalf("a file without encryption: %v", err)
				}
				return
			}
			// Later starts keep the file, even with the flag now false.
			cfg.SecretsEncryption = false
			if again, err := ensureEncryption(cfg, log); err != nil || again != got {
				t.Fatalf("restart: %q, %v", again, err)
			}
		})
	}
}
