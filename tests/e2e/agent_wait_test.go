package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestAgentWaitsForServer: an agent started while its server is still
// starting (started the moment the server's token file appears, as when a
// site powers up) and an agent started while its server is down both wait,
// logging what they wait for, and join as soon as the server is ready.
func TestAgentWaitsForServer(t *testing.T) {
	c := harness.NewCluster(t)
	var a, w *harness.Node
	var token string
	c.Step("server a starts; agent w starts as soon as a's token file exists", func() {
		a = c.AddNode("a")
		a.Start()
		c.Eventually(2*time.Minute, "a's token file", func() error {
			out, err := a.Exec("cat", "/var/lib/kedge/server/token")
			if err != nil || !strings.HasPrefix(out, "KEDGE1") {
				return fmt.Errorf("no token yet: %v", err)
			}
			token = out
			return nil
		})
		w = c.AddNode("w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", token)
		w.Start()
	})
	c.Step("w joins once a is ready; both Ready", func() {
		a.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, w, 5*time.Minute)
		t.Logf("w's join: %s", grepLog(w, "waiting for the server", "done waiting for the server", "joined"))
	})
	c.Step("both stop; w restarts while a is down: w starts from its last join, and its join waits in the background", func() {
		w.Stop()
		a.Stop()
		w.Start()
		// The first wait line comes after the first failed attempt, then
		// one every ~10 s.
		c.Eventually(time.Minute, "w logs that it waits for a", func() error {
			if !w.Running() {
				t.Fatalf("w exited while a is down:\n%s", w.LogTail(3000))
			}
			if n := strings.Count(w.LogSinceStart(), "waiting for the server at https://"+a.IP().String()+":6443"); n < 2 {
				return fmt.Errorf("%d wait lines", n)
			}
			return nil
		})
		if !w.Running() {
			t.Fatalf("w exited while a is down:\n%s", w.LogTail(3000))
		}
		log := w.LogSinceStart()
		if !strings.Contains(log, "starting from the last join") {
			t.Errorf("w did not start from its last join:\n%s", w.LogTail(3000))
		}
		// The node runs meanwhile (TestAgentOfflineStart); its join says
		// that it waits about every 10 s, not on every attempt.
		if n := strings.Count(log, "waiting for the server at"); n > 4 {
			t.Errorf("w logged %d wait lines in ~20 s: the wait is not quiet:\n%s", n, grepLog(w, "waiting for the server"))
		}
	})
	c.Step("a starts again: w joins, both Ready", func() {
		a.Start()
		a.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, w, 5*time.Minute)
		// The node is Ready through its load balancer at once; its join,
		// in the background, retries at its own back-off (at most 10 s).
		c.Eventually(30*time.Second, "w's log says it stopped waiting", func() error {
			if !strings.Contains(w.LogSinceStart(), "done waiting for the server") {
				return fmt.Errorf("no 'done waiting' line yet")
			}
			return nil
		})
	})
	c.Step("the token's secret never appears in kedge's log", func() {
		secret := token[strings.LastIndex(token, "::")+2:]
		for _, n := range []*harness.Node{a, w} {
			raw, err := os.ReadFile(n.LogFile())
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(raw), "\n") {
				// The harness's own start lines quote the command line.
				if strings.Contains(line, secret) && !strings.HasPrefix(line, "==== e2e harness: ") {
					t.Errorf("node %s logged the token's secret: %s", n.Name(), line)
				}
			}
		}
	})
	t.Log("\n" + c.Summary())
}

// grepLog returns the lines of n's log since its last Start that contain
// any of words.
func grepLog(n *harness.Node, words ...string) string {
	var out []string
	for _, line := range strings.Split(n.LogSinceStart(), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
