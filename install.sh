#!/bin/sh
# kedge installer: installs kedge (Kubernetes in one binary) as a service.
#
#   curl -sfL https://github.com/kedge-io/kedge/releases/latest/download/install.sh | sh -   # a server
#   curl -sfL …/install.sh | KEDGE_URL=https://S:6443 KEDGE_TOKEN=T sh -       # an agent joining S
#   curl -sfL …/install.sh | sh -s - server --server https://S:6443 --token T  # a second server
#
# Words after `sh -s -` are kedge's command and flags (server, the default, or
# agent), and so are the words of INSTALL_KEDGE_EXEC, which come first.
#
# Environment:
#   KEDGE_URL                  the server an agent joins (--server); makes the command agent
#   KEDGE_TOKEN                the cluster's join token (--token)
#   KEDGE_TOKEN_FILE           a file holding it (kedge reads it when it starts)
#   KEDGE_*                    every KEDGE_ variable goes into the service's env file
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and lower case)   go there too
#   INSTALL_KEDGE_EXEC         command and flags, before the words after sh -s -
#   INSTALL_KEDGE_RELEASE_URL  where kedge-<arch> and sha256sum-<arch>.txt are
#                              (default: the release of INSTALL_KEDGE_VERSION, else the latest)
#   INSTALL_KEDGE_VERSION      the version to install (v1.37.2+kedge1); checked against the binary
#   INSTALL_KEDGE_SKIP_DOWNLOAD=true   use the kedge already in the bin dir
#   INSTALL_KEDGE_SKIP_ENABLE=true     neither enable nor start the service
#   INSTALL_KEDGE_SKIP_START=true      enable the service, do not (re)start it
#   INSTALL_KEDGE_BIN_DIR      default /usr/local/bin
#   INSTALL_KEDGE_SYSTEMD_DIR  default /etc/systemd/system
#   INSTALL_KEDGE_NAME         the service's name (default kedge, or kedge-agent for an agent)
#
# Installs <bin>/kedge, the kubectl, crictl and ctr links to it (unless those
# commands exist), <bin>/kedge-killall.sh, <bin>/<name>-uninstall.sh and a
# systemd unit with its env file <systemd-dir>/<name>.service.env (0600), or
# on a host without systemd an OpenRC service run by supervise-daemon. The
# download is checked against its checksum before anything is installed.
# Running it again upgrades in place; the service restarts only if the
# binary, the unit or the env file changed.
# shellcheck disable=SC2016 # ${KEDGE_URL} and ${KEDGE_TOKEN} are written as they are, for systemd and OpenRC to expand
set -eu

DEFAULT_RELEASES=https://github.com/kedge-io/kedge/releases

info() { echo "[kedge install] $*"; }
fatal() {
	echo "[kedge install] error: $*" >&2
	exit 1
}
yes_() { [ "${1:-}" = true ]; }

# --- what to install -------------------------------------------------------

# setup_command sets CMD (server or agent) and the ARGS file (one kedge
# argument a line) from INSTALL_KEDGE_EXEC and the script's arguments.
setup_command() {
	: >"$TMP/args"
	CMD=
	case ${1:-} in
	server | agent)
		CMD=$1
		shift
		;;
	esac
	# INSTALL_KEDGE_EXEC's words (split on blanks, not globbed) come first;
	# its first may be the command.
	set -f
	first=true
	for a in ${INSTALL_KEDGE_EXEC:-}; do
		if $first; then
			first=false
			case $a in
			server | agent)
				[ -z "$CMD" ] || [ "$CMD" = "$a" ] || fatal "INSTALL_KEDGE_EXEC says $a, the arguments say $CMD"
				CMD=$a
				continue
				;;
			esac
		fi
		printf '%s\n' "$a" >>"$TMP/args"
	done
	set +f
	if [ -z "$CMD" ]; then
		CMD=server
		[ -n "${KEDGE_URL:-}" ] && CMD=agent
	fi
	for a in "$@"; do
		case $a in
		*'
