#!/usr/bin/env bash
# The test job: install what is missing, then type-check, lint and run every suite
# (unit, integration with real etcd, kernel tests in network namespaces), all on the
# pinned Node.js of tools/node (scripts/node-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=scripts/node-env.sh
. scripts/node-env.sh
npm test
