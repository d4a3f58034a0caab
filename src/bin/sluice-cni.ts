#!/usr/bin/env node
/**
 * sluice-cni: the CNI plugin. This build answers VERSION; ADD/DEL/CHECK/GC/STATUS
 * come with the CNI plugin issue and until then fail with a proper CNI error.
 */
import { VERSION } from "../version.js";

const SUPPORTED = ["0.4.0", "1.0.0", "1.1.0"];

function main(): number {
  const cmd = process.env["CNI_COMMAND"];
  if (process.argv.includes("--help") || (!cmd && process.argv.length <= 2)) {
    process.stdout.write(`sluice-cni ${VERSION}: CNI plugin (invoked by the container runtime with CNI_COMMAND set)\nSupported CNI versions: ${SUPPORTED.join(", ")}\n`);
    return 0;
  }
  if (cmd === "VERSION") {
    process.stdout.write(JSON.stringify({ cniVersion: "1.1.0", supportedVersions: SUPPORTED }) + "\n");
    return 0;
  }
  process.stdout.write(JSON.stringify({ cniVersion: "1.1.0", code: 4, msg: `CNI_COMMAND ${cmd ?? "(unset)"} is not implemented in this build of sluice-cni` }) + "\n");
  return 1;
}

process.exit(main());
