// Package component defines the contract every kedge component follows and
// the manager that starts and stops components in order.
//
// A role (server, agent) lists its components in start order:
//
//	m := component.NewManager(log)
//	m.Add(etcdComponent)
//	m.Add(apiServer)
//	if err := m.Start(ctx); err != nil { ... }
//	defer m.Stop(context.Background())
//
// Start launches each component and waits for it to become Ready before the
// next one starts. Stop stops only what started, in reverse order, and joins
// the errors. A component that fails after it started reports on Err().
package component

import "context"

// Component is one long-running piece of a node: etcd, the apiserver, the
// kubelet and so on.
type Component interface {
	// Name is the short name used in logs and errors ("etcd", "apiserver").
	Name() string
	// Start launches the component. It must return promptly; long-running
	// work happens in goroutines that stop when Stop is called.
	Start(ctx context.Context) error
	// Ready blocks until the component serves, or ctx is done.
	Ready(ctx context.Context) error
	// Stop shuts the component down and waits for it to exit, or for ctx.
	Stop(ctx context.Context) error
}

// Failer is implemented by components that can fail after Start returned.
// The channel yields at most one error and is never closed before Stop.
type Failer interface {
	Err() <-chan error
}
