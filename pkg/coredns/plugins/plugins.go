// Package plugins registers, by importing it, CoreDNS's "dns" server type
// and the plugins of the Corefile kedge renders (pkg/coredns.Corefile):
// kedge's in-process CoreDNS and the benchmark's standalone one link the
// same set.
package plugins

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
)
