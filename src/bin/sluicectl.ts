#!/usr/bin/env node
/** sluicectl: the command-line tool. */
import { runCtl } from "../ctl/commands.js";

void runCtl(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }).then((code) => {
  // Exit once stdout has drained: open etcd/gRPC handles must not keep the CLI alive.
  process.stdout.write("", () => process.exit(code));
});