'*) fatal "argument with a newline: $a" ;;
		esac
		printf '%s\n' "$a" >>"$TMP/args"
	done
	# KEDGE_TOKEN_FILE: kedge reads it itself (--token-file's default),
	# from the env file, whenever it starts.
	if [ -n "${KEDGE_TOKEN_FILE:-}" ]; then
		[ -z "${KEDGE_TOKEN:-}" ] || fatal "KEDGE_TOKEN and KEDGE_TOKEN_FILE: give one"
		[ -r "$KEDGE_TOKEN_FILE" ] || fatal "KEDGE_TOKEN_FILE=$KEDGE_TOKEN_FILE: cannot read it"
	fi
	if [ "$CMD" = agent ]; then
		if [ -z "${KEDGE_URL:-}" ] && ! grep -Eq '^(--server|-s)(=|$)' "$TMP/args"; then
			fatal "an agent needs its server: KEDGE_URL=https://<server>:6443 (or --server)"
		fi
		if [ -z "${KEDGE_TOKEN:-}${KEDGE_TOKEN_FILE:-}" ] && ! grep -Eq '^(--token|-t|--token-file)(=|$)' "$TMP/args"; then
			fatal "an agent needs the cluster's join token: KEDGE_TOKEN or KEDGE_TOKEN_FILE (the server's /var/lib/kedge/server/agent-token)"
		fi
	fi
	if [ -n "${KEDGE_URL:-}" ]; then
		case $KEDGE_URL in
		https://*) ;;
		*) fatal "KEDGE_URL=$KEDGE_URL: must be https://<server>:6443" ;;
		esac
	fi
	# The env file (0600) holds KEDGE_URL and KEDGE_TOKEN, and kedge reads
	# them from its environment: they are in neither the unit (0644) nor a
	# command line, which every local user can read in ps.
	return 0
}

setup_env() {
	BIN_DIR=${INSTALL_KEDGE_BIN_DIR:-/usr/local/bin}
	SYSTEMD_DIR=${INSTALL_KEDGE_SYSTEMD_DIR:-/etc/systemd/system}
	NAME=${INSTALL_KEDGE_NAME:-}
	if [ -z "$NAME" ]; then
		NAME=kedge
		[ "$CMD" = agent ] && NAME=kedge-agent
	fi
	case $NAME in
	kedge | kedge-*) ;;
	*) NAME=kedge-$NAME ;;
	esac
	case $NAME in
	*[!a-z0-9_.-]*) fatal "INSTALL_KEDGE_NAME=$NAME: use letters, digits, - _ ." ;;
	esac
	KEDGE=$BIN_DIR/kedge
	KILLALL=$BIN_DIR/kedge-killall.sh
	UNINSTALL=$BIN_DIR/$NAME-uninstall.sh
	if [ -d /run/systemd/system ]; then
		INIT=systemd
		UNIT=$SYSTEMD_DIR/$NAME.service
		ENVFILE=$UNIT.env
	elif [ -x /sbin/openrc-run ]; then
		INIT=openrc
		UNIT=/etc/init.d/$NAME
		ENVFILE=/etc/kedge/$NAME.env
	else
		fatal "neither systemd (no /run/systemd/system) nor OpenRC (no /sbin/openrc-run) runs this host"
	fi
	[ "$(id -u)" = 0 ] || fatal "run as root (curl … | sudo sh -)"
	mkdir -p "$BIN_DIR" || fatal "INSTALL_KEDGE_BIN_DIR=$BIN_DIR: cannot create it"
	[ -w "$BIN_DIR" ] || fatal "INSTALL_KEDGE_BIN_DIR=$BIN_DIR is not writable (a read-only /usr? try INSTALL_KEDGE_BIN_DIR=/opt/bin)"
}

setup_arch() {
	case $(uname -m) in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) fatal "$(uname -m): kedge is released for amd64 and arm64" ;;
	esac
}

# --- download and verify ---------------------------------------------------

download() { # URL FILE
	case $DOWNLOADER in
	curl) curl -fsSL -o "$2" "$1" ;;
	wget) wget -q -O "$2" "$1" ;;
	esac || fatal "download of $1 failed"
}

sha256() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		openssl dgst -sha256 "$1" | sed 's/^.*= *//'
	fi
}

