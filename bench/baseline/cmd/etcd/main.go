// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3
// etcdmain) as its own executable, at the version kedge embeds: the etcd
// server module has no main package of its own.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
