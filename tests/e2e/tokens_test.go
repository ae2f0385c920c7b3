package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestJoinTokens: an agent joins with a token from `kedge token create`;
// one past its --ttl and one deleted are refused, each agent stopping with
// a message that says why; after `kedge token rotate` an agent with the old
// server token is refused and one with the new token joins, while the
// agents that joined before stay Ready, also across a restart with their
// old (rotated, deleted) token: they rejoin with their node certificate.
func TestJoinTokens(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w1, w2 *harness.Node
	c.Step("start server a", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
	})
	aURL := "https://" + a.IP().String() + ":6443"
	kedge := func(args ...string) string {
		t.Helper()
		out, err := a.Exec(append([]string{c.Bin()}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kedge %s:\n%s", strings.Join(args, " "), out)
		return out
	}
	// refused starts an agent with tok and waits for it to stop, its log
	// saying want.
	refused := func(name, tok, want string) {
		t.Helper()
		n := c.AddNode(name, "agent", "--server", aURL, "--token", tok)
		n.Start()
		c.Eventually(2*time.Minute, name+" stops", func() error {
			if n.Running() {
				return fmt.Errorf("%s still running", name)
			}
			return nil
		})
		log, _ := os.ReadFile(n.LogFile())
		if !strings.Contains(string(log), want) {
			t.Fatalf("%s: log does not say %q:\n%s", name, want, log)
		}
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, want) {
				t.Logf("%s refused: %s", name, line)
				break
			}
		}
	}
	var created string
	c.Step("kedge token create; agent w1 joins with it, Ready", func() {
		created = kedge("token", "create", "--ttl", "1h", "--description", "w1")
		w1 = startNode(t, c, image, "w1", "agent", "--server", aURL, "--token", created)
		waitNodeReady(c, a, w1, 5*time.Minute)
		kedge("token", "list")
	})
	c.Step("a token past its --ttl is refused: the agent says it expired and stops", func() {
		short := kedge("token", "create", "--ttl", "3s")
		time.Sleep(4 * time.Second)
		kedge("token", "list")
		refused("x1", short, "expired at")
	})
	c.Step("a deleted token is refused: the agent says it does not exist and stops", func() {
		tok := kedge("token", "create")
		kedge("token", "delete", tok[strings.Index(tok, "::")+2:][:6])
		refused("x2", tok, "does not exist")
	})
	c.Step("w1's token deleted, w1 restarted with it: rejoins with its node certificate, Ready", func() {
		kedge("token", "delete", created[strings.Index(created, "::")+2:][:6])
		w1.Restart()
		waitNodeReady(c, a, w1, 5*time.Minute)
	})
	old := joinToken(t, a)
	c.Step("agent w2 joins with the server token, Ready", func() {
		w2 = startNode(t, c, image, "w2", "agent", "--server", aURL, "--token", old)
		waitNodeReady(c, a, w2, 5*time.Minute)
	})
	var rotated string
	c.Step("kedge token rotate: the token file changes; the old token is refused", func() {
		out := kedge("token", "rotate", "--new-token", "e2e-rotated-0123456789")
		rotated = strings.Split(out, "\n")[1]
		c.Eventually(time.Minute, "a's token file has the new token", func() error {
			if got := joinToken(t, a); got != rotated {
				return fmt.Errorf("token file %q…", got[:20])
			}
			return nil
		})
		refused("x3", old, "refused the --token's secret")
	})
	c.Step("agent w3 joins with the new token, Ready; w1 and w2 still Ready", func() {
		w3 := startNode(t, c, image, "w3", "agent", "--server", aURL, "--token", rotated)
		waitNodeReady(c, a, w3, 5*time.Minute)
		for _, n := range []*harness.Node{w1, w2} {
			waitNodeReady(c, a, n, time.Minute)
		}
	})
	c.Step("w2 restarted with the old server token: rejoins with its node certificate, Ready", func() {
		w2.Restart()
		waitNodeReady(c, a, w2, 5*time.Minute)
	})
	t.Log("\n" + a.MustKubectl("get", "nodes"))
	t.Log("\n" + c.Summary())
}
