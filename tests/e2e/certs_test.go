package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestAgentCertificateRenewal: with 90-second leaves, an agent renews its
// node certificates through the supervisor with its kubelet client
// certificate while it runs: its kubelet serves the renewed certificate on
// 10250 (checked on the wire, from the server's network), and the node
// stays Ready after its first certificates expired, without a restart.
func TestAgentCertificateRenewal(t *testing.T) {
	c := harness.NewCluster(t)
	var a, w *harness.Node
	c.Step("server a with --cert-validity 90s, agent w joins", func() {
		a = c.AddNode("a", "--cert-validity", "90s")
		a.Start()
		a.WaitReady(5 * time.Minute)
		w = c.AddNode("w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
		w.Start()
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	started := w.Started()
	caPEM, err := os.ReadFile(filepath.Join(w.DataDir(), "agent", "tls", "server-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	kubelet := net.JoinHostPort(w.IP().String(), "10250")
	served := func() (*x509.Certificate, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		raw, err := a.DialContext(ctx, "tcp", kubelet)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: w.IP().String()})
		defer conn.Close()
		if err := conn.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	first, err := served()
	if err != nil {
		t.Fatalf("kubelet of w on the wire: %v", err)
	}
	t.Logf("w's kubelet serves serial %x, not after %s", first.SerialNumber, first.NotAfter.Format(time.RFC3339))
	defer func() {
		if t.Failed() {
			for _, n := range []*harness.Node{a, w} {
				for l := range strings.SplitSeq(n.LogSinceStart(), "\n") {
					if strings.Contains(l, "certificate") {
						t.Logf("%s: %s", n.Name(), l)
					}
				}
			}
		}
	}()
	c.Step("w's kubelet serves a renewed certificate, w Ready after the first expired", func() {
		var renewed *x509.Certificate
		c.Eventually(4*time.Minute, "a renewed serving certificate on "+kubelet, func() error {
			cert, err := served()
			if err != nil {
				return err
			}
			if cert.SerialNumber.Cmp(first.SerialNumber) == 0 {
				return fmt.Errorf("still serial %x", first.SerialNumber)
			}
			renewed = cert
			return nil
		})
		t.Logf("renewed: serial %x, not after %s", renewed.SerialNumber, renewed.NotAfter.Format(time.RFC3339))
		if time.Until(first.NotAfter) > -10*time.Second {
			time.Sleep(time.Until(first.NotAfter.Add(10 * time.Second)))
		}
		c.Eventually(time.Minute, "w's lease renewed after its first certificates expired", func() error {
			s, err := a.Kubectl("get", "lease", "-n", "kube-node-lease", "w", "-o", "jsonpath={.spec.renewTime}")
			at, perr := time.Parse(time.RFC3339Nano, s)
			if err != nil || perr != nil || !at.After(first.NotAfter) {
				return fmt.Errorf("renewTime %q, %v", s, err)
			}
			return nil
		})
		if s, err := a.Kubectl("get", "node", "w", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); s != "True" {
			t.Fatalf("w Ready=%q, %v", s, err)
		}
		if _, err := a.Kubectl("get", "--raw", "/api/v1/nodes/w/proxy/healthz"); err != nil {
			t.Fatalf("apiserver → w's kubelet: %v", err)
		}
	})
	c.Step("kedge certificate rotate --service kubelet on the agent, live", func() {
		before, err := served()
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		out, err := w.Exec(c.Bin(), "certificate", "rotate", "--service", "kubelet")
		if err != nil || !strings.Contains(out, "kubelet-serving.crt") {
			t.Fatalf("rotate on w: %v\n%s", err, out)
		}
		t.Logf("kedge certificate rotate --service kubelet on w (%s):\n%s", time.Since(begin).Round(time.Millisecond), out)
		c.Eventually(30*time.Second, "the rotated serving certificate on "+kubelet, func() error {
			cert, err := served()
			if err != nil {
				return err
			}
			if cert.SerialNumber.Cmp(before.SerialNumber) == 0 {
				return fmt.Errorf("still serial %x", before.SerialNumber)
			}
			return nil
		})
		t.Logf("served %s after the command began", time.Since(begin).Round(time.Millisecond))
	})
	log := w.LogSinceStart()
	if !strings.Contains(log, "certificate renewed") || strings.Contains(log, "certificate renewal failed") {
		t.Errorf("agent log: renewed %v, failed %v", strings.Contains(log, "certificate renewed"), strings.Contains(log, "certificate renewal failed"))
	}
	if !w.Started().Equal(started) || !w.Running() {
		t.Fatal("agent w restarted")
	}
	events := a.MustKubectl("get", "events", "--field-selector", "reason=CertificateRenewed,involvedObject.name=w", "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, "kubelet-serving.crt") {
		t.Errorf("no CertificateRenewed Event for w's kubelet-serving.crt: %q", events)
	}
}
