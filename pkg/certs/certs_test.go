package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/transport"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/kedge-io/kedge/pkg/pki"
)

// testNode lays out a server's and its node's certificates and kubeconfigs
// in a data dir, as kedge does, with leaves valid for validity.
func testNode(t *testing.T, validity time.Duration) (string, pki.Bundle) {
	t.Helper()
	dataDir := t.TempDir()
	b, err := pki.Generate(pki.Config{Dir: filepath.Join(dataDir, "server", "tls"), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "n1", Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueNode(b, pki.NodeConfig{Dir: filepath.Join(dataDir, "agent", "tls"), NodeName: "n1", Validity: validity}); err != nil {
		t.Fatal(err)
	}
	o := pki.KubeconfigOptions{Server: "https://127.0.0.1:6443", CAFile: b.ServerCA, CertFile: b.AdminCert, KeyFile: b.AdminKey, User: "admin", ReferenceFiles: true}
	if err := pki.WriteKubeconfig(filepath.Join(dataDir, "server", "cred", "admin.kubeconfig"), 0o600, o); err != nil {
		t.Fatal(err)
	}
	o.ReferenceFiles = false
	if err := pki.WriteKubeconfig(filepath.Join(dataDir, "kedge.yaml"), 0o600, o); err != nil {
		t.Fatal(err)
	}
	return dataDir, b
}

func TestScanAndCheck(t *testing.T) {
	dataDir, b := testNode(t, 0)
	list, err := Scan(Paths{DataDir: dataDir, Kubeconfigs: []string{filepath.Join(dataDir, "kedge.yaml"), filepath.Join(dataDir, "missing.yaml")}})
	if err != nil {
		t.Fatal(err)
	}
	// 5 CAs + 15 server leaves + 2 CA copies and 4 leaves of the node +
	// the embedded admin certificate; the referencing kubeconfig adds none.
	if len(list) != 5+15+2+4+1 {
		t.Fatalf("Scan listed %d certificates", len(list))
	}
	var embedded *Cert
	for i, c := range list {
		if c.User != "" {
			embedded = &list[i]
		}
	}
	if embedded == nil || embedded.Label() != filepath.Join(dataDir, "kedge.yaml")+"#admin" || !strings.Contains(embedded.Subject, "system:admin") {
		t.Fatalf("embedded admin certificate: %+v", embedded)
	}
	now := time.Now()
	if exp := Expiring(list, now); len(exp) != 0 {
		t.Errorf("fresh one-year certificates expiring: %v", exp)
	}
	// 340 days on, every leaf is within 30 days; the CAs are not.
	if exp := Expiring(list, now.Add(340*24*time.Hour)); len(exp) != len(list)-5-2 {
		t.Errorf("340 days on, %d expiring, want every leaf (%d)", len(exp), len(list)-7)
	}

	var table, js bytes.Buffer
	if err := WriteTable(&table, list, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), b.APIServerCert) || !strings.Contains(table.String(), "DAYS LEFT") || !strings.Contains(table.String(), " 364") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := WriteJSON(&js, list, now); err != nil {
		t.Fatal(err)
	}
	var entries []map[string]any
	if err := json.Unmarshal(js.Bytes(), &entries); err != nil || len(entries) != len(list) {
		t.Fatalf("json: %v, %d entries", err, len(entries))
	}
	for _, k := range []string{"file", "subject", "issuer", "notAfter", "daysLeft", "serial"} {
		if _, ok := entries[0][k]; !ok {
			t.Errorf("json entry lacks %q: %v", k, entries[0])
		}
	}
}

// TestRenewer runs the renewer on real short-lived certificates: the first
// check renews nothing, one in the renewal window renews (an Event and the
// metric follow), and a rotation request is answered.
func TestRenewer(t *testing.T) {
	dataDir, b := testNode(t, 20*time.Second)
	kube := fake.NewClientset()
	cfg := pki.Config{Dir: b.Dir, ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "n1", Validity: 20 * time.Second}
	calls := 0
	renew := func(_ context.Context, rotate []string) ([]Issued, error) {
		calls++
		var out []Issued
		c := cfg
		c.Rotate = rotate
		c.OnIssue = func(p, r string) { out = append(out, Issued{File: p, Reason: r}) }
		_, err := pki.Generate(c)
		return out, err
	}
	r := New(Config{Paths: Paths{DataDir: dataDir}, Node: "n1", Renew: renew,
		Client: func() (kubernetes.Interface, error) { return kube, nil }})
	ctx := t.Context()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Stop(context.Background()) }()
	if calls != 1 {
		t.Fatalf("Start made %d checks, want 1", calls)
	}
	// The next check is when the first leaf enters its window: ~15 s after
	// issue (20 s + 2 s skew, window 5.4 s).
	if until := time.Until(r.next); until < 10*time.Second || until > 17*time.Second {
		t.Errorf("next check in %s, want when the first leaf enters its window", until)
	}
	want := `kedge_certificate_expiration_seconds{file="` + b.APIServerCert + `"}`
	got, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range got {
		if mf.GetName() != "kedge_certificate_expiration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == b.APIServerCert {
				found = true
				if int64(m.GetGauge().GetValue()) != readNotAfter(t, b.APIServerCert).Unix() {
					t.Errorf("%s = %v", want, m.GetGauge().GetValue())
				}
			}
		}
	}
	if !found {
		t.Fatalf("no %s", want)
	}

	// A rotation request is answered within a couple of seconds.
	req, err := WriteRequest(dataDir, []string{"apiserver"})
	if err != nil {
		t.Fatal(err)
	}
	var res *Result
	for deadline := time.Now().Add(5 * time.Second); res == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if res, err = ReadResult(dataDir, req.ID); err != nil {
			t.Fatal(err)
		}
	}
	if res == nil || res.Error != "" || len(res.Issued) != 2 || res.Issued[0].Reason != "rotation requested" {
		t.Fatalf("rotation result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dataDir, RequestFileName)); !os.IsNotExist(err) {
		t.Errorf("request left behind: %v", err)
	}
	events, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	renewed := 0
	for _, e := range events.Items {
		if e.Reason == ReasonRenewed && e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == "n1" {
			renewed++
		}
	}
	if renewed != 2 {
		t.Errorf("%d %s Events, want 2", renewed, ReasonRenewed)
	}
	if _, err := WriteRequest(dataDir, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "--service") {
		t.Errorf("unknown service: %v", err)
	}
}

