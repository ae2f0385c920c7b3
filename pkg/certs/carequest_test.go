package certs

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/pki"
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
	rotate := func(_ context.Context, phase string, force bool) ([]Issued, map[string]string, error) {
		calls <- call{phase, force}
		return []Issued{{File: "x.crt", Reason: "not signed by the current CA"}}, map[string]string{"a": phase}, nil
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
				if res.Error != "" || len(res.Issued) != 1 || res.Servers["a"] != tc.phase {
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

// TestScanDuringACARotation: a CA file lists both CAs, a leaf file only its
// leaf (not the cross certificate chained to it), the *.cross.crt files
// nothing.
func TestScanDuringACARotation(t *testing.T) {
	dataDir, b := testNode(t, time.Hour)
	before, err := Scan(Paths{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.StartCARotation(b, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Generate(pki.Config{Dir: b.Dir, ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "n1", Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	after, err := Scan(Paths{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	// 5 CA files gain a certificate each; the node's copies are not
	// renewed here (no IssueNode).
	if len(after) != len(before)+5 {
		t.Errorf("Scan lists %d certificates after the start, %d before; want 5 more (the new CAs)", len(after), len(before))
	}
	for _, c := range after {
		if strings.HasSuffix(c.File, ".cross.crt") {
			t.Errorf("%s listed", c.File)
		}
		if c.File == b.APIServerCert && c.CA {
			t.Errorf("the cross certificate chained in %s listed", c.File)
		}
	}
}
