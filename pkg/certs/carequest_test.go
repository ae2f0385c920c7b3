package certs

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRenewerCARequests: a `rotate-ca` request reaches RotateCA with its
// phase and force, and an agent (no RotateCA) answers it with an error.
func TestRenewerCARequests(t *testing.T) {
	dataDir, _ := testNode(t, time.Hour)
	noRenew := func(context.Context, []string) ([]Issued, error) { return nil, nil }
	type call struct {
		phase string
		force bool
	}
	calls := make(chan call, 4)
	rotate := func(_ context.Context, phase string, force bool) ([]Issued, error) {
		calls <- call{phase, force}
		return []Issued{{File: "x.crt", Reason: "not signed by the current CA"}}, nil
	}
	for _, tc := range []struct {
		name     string
		rotateCA RotateCAFunc
		phase    string
		force    bool
		wantErr  string
	}{
		{"server start", rotate, CAStart, false, ""},
		{"server finish forced", rotate, CAFinish, true, ""},
		{"agent", nil, CAStart, false, "on a server, not on an agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Config{Paths: Paths{DataDir: dataDir}, Renew: noRenew, RotateCA: tc.rotateCA})
			if err := r.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = r.Stop(context.Background()) }()
			req, err := WriteCARequest(dataDir, tc.phase, tc.force)
			if err != nil {
				t.Fatal(err)
			}
			var res *Result
			for deadline := time.Now().Add(5 * time.Second); res == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if res, err = ReadResult(dataDir, req.ID); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case res == nil:
				t.Fatal("no answer within 5 s")
			case tc.wantErr != "":
				if !strings.Contains(res.Error, tc.wantErr) {
					t.Errorf("answer %+v, want an error with %q", res, tc.wantErr)
				}
			default:
				if res.Error != "" || len(res.Issued) != 1 {
					t.Errorf("answer %+v", res)
				}
				if c := <-calls; c.phase != tc.phase || c.force != tc.force {
					t.Errorf("RotateCA(%q, %v), want (%q, %v)", c.phase, c.force, tc.phase, tc.force)
				}
			}
		})
	}
	if _, err := WriteCARequest(dataDir, "halfway", false); err == nil {
		t.Error("a bad phase was accepted")
	}
	if _, err := WriteCARequest(t.TempDir(), CAStart, false); err == nil || !strings.Contains(err.Error(), "on a server") {
		t.Errorf("a data dir without a server: %v", err)
	}
}
