#!/usr/bin/env bash
# The main job: install what is missing, build, and run the sandbox demo
# (a 3-node cluster in network namespaces with real etcd, agents and traffic) on the
# pinned Node.js of tools/node (scripts/node-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=scripts/node-env.sh
. scripts/node-env.sh
exec node dist/bin/sluicectl.js demo "$@"
