package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// CARotationPlanKey is the etcd key of the cluster's CA rotation
// (caPlan): the server where `kedge certificate rotate-ca` runs writes it,
// every server applies it while it runs (caSync). It is outside the
// apiserver's /registry prefix.
const CARotationPlanKey = "/kedge/ca-rotation/plan"

// CARotationServersPrefix is followed by a server's name: the phase of the
// CA rotation it reached (caReport).
const CARotationServersPrefix = "/kedge/ca-rotation/servers/"

// caPlanInfo is the HKDF info of the key that seals a caPlan's files.
const caPlanInfo = "kedge ca-rotation plan v1"

// caPlan is a CA rotation, as the servers share it.
type caPlan struct {
	// ID is the hash of the new server CA (the join token's CA hash).
	ID string `json:"id"`
	// OldCAHash is the hash of the server CA it replaces.
	OldCAHash string `json:"oldCAHash"`
	// Phase is certs.CAStart, then certs.CAFinish.
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
	// Server is where `kedge certificate rotate-ca` ran.
	Server string `json:"server"`
	// Salt, Nonce and Sealed are the new CA files (pki.CARotationFiles,
	// JSON) under AES-256-GCM, with a key HKDF-SHA256 derives from the
	// cluster's service-account key (every server holds it, and no
	// rotation changes it) and Salt.
	Salt   []byte `json:"salt"`
	Nonce  []byte `json:"nonce"`
	Sealed []byte `json:"sealed"`
}

// caReport is the phase of a CA rotation one server reached.
type caReport struct {
	ID    string    `json:"id"`
	Phase string    `json:"phase"`
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

// planAEAD returns the cipher of a plan's files.
func planAEAD(saKeyFile string, salt []byte) (cipher.AEAD, error) {
	secret, err := os.ReadFile(saKeyFile)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, secret, salt, caPlanInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal stores files in p, sealed.
func (p *caPlan) seal(saKeyFile string, files map[string][]byte) error {
	plain, err := json.Marshal(files)
	if err != nil {
		return err
	}
	p.Salt = make([]byte, 16)
	if _, err := rand.Read(p.Salt); err != nil {
		return err
	}
	g, err := planAEAD(saKeyFile, p.Salt)
	if err != nil {
		return err
	}
	p.Nonce = make([]byte, g.NonceSize())
	if _, err := rand.Read(p.Nonce); err != nil {
		return err
	}
	p.Sealed = g.Seal(nil, p.Nonce, plain, []byte(p.ID))
	return nil
}

// files opens the plan's files.
func (p caPlan) files(saKeyFile string) (map[string][]byte, error) {
	g, err := planAEAD(saKeyFile, p.Salt)
	if err != nil {
		return nil, err
	}
	if len(p.Nonce) != g.NonceSize() {
		return nil, fmt.Errorf("%s: bad nonce", CARotationPlanKey)
	}
	plain, err := g.Open(nil, p.Nonce, p.Sealed, []byte(p.ID))
	if err != nil {
		return nil, fmt.Errorf("%s does not open with this server's service-account key (%s): it is not this cluster's", CARotationPlanKey, saKeyFile)
	}
	var files map[string][]byte
	return files, json.Unmarshal(plain, &files)
}

// getPlan reads the cluster's CA rotation: nil if there was none, the
// key's mod revision (0: none) for putPlan, and etcd's revision, to watch
// from.
func getPlan(ctx context.Context, c *clientv3.Client) (p *caPlan, modRev, rev int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, CARotationPlanKey)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("etcd get %s: %w", CARotationPlanKey, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, resp.Header.Revision, nil
	}
	p, err = decodePlan(resp.Kvs[0].Value)
	return p, resp.Kvs[0].ModRevision, resp.Header.Revision, err
}

// decodePlan parses the value of CARotationPlanKey.
func decodePlan(data []byte) (*caPlan, error) {
	var p caPlan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("etcd %s: %w", CARotationPlanKey, err)
	}
	return &p, nil
}

// putPlan writes p if the key is still at revision rev (what getPlan
// returned): two rotations started at once on two servers do not both win.
func putPlan(ctx context.Context, c *clientv3.Client, p caPlan, rev int64) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(CARotationPlanKey), "=", rev)).
		Then(clientv3.OpPut(CARotationPlanKey, string(data))).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd put %s: %w", CARotationPlanKey, err)
	}
	if !resp.Succeeded {
		return errors.New("another server changed the cluster's CA rotation at the same time: run `kedge certificate rotate-ca` on one server only")
	}
	return nil
}

// putReport records the phase this server reached.
func putReport(ctx context.Context, c *clientv3.Client, name string, r caReport) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, CARotationServersPrefix+name, string(data)); err != nil {
		return fmt.Errorf("etcd put %s%s: %w", CARotationServersPrefix, name, err)
	}
	return nil
}

// serverPhases returns, for every etcd member of the cluster, the phase of
// rotation id it reported ("" if none, or its error).
func serverPhases(ctx context.Context, c *clientv3.Client, id string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	resp, err := c.Get(ctx, CARotationServersPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd get %s: %w", CARotationServersPrefix, err)
	}
	reports := map[string]caReport{}
	for _, kv := range resp.Kvs {
		var r caReport
		if json.Unmarshal(kv.Value, &r) == nil {
			reports[strings.TrimPrefix(string(kv.Key), CARotationServersPrefix)] = r
		}
	}
	out := map[string]string{}
	for _, m := range members.Members {
		name := m.Name
		if name == "" {
			name = "(unstarted member " + strings.Join(m.PeerURLs, ",") + ")"
		}
		r, ok := reports[name]
		switch {
		case !ok || r.ID != id:
			out[name] = ""
		case r.Error != "":
			out[name] = "error: " + r.Error
		default:
			out[name] = r.Phase
		}
	}
	return out, nil
}

// pendingServers lists the servers of phases that did not reach one of want.
func pendingServers(phases map[string]string, want ...string) []string {
	var out []string
	for name, p := range phases {
		if !slices.Contains(want, p) {
			if p == "" {
				p = "no report"
			}
			out = append(out, fmt.Sprintf("%s (%s)", name, p))
		}
	}
	slices.Sort(out)
	return out
}

// waitPhases waits up to wait for every server to report one of want, and
// returns the phases seen last.
func waitPhases(ctx context.Context, c *clientv3.Client, id string, wait time.Duration, want ...string) (map[string]string, error) {
	deadline := time.Now().Add(wait)
	for {
		phases, err := serverPhases(ctx, c, id)
		if err == nil && len(pendingServers(phases, want...)) == 0 || time.Now().After(deadline) {
			return phases, err
		}
		select {
		case <-ctx.Done():
			return phases, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
