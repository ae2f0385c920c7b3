#!/bin/sh
# Builds the node image's root file system into OUT (package/Dockerfile runs
# it in its Debian build stage): kedge itself, the host programs kedge's
# components run, each with the shared libraries it loads, and the few files
# and directories a node needs. Nothing else: no shell, no package manager.
#
#   rootfs.sh KEDGE OUT
#
# The programs, and who runs them:
#   iptables, iptables-save, iptables-restore (and ip6tables-*)
#       kube-proxy (iptables mode, kedge's default), flannel's masquerade
#       rules, the CNI portmap plugin: all of them run the iptables program.
#       The nf_tables variant (xtables-nft-multi), Debian's default; the
#       node's rules live in the container's own network namespace.
#   nft     kube-proxy's nftables mode (--kube-proxy-arg=proxy-mode=nftables)
#   mount, umount
#       the kubelet mounts volumes (tmpfs for secrets and projected tokens,
#       bind mounts) with them (k8s.io/mount-utils)
# The xtables extensions (libxt_*.so) are loaded by iptables at run time, so
# ldd cannot see them: the whole directory is copied.
set -eu

kedge=$1
out=$2

mkdir -p "$out"
# Debian's merged /usr: /bin, /sbin, /lib and /lib64 are links into /usr.
for d in bin sbin lib lib64; do
	if [ -L "/$d" ]; then
		cp -P "/$d" "$out/$d"
	fi
done

# copy PATH: the file, and every symbolic link on the way to it, each under
# its directory's real path (/lib/x/libc.so.6 as /usr/lib/x/libc.so.6: cp
# --parents does not follow the links made above).
copy() {
	p=$(realpath "$(dirname "$1")")/$(basename "$1")
	while [ -L "$p" ]; do
		cp -P --parents "$p" "$out"
		t=$(readlink "$p")
		case $t in
		/*) p=$t ;;
		*) p=$(dirname "$p")/$t ;;
		esac
		p=$(realpath "$(dirname "$p")")/$(basename "$p")
	done
	cp -p --parents "$p" "$out"
}

# copy_libs PATH: the shared libraries PATH loads (ldd's list, the dynamic
# loader included); a static program has none.
copy_libs() {
	ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
		while read -r lib; do copy "$lib"; done
}

# the xtables directory of this architecture (/usr/lib/x86_64-linux-gnu/xtables)
xtables=$(echo /usr/lib/*-linux-gnu/xtables)

for p in /usr/sbin/xtables-nft-multi /usr/sbin/nft /usr/bin/mount /usr/bin/umount "$xtables"/*.so; do
	[ -e "$p" ] || { echo "rootfs.sh: $p is missing (Debian packages iptables, nftables, mount)" >&2; exit 1; }
	copy "$p"
	copy_libs "$p"
done

# The iptables names, pointing at the nf_tables variant (what Debian's
# alternatives do).
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
	ln -sf xtables-nft-multi "$out/usr/sbin/$n"
done

# kedge, and the tools it runs as when called by those names.
install -m 0755 "$kedge" "$out/usr/bin/kedge"
copy_libs "$kedge"
for n in kubectl crictl ctr; do
	ln -sf kedge "$out/usr/bin/$n"
done

# CA certificates: containerd pulls images over TLS.
mkdir -p "$out/etc/ssl/certs"
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"

# root only; name look-ups from files, then DNS.
printf 'root:x:0:0:root:/root:/usr/bin/kedge\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$out/etc/group"
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
# iptables takes its lock here (xtables.lock).
mkdir -p "$out/run" "$out/var"
ln -s ../run "$out/var/run"
mkdir -p "$out/tmp" "$out/root" "$out/etc/kedge" "$out/var/lib/kedge" "$out/var/lib/kubelet" "$out/var/log"
chmod 1777 "$out/tmp"
chmod 0700 "$out/root" "$out/etc/kedge"
