package leader

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/leaderelection"
)

// A lost lease starts a new campaign: run is called again once the other
// holder's lease has expired, and Campaign returns nil when ctx ends.
func TestCampaignAgainAfterLost(t *testing.T) {
	client := fake.NewClientset()
	refuseRenewalsOver(client, "node-a", "node-b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	terms := make(chan int, 4)
	n := 0
	done := make(chan error, 1)
	go func() {
		done <- campaign(ctx, func() (leaderelection.LeaderElectionConfig, error) { return election(client, "node-a"), nil }, discard(),
			func(leadCtx context.Context) error {
				n++
				terms <- n
				<-leadCtx.Done()
				return nil
			})
	}()
	term := func() int {
		t.Helper()
		select {
		case n := <-terms:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("run was not called")
			return 0
		}
	}
	if got := term(); got != 1 {
		t.Fatalf("first term %d, want 1", got)
	}
	// node-b holds the lease for 3 s, longer than node-a's renew deadline
	// (1 s): node-a loses it, then takes it again once it has expired.
	takeOver(t, client, "node-b", 3)
	if got := term(); got != 2 {
		t.Fatalf("term after the loss %d, want 2", got)
	}
	if h := holder(t, client); h != "node-a" {
		t.Errorf("lease held by %q in the second term, want node-a", h)
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Errorf("Campaign after ctx ended = %v, want nil", err)
	}
}

// run's own error ends the campaign.
func TestCampaignReturnsRunError(t *testing.T) {
	client := fake.NewClientset()
	boom := errors.New("boom")
	err := campaign(context.Background(), func() (leaderelection.LeaderElectionConfig, error) { return election(client, "node-a"), nil }, discard(),
		func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Campaign = %v, want run's error", err)
	}
}
