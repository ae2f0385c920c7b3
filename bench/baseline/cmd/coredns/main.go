// Command coredns is upstream CoreDNS (coremain) with the plugins kedge's
// in-process CoreDNS registers (pkg/coredns), at the version kedge embeds.
// CoreDNS's own main links every plugin, cloud back ends included, whose
// modules kedge's go.sum does not hold.
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver" // the "dns" server type
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
