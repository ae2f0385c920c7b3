package secretsencrypt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Server is one server of the cluster, as its supervisor's URL.
type Server struct {
	Name string // etcd member name (node name)
	URL  string // https://<ip>:<port>
}

// Servers talks to every server's Path with the admin's client certificate.
type Servers struct {
	List   []Server
	Client *http.Client // trusts the server CA, presents the admin certificate
}

// ServerStatus is one server's Status, or why it could not be read.
type ServerStatus struct {
	Server
	Status
	Err error
}

// Status asks every server.
func (s Servers) Status(ctx context.Context) []ServerStatus {
	out := make([]ServerStatus, 0, len(s.List))
	for _, srv := range s.List {
		st, err := s.call(ctx, srv, http.MethodGet, nil)
		out = append(out, ServerStatus{Server: srv, Status: st, Err: err})
	}
	return out
}

// Apply writes raw on every server, one after the other, each answering once
// its apiserver loaded it. It stops at the first server that fails.
func (s Servers) Apply(ctx context.Context, raw []byte) error {
	for _, srv := range s.List {
		st, err := s.call(ctx, srv, http.MethodPut, raw)
		if err != nil {
			return err
		}
		if st.LoadedHash != Hash(raw) {
			return fmt.Errorf("server %s (%s) loaded %s, not %s", srv.Name, srv.URL, st.LoadedHash, Hash(raw))
		}
	}
	return nil
}

func (s Servers) call(ctx context.Context, srv Server, method string, body []byte) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+Path, bytes.NewReader(body))
	if err != nil {
		return Status{}, err
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("server %s (%s): %w", srv.Name, srv.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("server %s (%s): %s: %s", srv.Name, srv.URL, resp.Status, strings.TrimSpace(string(b)))
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return Status{}, fmt.Errorf("server %s (%s): %w", srv.Name, srv.URL, err)
	}
	return st, nil
}

// RotateKeys replaces the key that encrypts Secrets on every server without
// downtime: prepare (every server can read the new key), promote (every
// server writes with it), reencrypt (every Secret rewritten), retire (the
// old key removed). Before it starts, every server must hold raw, the
// local config. It reports each step to out.
func RotateKeys(ctx context.Context, s Servers, kube kubernetes.Interface, raw []byte, out io.Writer) error {
	cur, err := Decode(raw)
	if err != nil {
		return err
	}
	for _, st := range s.Status(ctx) {
		switch {
		case st.Err != nil:
			return fmt.Errorf("every server must take part in a rotation: %w", st.Err)
		case !st.Enabled:
			return fmt.Errorf("server %s does not encrypt Secrets: %w", st.Name, ErrDisabled)
		case st.FileHash != Hash(raw) || st.LoadedHash != st.FileHash:
			return fmt.Errorf("server %s has another encryption config than this one (file %s, loaded %s; here %s): wait for it to load its file, or copy this server's %s there and restart it", st.Name, st.FileHash, st.LoadedHash, Hash(raw), FileName)
		}
	}
	prepared, err := Prepare(cur, time.Now())
	if err != nil {
		return err
	}
	promoted, err := Promote(prepared)
	if err != nil {
		return err
	}
	retired, err := Retire(promoted)
	if err != nil {
		return err
	}
	newKey := KeyNames(promoted)[0]
	steps := []struct {
		what string
		cfg  Config
	}{
		{"prepare: every server can decrypt with the new key " + newKey, prepared},
		{"rotate: every server encrypts with " + newKey, promoted},
	}
	for _, step := range steps {
		if err := apply(ctx, s, step.cfg); err != nil {
			return fmt.Errorf("%s: %w", step.what, err)
		}
		fmt.Fprintf(out, "%s (%d servers)\n", step.what, len(s.List))
	}
	n, rewritten, err := Reencrypt(ctx, kube)
	if err != nil {
		return fmt.Errorf("reencrypt: %w (the old key stays until every Secret is rewritten: run `kedge secrets-encrypt rotate-keys` again)", err)
	}
	fmt.Fprintf(out, "reencrypt: %d Secrets, %d rewritten with %s\n", n, rewritten, newKey)
	if err := apply(ctx, s, retired); err != nil {
		return fmt.Errorf("retire the old keys: %w", err)
	}
	fmt.Fprintf(out, "retire: the old keys are removed (%d servers); active key %s\n", len(s.List), newKey)
	return nil
}

func apply(ctx context.Context, s Servers, c Config) error {
	raw, err := Encode(c)
	if err != nil {
		return err
	}
	return s.Apply(ctx, raw)
}

// Reencrypt rewrites every Secret that is not stored with the key that
// encrypts now (an update with no change: the apiserver writes an object
// again only when it read it with another key or from clear text). It
// returns how many Secrets there are and how many were rewritten.
func Reencrypt(ctx context.Context, kube kubernetes.Interface) (total, rewritten int, err error) {
	secrets := kube.CoreV1().Secrets(metav1.NamespaceAll)
	opts := metav1.ListOptions{Limit: 250}
	for {
		list, err := secrets.List(ctx, opts)
		if err != nil {
			return total, rewritten, err
		}
		for i := range list.Items {
			s := &list.Items[i]
			total++
			got, err := kube.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
			if err != nil {
				if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
					continue // changed or deleted since: written with the new key anyway
				}
				return total, rewritten, fmt.Errorf("Secret %s/%s: %w", s.Namespace, s.Name, err)
			}
			if got.ResourceVersion != s.ResourceVersion {
				rewritten++
			}
		}
		if list.Continue == "" {
			return total, rewritten, nil
		}
		opts.Continue = list.Continue
	}
}