download_and_verify() {
	if command -v curl >/dev/null; then
		DOWNLOADER=curl
	elif command -v wget >/dev/null; then
		DOWNLOADER=wget
	else
		fatal "neither curl nor wget found"
	fi
	url=${INSTALL_KEDGE_RELEASE_URL:-}
	if [ -z "$url" ]; then
		if [ -n "${INSTALL_KEDGE_VERSION:-}" ]; then
			url=$DEFAULT_RELEASES/download/$(printf '%s' "$INSTALL_KEDGE_VERSION" | sed 's/+/%2B/g')
		else
			url=$DEFAULT_RELEASES/latest/download
		fi
	fi
	url=${url%/}
	info "downloading kedge-$ARCH from $url"
	download "$url/sha256sum-$ARCH.txt" "$TMP/sha256sum"
	want=$(awk -v f="kedge-$ARCH" '$2 == f || $2 == "*" f {print $1; exit}' "$TMP/sha256sum")
	[ -n "$want" ] || fatal "$url/sha256sum-$ARCH.txt has no checksum for kedge-$ARCH"
	download "$url/kedge-$ARCH" "$TMP/kedge"
	got=$(sha256 "$TMP/kedge")
	if [ "$got" != "$want" ]; then
		fatal "checksum mismatch for $url/kedge-$ARCH: sha256 $got, sha256sum-$ARCH.txt says $want; nothing was installed"
	fi
	chmod 0755 "$TMP/kedge"
	if [ -n "${INSTALL_KEDGE_VERSION:-}" ]; then
		v=$("$TMP/kedge" --version 2>/dev/null) || fatal "the downloaded kedge does not run on this host"
		case $v in
		*" $INSTALL_KEDGE_VERSION "* | *" $INSTALL_KEDGE_VERSION") ;;
		*) fatal "INSTALL_KEDGE_VERSION=$INSTALL_KEDGE_VERSION, but $url/kedge-$ARCH is: $v; nothing was installed" ;;
		esac
	fi
}

# --- files -----------------------------------------------------------------

# hashes prints one checksum per installed file that a restart depends on.
hashes() {
	for f in "$KEDGE" "$UNIT" "$ENVFILE"; do
		if [ -f "$f" ]; then sha256 "$f"; else echo absent; fi
	done
}

install_binary() {
	if yes_ "${INSTALL_KEDGE_SKIP_DOWNLOAD:-}"; then
		[ -x "$KEDGE" ] || fatal "INSTALL_KEDGE_SKIP_DOWNLOAD=true, but there is no $KEDGE"
		info "using $KEDGE as it is ($("$KEDGE" --version 2>/dev/null || echo "does not run"))"
		return
	fi
	if [ -f "$KEDGE" ] && [ "$(sha256 "$KEDGE")" = "$(sha256 "$TMP/kedge")" ]; then
		info "$KEDGE is already this version"
		return
	fi
	cp "$TMP/kedge" "$KEDGE.new"
	chmod 0755 "$KEDGE.new"
	mv -f "$KEDGE.new" "$KEDGE" # a rename: a running kedge keeps its old file
	info "installed $KEDGE ($("$KEDGE" --version 2>/dev/null || echo "does not run on this host"))"
}

install_links() {
	for cmd in kubectl crictl ctr; do
		link=$BIN_DIR/$cmd
		if [ -L "$link" ] && [ "$(readlink "$link")" = kedge ]; then
			continue
		fi
		if [ -e "$link" ] || command -v "$cmd" >/dev/null; then
			info "not linking $link: $cmd is $(command -v "$cmd" || echo "$link")"
			continue
		fi
		ln -s kedge "$link"
		info "linked $link -> kedge"
	done
}

# env_quote VALUE: VALUE in double quotes, as both systemd's EnvironmentFile
# and sh read it.
env_quote() {
	printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"$`]/\\&/g')"
}

write_envfile() {
	mkdir -p "$(dirname "$ENVFILE")"
	umask 077
	: >"$TMP/env"
	env | grep -E '^(KEDGE_[A-Z0-9_]*|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)=' | cut -d= -f1 | sort -u |
		while read -r var; do
			eval "val=\${$var:-}"
			# shellcheck disable=SC2154 # val is set by the eval
			case $val in
			*'
'*) fatal "$var has a newline" ;;
			esac
			printf '%s=%s\n' "$var" "$(env_quote "$val")" >>"$TMP/env"
		done
	replace "$TMP/env" "$ENVFILE" 0600
	umask 022
}

