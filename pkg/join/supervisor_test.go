package join

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

func TestSupervisorSendsBasicAuthOverVerifiedTLS(t *testing.T) {
	ca, sup := startCluster(t)
	tok := New(ca.pem, testSecret)
	caPEM, err := FetchCA(context.Background(), sup.URL(), tok, nil)
	if err != nil {
		t.Fatal(err)
	}

	c, err := NewSupervisor(sup.URL(), caPEM, tok, UserNode)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body, err := c.Get(context.Background(), "/v1/hello")
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "hello node" {
		t.Errorf("body %q, want %q", body, "hello node")
	}
	reqs := sup.requests()
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("node:"+testSecret))
	if len(reqs) != 3 || reqs[2].Path != "/v1/hello" || reqs[2].Authorization != wantAuth {
		t.Fatalf("requests %+v, want /cacerts, /ping, then /v1/hello with %q", reqs, wantAuth)
	}
	for _, r := range reqs[:2] {
		if r.Authorization != "" {
			t.Errorf("%s carried Authorization before the CA was checked", r.Path)
		}
	}
}

func TestSupervisorRefusedSecret(t *testing.T) {
	ca, sup := startCluster(t)
	c, err := NewSupervisor(sup.URL(), ca.pem, New(ca.pem, "wrong"), UserServer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Get(context.Background(), "/v1/hello")
	wantErr(t, err, "--server "+sup.URL(), "refused the --token's secret", `"server"`, "401")
}

func TestSupervisorSendsNoSecretToAServerOfAnotherCA(t *testing.T) {
	_, sup := startCluster(t)
	other := newTestCA(t)
	c, err := NewSupervisor(sup.URL(), other.pem, Token{Secret: testSecret}, UserNode)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Get(context.Background(), "/v1/hello")
	wantErr(t, err, "--server "+sup.URL(), "not signed by the cluster CA")
	if reqs := sup.requests(); len(reqs) != 0 {
		t.Errorf("the server saw %+v, want nothing", reqs)
	}
}

func TestSupervisorDoesNotFollowRedirects(t *testing.T) {
	_, target := startCluster(t)
	ca := newTestCA(t)
	cert := ca.serving(t, "127.0.0.1")
	sup := startSupervisor(t, &cert, ca.pem, target.URL()+"/v1/hello")

	c, err := NewSupervisor(sup.URL(), ca.pem, New(ca.pem, testSecret), UserNode)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Get(context.Background(), "/v1/redirect")
	wantErr(t, err, "GET "+sup.URL()+"/v1/redirect", "302")
	if reqs := target.requests(); len(reqs) != 0 {
		t.Errorf("the redirect target saw %+v", reqs)
	}
}

func TestNewSupervisorErrors(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	const url = "https://127.0.0.1:6443"
	for _, tc := range []struct {
		name   string
		server string
		caPEM  []byte
		tok    Token
		user   string
		want   []string
	}{
		{"pinned to another CA", url, other.pem, New(ca.pem, testSecret), UserNode, []string{"--server " + url, "does not match the --token's hash"}},
		{"no secret", url, ca.pem, Token{}, UserNode, []string{"--token", "empty secret"}},
		{"bad user", url, ca.pem, New(ca.pem, testSecret), "a:b", []string{"user"}},
		{"CA not PEM", url, []byte("x"), Token{Secret: testSecret}, UserNode, []string{"--server " + url, "no PEM certificate"}},
		{"bad URL", "http://x", ca.pem, New(ca.pem, testSecret), UserNode, []string{"--server", "https"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewSupervisor(tc.server, tc.caPEM, tc.tok, tc.user)
			wantErr(t, err, tc.want...)
			if c != nil {
				t.Error("NewSupervisor returned a client with its error")
			}
		})
	}
}

func TestSupervisorDoRefusesARelativePath(t *testing.T) {
	ca, sup := startCluster(t)
	c, err := NewSupervisor(sup.URL(), ca.pem, New(ca.pem, testSecret), UserNode)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do(context.Background(), http.MethodGet, "v1/hello", nil); err == nil || !strings.Contains(err.Error(), "must start with /") {
		t.Errorf("Do(relative path) = %v", err)
	}
	if reqs := sup.requests(); len(reqs) != 0 {
		t.Errorf("the server saw %+v", reqs)
	}
}

func TestSupervisorPostJSON(t *testing.T) {
	ca, sup := startCluster(t)
	c, err := NewSupervisor(sup.URL(), ca.pem, New(ca.pem, testSecret), UserNode)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out struct{ Got string }
	if err := c.PostJSON(context.Background(), "/v1/echo", map[string]string{"name": "n1"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Got != "n1" {
		t.Fatalf("answer %+v, want got=n1", out)
	}
	// A refusal quotes the server's message.
	err = c.PostJSON(context.Background(), "/v1/echo", map[string]string{"name": "taken"}, &out)
	wantErr(t, err, "--server "+sup.URL(), "POST "+sup.URL()+"/v1/echo", "409", "refused: the name is taken")
}
