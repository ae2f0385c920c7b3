package args

import (
	"reflect"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	defaults := map[string]string{"secure-port": "6443", "profiling": "false", "feature-gates": "A=true"}
	cases := []struct {
		name    string
		user    []string
		want    []string
		wantErr string
	}{
		{
			name: "defaults only, sorted",
			want: []string{"--feature-gates=A=true", "--profiling=false", "--secure-port=6443"},
		},
		{
			name: "user overrides default and adds new key; dashes optional",
			user: []string{"profiling=true", "--v=2"},
			want: []string{"--feature-gates=A=true", "--profiling=true", "--secure-port=6443", "--v=2"},
		},
		{
			name: "value may contain =",
			user: []string{"feature-gates=B=false"},
			want: []string{"--feature-gates=B=false", "--profiling=false", "--secure-port=6443"},
		},
		{
			name: "plus appends to default",
			user: []string{"+feature-gates=B=false"},
			want: []string{"--feature-gates=A=true,B=false", "--profiling=false", "--secure-port=6443"},
		},
		{
			name: "repeated user key gives repeated flags",
			user: []string{"tls-sni-cert-key=a", "tls-sni-cert-key=b"},
			want: []string{"--feature-gates=A=true", "--profiling=false", "--secure-port=6443", "--tls-sni-cert-key=a", "--tls-sni-cert-key=b"},
		},
		{
			name: "empty value allowed",
			user: []string{"profiling="},
			want: []string{"--feature-gates=A=true", "--profiling=", "--secure-port=6443"},
		},
		{name: "missing =", user: []string{"profiling"}, wantErr: `--kube-apiserver-arg "profiling": want key=value`},
		{name: "empty key", user: []string{"=x"}, wantErr: `--kube-apiserver-arg "=x": want key=value`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(defaults, tc.user, "--kube-apiserver-arg")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRenderDoesNotMutateDefaults(t *testing.T) {
	defaults := map[string]string{"feature-gates": "A=true"}
	if _, err := Render(defaults, []string{"+feature-gates=B=true"}, "x"); err != nil {
		t.Fatal(err)
	}
	if defaults["feature-gates"] != "A=true" {
		t.Fatalf("defaults mutated: %v", defaults)
	}
}

func TestValue(t *testing.T) {
	flags := []string{"--a=1", "--b=2", "--a=3"}
	if v, ok := Value(flags, "a"); !ok || v != "3" {
		t.Fatalf("Value(a) = %q, %v", v, ok)
	}
	if _, ok := Value(flags, "c"); ok {
		t.Fatal("Value(c) found")
	}
}
