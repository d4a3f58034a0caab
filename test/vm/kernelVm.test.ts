/**
 * The vm suite: boots Debian's kernel once (scripts/vm/run.sh, QEMU in software emulation)
 * and runs test/vm/guest/*.guest.js there, for what this host's kernel cannot do (WireGuard,
 * IPIP, IPVS, SCTP sockets). Each guest test shows up here as its own test.
 *
 * Where the VM cannot be had (no qemu or kernel image) the suite skips with the reason; on
 * CI (CI=true), where scripts/setup.sh installs both, that is a failure instead, so a
 * missing install step cannot hide behind a skip.
 */
import { test } from "node:test";
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { packageRoot } from "../../src/sandbox/paths.js";
import { runGuestTests, vmUnavailable } from "../helpers/vm.js";

const guestDir = join(__dirname, "guest");
// build/ is never cleaned: a guest file whose source was renamed or deleted must not run from there.
const guestFiles = readdirSync(guestDir)
  .filter((f) => f.endsWith(".guest.js") && existsSync(join(packageRoot(), "test", "vm", "guest", f.replace(/\.js$/, ".ts"))))
  .sort()
  .map((f) => relative(packageRoot(), join(guestDir, f)));

test("in the kernel-feature VM (Debian's kernel under QEMU)", { timeout: 1_200_000 }, async (t) => {
  const why = await vmUnavailable();
  if (why) {
    if (process.env.CI === "true") throw new Error(`the VM is required on CI (scripts/setup.sh installs it): ${why}`);
    t.skip(`no VM here: ${why}`);
    return;
  }
  await runGuestTests(t, guestFiles, { timeoutS: 900 });
});
