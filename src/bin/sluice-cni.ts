#!/usr/bin/env node
/**
 * sluice-cni: the CNI plugin (spec 1.1.0). The runtime sets CNI_COMMAND and friends and
 * passes the network config on stdin; the result or error goes to stdout.
 */
import { readSync, writeSync } from "node:fs";
import { isatty } from "node:tty";
import { SUPPORTED_CNI_VERSIONS } from "../config/cniConfig.js";
import { runCni } from "../cni/plugin.js";
import { VERSION } from "../version.js";

/**
 * All of stdin. Synchronous reads are the fast path (process.stdin and process.stdout
 * are not touched unless needed: setting those streams up costs milliseconds per call);
 * a non-blocking pipe whose writer has not written yet (EAGAIN) falls back to the stream.
 */
async function readStdin(): Promise<string> {
  if (isatty(0)) return "";
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      const n = readSync(0, buf, 0, buf.length, null);
      if (n === 0) return Buffer.concat(chunks).toString("utf8");
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
  } catch (err) {
    // Anything but "not yet": no stdin at all (a closed descriptor), so take what there is.
    if ((err as NodeJS.ErrnoException).code !== "EAGAIN") return Buffer.concat(chunks).toString("utf8");
  }
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function main(): Promise<number> {
  if (process.argv.includes("--help") || process.argv.includes("-h") || (!process.env["CNI_COMMAND"] && isatty(0))) {
    process.stdout.write(`sluice-cni ${VERSION}: CNI plugin (invoked by the container runtime with CNI_COMMAND set)\nSupported CNI versions: ${SUPPORTED_CNI_VERSIONS.join(", ")}\n`);
    return 0;
  }
  // Runtimes usually pass their own PATH; without one, find ip and nsenter in the usual places.
  process.env["PATH"] ||= "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  const out = await runCni(process.env, await readStdin());
  writeAll(1, out.stdout);
  return out.exitCode;
}

/** Writes all of `text` to a descriptor, waiting out a full non-blocking pipe. */
function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    writeAll(1, JSON.stringify({ cniVersion: "1.1.0", code: 100, msg: String(err) }) + "\n");
    process.exit(1);
  },
);