func readNotAfter(t *testing.T, path string) time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := certutil.ParseCertsPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return c[0].NotAfter
}

func TestScaleClientRefresh(t *testing.T) {
	defer func(d time.Duration) { transport.CertCallbackRefreshDuration = d }(transport.CertCallbackRefreshDuration)
	now := time.Now()
	year := []Cert{{NotBefore: now, NotAfter: now.Add(pki.DefaultLeafValidity)}, {CA: true, NotBefore: now, NotAfter: now.Add(time.Minute)}}
	scaleClientRefresh(year)
	if transport.CertCallbackRefreshDuration != 5*time.Minute {
		t.Errorf("one-year leaves: %s, want client-go's 5m", transport.CertCallbackRefreshDuration)
	}
	scaleClientRefresh(append(year, Cert{NotBefore: now, NotAfter: now.Add(365 * time.Second)}))
	if transport.CertCallbackRefreshDuration != 90*time.Second/4 {
		t.Errorf("365 s leaves: %s, want a quarter of the 90 s window", transport.CertCallbackRefreshDuration)
	}
}

// TestRenewerWarnings: a renewal that fails is a Warning, and so is each
// certificate still in its renewal window afterwards; the Warnings are not
// repeated at the next check.
func TestRenewerWarnings(t *testing.T) {
	dataDir := t.TempDir()
	start := time.Now().Add(-19 * time.Second) // 20-second leaves, about to expire
	b, err := pki.Generate(pki.Config{Dir: filepath.Join(dataDir, "server", "tls"), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "n1",
		Validity: 20 * time.Second, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset()
	failing := func(context.Context, []string) ([]Issued, error) { return nil, errors.New("the CA key is unreadable") }
	r := New(Config{Paths: Paths{DataDir: dataDir}, Node: "n1", Renew: failing,
		Client: func() (kubernetes.Interface, error) { return kube, nil }})
	for range 2 {
		r.next = time.Time{} // check now
		if err := r.pass(t.Context()); err == nil {
			t.Fatal("pass did not report the failed renewal")
		}
	}
	events, err := kube.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	apiserver := false
	for _, e := range events.Items {
		if e.Type != "Warning" || e.InvolvedObject.Name != "n1" {
			t.Errorf("event %s %s on %s", e.Type, e.Reason, e.InvolvedObject.Name)
		}
		count[e.Reason]++
		if e.Reason == ReasonExpiring && strings.Contains(e.Message, b.APIServerCert) && strings.Contains(e.Message, "not renewed") {
			apiserver = true
		}
	}
	// Two failures; 15 leaves in their window, warned once each.
	if count[ReasonRenewFailed] != 2 || count[ReasonExpiring] != 15 || !apiserver {
		t.Errorf("events %v (apiserver.crt warned: %v), want 2 %s and 15 %s", count, apiserver, ReasonRenewFailed, ReasonExpiring)
	}
}

// TestScheduleDueDuringPass: a leaf that entered its renewal window while a
// pass ran is checked again at once, not a MaxInterval later (it expired
// before its renewal when that happened); after a failed pass it waits.
func TestScheduleDueDuringPass(t *testing.T) {
	now := time.Now()
	r := &Renewer{cfg: Config{MaxInterval: time.Minute}}
	due := Cert{cert: &x509.Certificate{NotBefore: now.Add(-90 * time.Second), NotAfter: now.Add(10 * time.Second)}}
	later := Cert{cert: &x509.Certificate{NotBefore: now, NotAfter: now.Add(24 * time.Hour)}}
	ca := Cert{CA: true, cert: &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Second)}}
	r.schedule([]Cert{later, due, ca}, now, false)
	if !r.next.Equal(now) {
		t.Errorf("a leaf due during the pass: next check in %s, want now", r.next.Sub(now))
	}
	r.schedule([]Cert{later, due, ca}, now, true)
	if !r.next.Equal(now.Add(time.Minute)) {
		t.Errorf("after a failed pass: next check in %s, want MaxInterval", r.next.Sub(now))
	}
	r.schedule([]Cert{later}, now, false)
	if !r.next.Equal(now.Add(time.Minute)) {
		t.Errorf("nothing due: next check in %s, want MaxInterval", r.next.Sub(now))
	}
}
