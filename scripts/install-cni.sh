#!/bin/sh
# Installs sluice-cni on a node and writes its conflist: the sluice DaemonSet's init
# container runs this with the node's CNI directories mounted.
#
# sluice-cni is a Node.js program (one bundled file that needs nothing from node_modules:
# it talks to no datastore) and nodes rarely have node, so the image's own node binary is
# copied next to it: $CNI_BIN_DIR/sluice.d/{node,sluice-cni.js}, run by the wrapper
# $CNI_BIN_DIR/sluice (the runtime finds the plugin by its type, "sluice"). That binary
# is linked against glibc and libstdc++, which the node must have.
#
# Every file is replaced atomically (written beside its target, then renamed) and only
# when it changed, so a runtime never runs or reads a half-written file.
set -eu
export LC_ALL=C

CNI_BIN_DIR=${CNI_BIN_DIR:-/host/opt/cni/bin}
CNI_NET_DIR=${CNI_NET_DIR:-/host/etc/cni/net.d}
CNI_CONF_NAME=${CNI_CONF_NAME:-10-sluice.conflist}
CNI_CONF_SOURCE=${CNI_CONF_SOURCE:-/etc/sluice/cni-conf.json}
SLUICE_HOME=${SLUICE_HOME:-/opt/sluice}
NODE_BIN=${NODE_BIN:-$(command -v node)}
: "${NODE_NAME:?must be set to the node name (downward API: spec.nodeName)}"

log() { echo "install-cni: $*" >&2; }

# install SRC DEST MODE
install_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    log "$2 is up to date"
    return 0
  fi
  tmp="$(dirname "$2")/.$(basename "$2").tmp.$$"
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
  log "installed $2"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$CNI_BIN_DIR/sluice.d" "$CNI_NET_DIR"
install_file "$NODE_BIN" "$CNI_BIN_DIR/sluice.d/node" 0755
install_file "$SLUICE_HOME/dist/bin/sluice-cni.js" "$CNI_BIN_DIR/sluice.d/sluice-cni.js" 0644

cat >"$work/sluice" <<'EOF'
#!/bin/sh
# The sluice CNI plugin, installed by the sluice DaemonSet (install-cni.sh).
d="$(dirname "$0")/sluice.d"
exec "$d/node" "$d/sluice-cni.js" "$@"
EOF
install_file "$work/sluice" "$CNI_BIN_DIR/sluice" 0755

sed "s/__KUBERNETES_NODE_NAME__/$NODE_NAME/g" "$CNI_CONF_SOURCE" >"$work/conflist"
install_file "$work/conflist" "$CNI_NET_DIR/$CNI_CONF_NAME" 0644

[ -x "$CNI_BIN_DIR/portmap" ] || log "warning: $CNI_BIN_DIR/portmap is missing; hostPort needs the node's CNI plugins (kubernetes-cni / containernetworking-plugins)"
# The runtime takes the first network config by name (byte order); say so when that is
# not ours.
for f in "$CNI_NET_DIR"/*; do
  case "$f" in *.conf | *.conflist | *.json) ;; *) continue ;; esac
  [ "$(basename "$f")" = "$CNI_CONF_NAME" ] && break
  log "warning: $f comes before $CNI_CONF_NAME, so the runtime uses it instead; remove it (README: moving from flannel or Canal)"
  break
done
log "done"
