// Package install tests install.sh end to end under a real systemd as PID 1:
// each node is a systemd-nspawn container booting a Debian rootfs (made once
// with debootstrap and cached in /var/cache/kedge-test/rootfs), on a bridge
// of its own; the release files (the kedge binary of KEDGE_BIN, its checksum
// and install.sh, laid out as make release lays out dist/) are served over
// HTTP by the test on the bridge's host address.
//
//	make install-test   # root; needs debootstrap and systemd-container (Debian packages)
//
// The containers' cgroups are the host's (cgroup v1 here), their /proc/sys
// writable (SYSTEMD_NSPAWN_API_VFS_WRITABLE), with every capability the
// host grants; kedge inside sees its own network, mount and PID namespaces.
package install
