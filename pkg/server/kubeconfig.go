package server

import (
	"context"
	"fmt"
	"os"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/pki"
)

// writeKubeconfig writes the admin kubeconfig (--write-kubeconfig) as soon
// as the apiserver is ready, so that kubectl works while the node
// components are still starting.
type writeKubeconfig struct {
	path string
	mode os.FileMode
	opts pki.KubeconfigOptions
}

var _ component.Component = (*writeKubeconfig)(nil)

func (*writeKubeconfig) Name() string { return "admin-kubeconfig" }

func (k *writeKubeconfig) Start(context.Context) error {
	if err := pki.WriteKubeconfig(k.path, k.mode, k.opts); err != nil {
		return fmt.Errorf("--write-kubeconfig: %w", err)
	}
	return nil
}

func (*writeKubeconfig) Ready(context.Context) error { return nil }
func (*writeKubeconfig) Stop(context.Context) error  { return nil }
