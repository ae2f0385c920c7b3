package join_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kedge-io/kedge/pkg/join"
)

func ExampleParse() {
	full := join.Prefix + strings.Repeat("ab", 32) + "::0123456789abcdef"
	for _, s := range []string{full, "0123456789abcdef", "node:secret"} {
		tok, err := join.Parse(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(tok.Pinned(), tok.Secret)
	}
	// Output:
	// true 0123456789abcdef
	// false 0123456789abcdef
	// join: --token: the secret contains ':', which is not allowed: use ASCII letters, digits and "-._+/="
}

func ExampleFetchCA() {
	var server, token string // --server https://10.0.0.1:6443, --token KEDGE1<sha256>::<secret>
	ctx := context.Background()

	tok, err := join.Parse(token)
	if err != nil {
		fmt.Println(err)
		return
	}
	caPEM, err := join.FetchCA(ctx, server, tok, slog.Default())
	if err != nil {
		fmt.Println(err) // a *join.CAMismatchError for the wrong server
		return
	}
	sup, err := join.NewSupervisor(server, caPEM, tok, join.UserNode)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sup.Close()
	_, _ = sup.Get(ctx, "/v1/config")
}
