package hostinfo

import "net"

// DefaultNodeIP returns the source address of the default route, or the
// first global unicast address of an interface that is up, or 127.0.0.1.
func DefaultNodeIP() net.IP {
	// A UDP "connection" sends nothing: it only asks the kernel which source
	// address it would route from.
	if conn, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		ip := conn.LocalAddr().(*net.UDPAddr).IP
		conn.Close()
		if ip.IsGlobalUnicast() {
			return ip
		}
	}
	ifaces, _ := net.Interfaces()
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}
