package pki_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/kedge-io/kedge/pkg/pki"
)

func ExampleGenerate() {
	dataDir, err := os.MkdirTemp("", "kedge-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dataDir)

	b, err := pki.Generate(pki.Config{
		Dir:           filepath.Join(dataDir, "server", "tls"),
		ClusterDomain: "cluster.local",
		ServiceIP:     net.ParseIP("10.43.0.1"),
		SANs:          []string{"192.168.1.10", "kedge.example.com"},
		NodeName:      "node-1",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = pki.WriteKubeconfig(filepath.Join(dataDir, "kedge.yaml"), 0o600, pki.KubeconfigOptions{
		Server:   "https://127.0.0.1:6443",
		CAFile:   b.ServerCA,
		CertFile: b.AdminCert,
		KeyFile:  b.AdminKey,
		User:     "default",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	rel, _ := filepath.Rel(dataDir, b.APIServerCert)
	fmt.Println(rel)
	// Output: server/tls/apiserver.crt
}