# replace NEW FILE MODE: FILE becomes NEW (mode MODE) unless it holds that already.
replace() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		chmod "$3" "$2"
		return
	fi
	cp "$1" "$2.new"
	chmod "$3" "$2.new"
	mv -f "$2.new" "$2"
}

# systemd_args: ExecStart's arguments, each quoted for systemd; ${X} names
# an env file variable, expanded by systemd.
systemd_args() {
	while IFS= read -r a; do
		case $a in
		'${KEDGE_URL}' | '${KEDGE_TOKEN}') printf ' %s' "$a" ;;
		*) printf ' "%s"' "$(printf '%s' "$a" | sed 's/[\\"]/\\&/g; s/%/%%/g; s/\$/$$/g')" ;;
		esac
	done <"$TMP/args"
}

# sh_args: the arguments for OpenRC's command_args (which it evals), quoted
# for sh; ${X} names an env file variable, expanded when the script runs.
sh_args() {
	while IFS= read -r a; do
		case $a in
		'${KEDGE_URL}' | '${KEDGE_TOKEN}') printf " '%s'" "$a" ;;
		*) printf " '%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")" ;;
		esac
	done <"$TMP/args"
}

write_systemd_unit() {
	cat >"$TMP/unit" <<EOF
# Written by kedge's install.sh; running it again rewrites this file.
[Unit]
Description=kedge $CMD: Kubernetes in one binary
Documentation=https://github.com/kedge-io/kedge
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# kedge sends READY=1 once its node is Ready.
Type=notify
EnvironmentFile=-$ENVFILE
# Pods keep running across a restart of kedge, which finds them again:
# stop only kedge itself (kedge-killall.sh stops everything).
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$KEDGE $CMD$(systemd_args)
EOF
	replace "$TMP/unit" "$UNIT" 0644
}

write_openrc_service() {
	cat >"$TMP/unit" <<EOF
#!/sbin/openrc-run
# Written by kedge's install.sh; running it again rewrites this file.
description="kedge $CMD: Kubernetes in one binary"

depend() {
	after network-online
	want cgroups
}

start_pre() {
	modprobe br_netfilter 2>/dev/null || true
	modprobe overlay 2>/dev/null || true
}

set -o allexport
if [ -f "$ENVFILE" ]; then . "$ENVFILE"; fi
set +o allexport

supervisor=supervise-daemon
name=$NAME
command="$KEDGE"
command_args="$CMD$(sh_args)"
output_log=/var/log/$NAME.log
error_log=/var/log/$NAME.log
pidfile=/var/run/$NAME.pid
respawn_delay=5
respawn_max=0
EOF
	replace "$TMP/unit" "$UNIT" 0755
}

write_killall() {
	cat >"$TMP/killall" <<EOF
#!/bin/sh
# Written by kedge's install.sh: stops every kedge service on this host, then
# kedge killall stops the pods' containers, unmounts their volumes and
# removes kedge's network interfaces and iptables rules.
set -u
[ "\$(id -u)" = 0 ] || exec sudo "\$0" "\$@"
if [ -d /run/systemd/system ]; then
	for unit in $SYSTEMD_DIR/kedge*.service; do
		[ -f "\$unit" ] && systemctl stop "\${unit##*/}"
	done
elif [ -x /sbin/openrc-run ]; then
	for svc in /etc/init.d/kedge*; do
		[ -x "\$svc" ] && rc-service "\${svc##*/}" stop
	done
fi
exec "$KEDGE" killall
EOF
	replace "$TMP/killall" "$KILLALL" 0755
}

