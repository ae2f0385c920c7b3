package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kedge-io/kedge/pkg/nodemeta"
)

// NodeConfigPath is where an agent that has joined asks for its Node's
// labels and taints to be set from its --node-label and --node-taint flags
// (POST, basic auth "node" with the token's secret, and its node password).
// A node may not set its own taints or its kubernetes.io labels
// (NodeRestriction), so the supervisor does it with admin credentials, and
// keeps the record of what it set in the node's password Secret, out of the
// node's reach: it removes only what it set itself.
const NodeConfigPath = "/v1-kedge/node-config"

// NodeConfigRequest is an agent's wish for its Node.
type NodeConfigRequest struct {
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Labels   []string `json:"labels"` // --node-label values, key=value
	Taints   []string `json:"taints"` // --node-taint values, key[=value]:Effect
	// ExternalIPs are --node-external-ip values.
	ExternalIPs []string `json:"externalIPs,omitempty"`
}

// appliedKey is the key of the node-password Secret that holds the
// nodemeta.Applied record of an agent.
const appliedKey = "node-config"

// nodeConfigHandler applies an agent's labels and taints. It answers 503
// while the Node is not registered (the agent retries), 400 for a label or
// taint the agent may not have, and 403 for a wrong node password; 200 with
// the record of what kedge now manages on the Node.
func (s *Supervisor) nodeConfigHandler(w http.ResponseWriter, r *http.Request) {
	// As at the join: the node's own kubelet client certificate, or the token.
	var req NodeConfigRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if certNode := s.nodeFromCert(r); certNode == "" || certNode != req.Name {
		if e := s.authorize(r, "node", "the token's secret is wrong"); e != nil {
			writeAuthError(w, e)
			return
		}
	}
	if err := checkNodeRequest(NodeRequest{Name: req.Name, Password: req.Password}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	want, err := nodemeta.Parse(req.Labels, req.Taints)
	if err == nil {
		err = nodemeta.CheckAgentLabels(want)
	}
	if err == nil {
		want.ExternalIPs, err = nodemeta.ParseExternalIPs(req.ExternalIPs)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !s.checkAgent(w, r, req.Name, req.Password) {
		return
	}
	applied, err := s.applyNodeConfig(r.Context(), req.Name, want)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(applied)
}

// applyNodeConfig reconciles the Node and the record. The record first
// grows to what the Node will hold, then shrinks to what it holds, so that
// a failure in between never forgets a label or taint kedge set.
func (s *Supervisor) applyNodeConfig(ctx context.Context, name string, want nodemeta.Spec) (nodemeta.Applied, error) {
	client, err := s.client()
	if err != nil {
		return nodemeta.Applied{}, err
	}
	secrets := client.CoreV1().Secrets(metav1.NamespaceSystem)
	nodes := client.CoreV1().Nodes()
	var after nodemeta.Applied
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		secret, err := secrets.Get(ctx, passwordSecret(name), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node password of %s: %w", name, err)
		}
		node, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("node %s: %w", name, nodemeta.ErrNotRegistered)
		} else if err != nil {
			return err
		}
		before := nodemeta.Decode(string(secret.Data[appliedKey]))
		var changed bool
		after, changed = nodemeta.Reconcile(node, want, before, nodemeta.Scope{Labels: true, Taints: true})
		union := nodemeta.Applied{Labels: append(before.Labels, after.Labels...), Taints: append(before.Taints, after.Taints...)}
		if changed {
			if secret, err = putApplied(ctx, secrets, secret, union); err != nil {
				return err
			}
			if _, err := nodes.Update(ctx, node, metav1.UpdateOptions{FieldManager: "kedge"}); err != nil {
				return fmt.Errorf("update Node %s: %w", name, err)
			}
		}
		if string(secret.Data[appliedKey]) != after.Encode() {
			_, err = putApplied(ctx, secrets, secret, after)
		}
		return err
	})
	return after, err
}

// putApplied stores record in the node-password Secret.
func putApplied(ctx context.Context, secrets typedcorev1.SecretInterface, secret *corev1.Secret, record nodemeta.Applied) (*corev1.Secret, error) {
	secret = secret.DeepCopy()
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	secret.Data[appliedKey] = []byte(record.Encode())
	updated, err := secrets.Update(ctx, secret, metav1.UpdateOptions{FieldManager: "kedge"})
	if err != nil {
		return nil, fmt.Errorf("record node config in Secret kube-system/%s: %w", secret.Name, err)
	}
	return updated, nil
}

// checkAgent answers r and returns false unless name is an agent's (not a
// server's: 403) whose node password matches (403) or is new (recorded);
// a password that cannot be checked now is a 503.
func (s *Supervisor) checkAgent(w http.ResponseWriter, r *http.Request, name, password string) bool {
	if err := s.checkNotServer(r.Context(), name); err != nil {
		writeCheckError(w, err, http.StatusForbidden)
		return false
	}
	if err := s.checkNodePassword(r.Context(), name, password); err != nil {
		var refused *passwordError
		if errors.As(err, &refused) {
			http.Error(w, err.Error(), http.StatusForbidden)
			return false
		}
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return false
	}
	return true
}
