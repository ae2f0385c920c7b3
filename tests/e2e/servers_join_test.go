package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestServerJoin: server a; server b joins a's cluster with --server and the
// token (etcd learner, then promoted); both nodes Ready; etcd has two voting
// members; what a writes b reads; b survives a kill -9; a server with another --cluster-cidr is
// refused with the flag's name and a's members are unchanged.
func TestServerJoin(t *testing.T) {
	c := harness.NewCluster(t)
	var a, b *harness.Node
	c.Step("start server a", func() {
		a = c.AddNode("a")
		a.Start()
		a.WaitReady(5 * time.Minute)
	})
	token := joinToken(t, a)
	aURL := "https://" + a.IP().String() + ":6443"
	c.Step("server b joins with --server and --token; a sees node b Ready", func() {
		b = c.AddNode("b", "--server", aURL, "--token", token)
		b.Start()
		b.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, b, 5*time.Minute)
	})
	c.Step("b has the cluster's agent token", func() {
		if got, want := agentToken(t, b), agentToken(t, a); got != want {
			t.Fatalf("b's agent token %q, a's %q", got, want)
		}
	})
	c.Step("etcd has two voting members, a and b", func() {
		c.Eventually(time.Minute, "two voting members", func() error {
			got, err := etcdMembers(a)
			if err != nil {
				return err
			}
			if want := []string{"a voter", "b voter"}; strings.Join(got, ",") != strings.Join(want, ",") {
				return fmt.Errorf("members %v, want %v", got, want)
			}
			return nil
		})
	})
	c.Step("a ConfigMap written through a is read through b", func() {
		a.MustKubectl("create", "configmap", "joined", "--from-literal=written-by=a")
		c.Eventually(30*time.Second, "b reads the ConfigMap", func() error {
			out, err := b.Kubectl("get", "configmap", "joined", "-o", "jsonpath={.data.written-by}")
			if out != "a" {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
		if nodes := b.MustKubectl("get", "nodes", "-o", "name"); nodes != "node/a\nnode/b" {
			t.Fatalf("nodes seen from b: %q", nodes)
		}
	})
	c.Step("kill -9 and restart b: no second join, Ready, still two voting members", func() {
		b.Kill()
		b.Start()
		b.WaitReady(5 * time.Minute)
		got, err := etcdMembers(a)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != "a voter,b voter" {
			t.Fatalf("members after b's restart: %v", got)
		}
		if out := b.MustKubectl("get", "configmap", "joined", "-o", "jsonpath={.data.written-by}"); out != "a" {
			t.Fatalf("b reads %q after its restart", out)
		}
	})
	c.Step("a server with another --cluster-cidr is refused, naming the flag; members unchanged", func() {
		x := c.AddNode("x", "--server", aURL, "--token", token, "--cluster-cidr", "10.50.0.0/16")
		x.Start()
		c.Eventually(time.Minute, "x refuses to start", func() error {
			if x.Running() {
				return fmt.Errorf("x still running")
			}
			return nil
		})
		log, _ := os.ReadFile(x.LogFile())
		if want := "--cluster-cidr: this server has 10.50.0.0/16, the cluster has 10.42.0.0/16"; !strings.Contains(string(log), want) {
			t.Fatalf("x's log does not say %q:\n%s", want, log)
		}
		got, err := etcdMembers(a)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != "a voter,b voter" {
			t.Fatalf("members after the refused join: %v", got)
		}
	})
	t.Log("\n" + c.Summary())
}

// etcdMembers lists the members of n's etcd as "name voter|learner", sorted,
// through etcd's JSON gateway with the server's etcd client certificate.
func etcdMembers(n *harness.Node) ([]string, error) {
	tls := "/var/lib/kedge/server/tls/etcd/"
	out, err := n.Exec("curl", "-sS", "--fail", "--cacert", tls+"server-ca.crt", "--cert", tls+"client.crt", "--key", tls+"client.key",
		"-X", "POST", "-d", "{}", "https://127.0.0.1:2379/v3/cluster/member/list")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Members []struct {
			Name      string `json:"name"`
			IsLearner bool   `json:"isLearner"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("member list %q: %w", out, err)
	}
	var names []string
	for _, m := range resp.Members {
		role := "voter"
		if m.IsLearner {
			role = "learner"
		}
		names = append(names, m.Name+" "+role)
	}
	sort.Strings(names)
	return names, nil
}
