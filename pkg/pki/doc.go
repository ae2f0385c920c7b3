// Package pki creates and keeps the certificates, keys and kubeconfigs a
// kedge server needs.
//
// Generate lays out five CAs (server, client, request-header, etcd server,
// etcd peer), the service-account key and every leaf certificate under one
// directory, and returns their paths in a Bundle. It is safe to call on every
// start: CAs and the service-account key are created once and never
// replaced, and a leaf is issued again only when it is missing, broken,
// signed by another CA, lacks a requested SAN or expires within 90 days.
// Every file is written atomically; keys are 0600, certificates 0644,
// directories 0700.
//
//	b, err := pki.Generate(pki.Config{
//		Dir:           "/var/lib/kedge/server/tls",
//		ClusterDomain: "cluster.local",
//		ServiceIP:     net.ParseIP("10.43.0.1"),
//		SANs:          []string{"192.168.1.10", "kedge.example.com"},
//		NodeName:      "node-1",
//	})
//	if err != nil {
//		return err
//	}
//	err = pki.WriteKubeconfig("/etc/kedge/kedge.yaml", 0o600, pki.KubeconfigOptions{
//		Server:   "https://127.0.0.1:6443",
//		CAFile:   b.ServerCA,
//		CertFile: b.AdminCert,
//		KeyFile:  b.AdminKey,
//		User:     "default",
//	})
package pki
