#!/usr/bin/env bash
# The main job: install what is missing, build, and run the sandbox demo
# (a 3-node cluster in network namespaces with real etcd, agents and traffic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/bin/sluicectl.js demo "$@"
