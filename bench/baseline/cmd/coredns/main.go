// Command coredns is upstream CoreDNS (coremain) with the plugins kedge's
// in-process CoreDNS registers (pkg/coredns), at the version kedge embeds.
// CoreDNS's own main links every plugin, cloud back ends included, whose
// modules kedge's go.sum does not hold.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/kedge-io/kedge/pkg/coredns/plugins" // the plugins kedge's CoreDNS has
)

func main() { coremain.Run() }
