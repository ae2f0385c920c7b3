// Package kubectl runs the real kubectl (k8s.io/kubectl) inside kedge,
// pointed at the admin kubeconfig when KUBECONFIG is not set.
//
//	os.Exit(kubectl.Run([]string{"get", "nodes"}))
package kubectl

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/plugin"
	"k8s.io/kubectl/pkg/cmd/util"
)

// DefaultKubeconfig is the admin kubeconfig a server writes.
const DefaultKubeconfig = "/etc/kedge/kedge.yaml"

// Run runs kubectl with args (without the program name) and returns its
// exit code. If KUBECONFIG is unset, no --kubeconfig is given and the admin
// kubeconfig exists, kubectl uses it.
func Run(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		if _, err := os.Stat(DefaultKubeconfig); err == nil {
			os.Setenv("KUBECONFIG", DefaultKubeconfig)
		}
	}
	argv := append([]string{"kubectl"}, args...)
	logs.GlogSetter(cmd.GetLogVerbosity(argv)) //nolint:errcheck // same as upstream kubectl's main
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	command := cmd.NewDefaultKubectlCommandWithArgs(cmd.KubectlOptions{
		PluginHandler: cmd.NewDefaultPluginHandler(plugin.ValidPluginFilenamePrefixes),
		Arguments:     argv,
		ConfigFlags:   genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50.0).WithWarningPrinter(streams),
		IOStreams:     streams,
	})
	command.SetArgs(args)
	if err := cli.RunNoErrOutput(command); err != nil {
		// CheckErr prints the error the way kubectl does and exits with its code.
		util.CheckErr(err)
	}
	return 0
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--kubeconfig" || len(a) > 13 && a[:13] == "--kubeconfig=" {
			return true
		}
	}
	return false
}
