// Package certs watches over the certificates kedge issued on a node: it
// lists them (`kedge certificate check`), renews them while kedge runs
// (Renewer, a component), answers `kedge certificate rotate`, publishes
// kedge_certificate_expiration_seconds and records Events on the Node.
//
// What to renew and how is the caller's RenewFunc: a server runs
// pki.Generate and pki.IssueNode, an agent asks the supervisor.
//
//	r := certs.New(certs.Config{
//		Paths: certs.Paths{DataDir: "/var/lib/kedge", Kubeconfigs: []string{"/etc/kedge/kedge.yaml"}},
//		Node:  "node-1",
//		Renew: renew, // func(ctx, rotate []string) ([]certs.Issued, error)
//		Log:   log,
//	})
//	manager.Add(r) // first: it also sets client-go's certificate refresh period
package certs
