#!/usr/bin/env bash
# The test job: install what is missing, then type-check, lint and run every suite
# (unit, integration with real etcd, kernel tests in network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
