// Package ctr runs containerd's own ctr client inside kedge, pointed at the
// node's embedded containerd and the namespace the kubelet's pods live in.
//
//	os.Exit(ctr.Run([]string{"images", "ls"}))
package ctr

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/ctr/app"
)

// Run runs ctr with args (without the program name) and returns its exit
// code. Unless the environment says otherwise, it talks to address and uses
// the k8s.io namespace, where the CRI keeps pods and images.
func Run(address string, args []string) int {
	if os.Getenv("CONTAINERD_ADDRESS") == "" {
		os.Setenv("CONTAINERD_ADDRESS", address)
	}
	if os.Getenv("CONTAINERD_NAMESPACE") == "" {
		os.Setenv("CONTAINERD_NAMESPACE", "k8s.io")
	}
	// As containerd's own ctr main does (urfave/cli v3 since containerd 2.4).
	if err := app.New().Run(context.Background(), append([]string{"ctr"}, args...)); err != nil {
		fmt.Fprintf(os.Stderr, "ctr: %s\n", err)
		return 1
	}
	return 0
}