write_uninstall() {
	cat >"$TMP/uninstall" <<EOF
#!/bin/sh
# Written by kedge's install.sh: removes the $NAME service and, when it is
# the last kedge service here, all of kedge: the binary and its links,
# /etc/kedge, /var/lib/kedge, the kubelet's /var/lib/kubelet, /run/kedge,
# the pods, kedge's network interfaces and its iptables and nftables rules.
set -u
[ "\$(id -u)" = 0 ] || exec sudo "\$0" "\$@"
"$KILLALL"
if [ "$INIT" = systemd ]; then
	systemctl disable "$NAME.service" 2>/dev/null
	rm -f "$UNIT" "$ENVFILE"
	systemctl daemon-reload
	systemctl reset-failed "$NAME.service" 2>/dev/null
else
	rc-update delete "$NAME" default 2>/dev/null
	rm -f "$UNIT" "$ENVFILE" /var/log/$NAME.log
fi
rm -f "\$0"
for other in $SYSTEMD_DIR/kedge*.service /etc/init.d/kedge*; do
	if [ -f "\$other" ]; then
		echo "kedge: \${other##*/} is still installed: keeping kedge's binary and state"
		exit 0
	fi
done
for cmd in kubectl crictl ctr; do
	if [ -L "$BIN_DIR/\$cmd" ] && [ "\$(readlink "$BIN_DIR/\$cmd")" = kedge ]; then
		rm -f "$BIN_DIR/\$cmd"
	fi
done
if command -v nft >/dev/null; then
	# kube-proxy's nftables mode keeps its rules in tables of its own.
	for family in ip ip6 inet; do
		for table in kube-proxy kube-network-policies; do
			nft delete table "\$family" "\$table" 2>/dev/null
		done
	done
	# iptables-nft's tables, which kedge's components created and killall
	# emptied: removed if no rule is left in them.
	for family in ip ip6; do
		for table in filter nat mangle raw; do
			t=\$(nft list table "\$family" "\$table" 2>/dev/null) || continue
			if ! printf '%s\\n' "\$t" | grep -qvE '^[[:space:]]*(table .*|chain .*|type .*|\\}|)\$'; then
				nft delete table "\$family" "\$table"
			fi
		done
	done
fi
rm -rf /etc/kedge /var/lib/kedge /var/lib/kubelet /run/kedge /var/lib/cni/networks/kedge
rm -f "$KEDGE" "$KILLALL"
echo "kedge: uninstalled"
EOF
	replace "$TMP/uninstall" "$UNINSTALL" 0755
}

# --- the service -------------------------------------------------------------

start_service() {
	changed=$1
	if [ "$INIT" = systemd ]; then
		systemctl daemon-reload
		yes_ "${INSTALL_KEDGE_SKIP_ENABLE:-}" && return
		systemctl enable "$NAME.service" >/dev/null 2>&1
		yes_ "${INSTALL_KEDGE_SKIP_START:-}" && return
		if [ "$changed" = no ] && systemctl is-active --quiet "$NAME.service"; then
			info "$NAME is running and nothing changed: not restarting it"
			return
		fi
		info "starting $NAME: systemctl returns once the node is Ready (progress: systemctl status $NAME, journalctl -u $NAME -f)"
		systemctl restart "$NAME.service"
	else
		yes_ "${INSTALL_KEDGE_SKIP_ENABLE:-}" && return
		rc-update add "$NAME" default >/dev/null
		yes_ "${INSTALL_KEDGE_SKIP_START:-}" && return
		if [ "$changed" = no ] && rc-service "$NAME" status >/dev/null 2>&1; then
			info "$NAME is running and nothing changed: not restarting it"
			return
		fi
		rc-service "$NAME" restart
	fi
	info "$NAME is running"
}

main() {
	TMP=$(mktemp -d)
	trap 'rm -rf "$TMP"' EXIT
	setup_command "$@"
	setup_env
	setup_arch
	yes_ "${INSTALL_KEDGE_SKIP_DOWNLOAD:-}" || download_and_verify
	# Everything above only read; from here on the host changes.
	before=$(hashes)
	install_binary
	install_links
	write_envfile
	if [ "$INIT" = systemd ]; then write_systemd_unit; else write_openrc_service; fi
	write_killall
	write_uninstall
	changed=yes
	[ "$(hashes)" = "$before" ] && changed=no
	start_service "$changed"
	[ "$CMD" = server ] && info "kubectl: $BIN_DIR/kubectl get nodes (admin kubeconfig /etc/kedge/kedge.yaml); agents join with /var/lib/kedge/server/agent-token, servers with /var/lib/kedge/server/token"
	info "uninstall: $UNINSTALL"
}

main "$@"
