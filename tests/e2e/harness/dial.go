package harness

import (
	"context"
	"net"
)

// DialContext opens a connection from inside the node's network namespace,
// as a process of the node would: "127.0.0.1:6444" is the node's own
// loopback (an agent's apiserver load balancer). The connection stays in
// the node's namespace for its whole life, so a client in the test process
// can use it as its http.Transport's DialContext: it is cut off with the
// node (CutOff) and reaches what the node reaches.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.inNetns(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}
