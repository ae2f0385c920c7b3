package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A node name belongs either to servers or to agents. The join secret opens
// both joins, so without these checks a holder of an agent's token could
// ask /v1-kedge/node for the certificates of a server's node
// (CN=system:node:<server>) and act as that node towards the apiserver: a
// server's own node never records a node password, so nothing else stops
// it. The reverse, a server joining under a name an agent took first,
// would leave that agent's certificates valid for the server's node.

// takenError is a join refused because the name is the other role's.
type takenError struct{ msg string }

func (e *takenError) Error() string { return e.msg }

// checkNotServer refuses an agent the name of a server: a member of the
// cluster's etcd. A supervisor without Config.NewEtcd does not check.
func (s *Supervisor) checkNotServer(ctx context.Context, node string) error {
	if s.cfg.NewEtcd == nil {
		return nil
	}
	members, err := s.cfg.NewEtcd()
	if err != nil {
		return fmt.Errorf("etcd members: %w", err)
	}
	list, err := members.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("etcd members: %w", err)
	}
	for _, m := range list.Members {
		if m.Name == node {
			return &takenError{fmt.Sprintf("node name %q is a server's (an etcd member): an agent cannot join under it; give this machine another --node-name", node)}
		}
	}
	return nil
}

// checkNotAgent refuses a joining server the name of a node that joined as
// an agent (it has a node password). A supervisor without Config.NewClient
// does not check.
func (s *Supervisor) checkNotAgent(ctx context.Context, node string) error {
	if s.cfg.NewClient == nil {
		return nil
	}
	client, err := s.client()
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, passwordSecret(node), metav1.GetOptions{})
	switch {
	case err == nil:
		return &takenError{fmt.Sprintf("node name %q joined as an agent: give this server another --node-name, or delete the Node and the Secret kube-system/%s first", node, passwordSecret(node))}
	case apierrors.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("node password of %s: %w", node, err)
}

// writeCheckError answers a failed check: refused for a name taken by the
// other role, 503 (the joiner retries) when the check could not be made.
func writeCheckError(w http.ResponseWriter, err error, refused int) {
	var taken *takenError
	if errors.As(err, &taken) {
		http.Error(w, err.Error(), refused)
		return
	}
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}
