package etcdsnapshot

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/scrypt"
)

// BootstrapKey is the etcd key of the cluster's sealed CAs. It is outside
// the apiserver's /registry prefix.
const BootstrapKey = "/kedge/bootstrap"

// Bootstrap is what a server restored on a new machine needs besides etcd's
// data: the cluster's CA certificates and keys and the service-account key
// pair (by their path relative to the tls dir), the agent token's secret,
// and the apiserver's encryption config (the keys of the Secrets at rest;
// without them the restored Secrets cannot be read).
type Bootstrap struct {
	Files            map[string][]byte `json:"files"`
	AgentSecret      string            `json:"agentSecret,omitempty"`
	EncryptionConfig []byte            `json:"encryptionConfig,omitempty"`
}

// sealed is the stored form: AES-256-GCM under a key scrypt derives from
// the join token's secret and Salt.
type sealed struct {
	Version int    `json:"v"`
	Salt    []byte `json:"salt"`
	Nonce   []byte `json:"nonce"`
	Data    []byte `json:"data"`
}

// ErrWrongToken means the bootstrap data does not open with the secret
// given: it is not this cluster's token.
var ErrWrongToken = errors.New("the token does not open the cluster's CAs in this snapshot: give the token of the cluster the snapshot was taken of")

// scrypt's cost: about 0.1 s and 32 MiB, once per snapshot and per restore.
const scryptN, scryptR, scryptP = 1 << 15, 8, 1

func aead(secret string, salt []byte) (cipher.AEAD, error) {
	key, err := scrypt.Key([]byte(secret), salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts b with the join token's secret.
func Seal(b Bootstrap, secret string) ([]byte, error) {
	if secret == "" {
		return nil, errors.New("seal the cluster's CAs: no token secret")
	}
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	s := sealed{Version: 1, Salt: make([]byte, 16)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, err
	}
	g, err := aead(secret, s.Salt)
	if err != nil {
		return nil, err
	}
	s.Nonce = make([]byte, g.NonceSize())
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, err
	}
	s.Data = g.Seal(nil, s.Nonce, plain, []byte(BootstrapKey))
	return json.Marshal(s)
}

// Open decrypts what Seal returned; ErrWrongToken for another secret.
func Open(blob []byte, secret string) (Bootstrap, error) {
	var s sealed
	if err := json.Unmarshal(blob, &s); err != nil || s.Version != 1 {
		return Bootstrap{}, fmt.Errorf("the cluster's sealed CAs (%s) are not in a known format", BootstrapKey)
	}
	g, err := aead(secret, s.Salt)
	if err != nil {
		return Bootstrap{}, err
	}
	if len(s.Nonce) != g.NonceSize() {
		return Bootstrap{}, fmt.Errorf("the cluster's sealed CAs (%s): bad nonce", BootstrapKey)
	}
	plain, err := g.Open(nil, s.Nonce, s.Data, []byte(BootstrapKey))
	if err != nil {
		return Bootstrap{}, ErrWrongToken
	}
	var b Bootstrap
	if err := json.Unmarshal(plain, &b); err != nil {
		return Bootstrap{}, err
	}
	return b, nil
}
