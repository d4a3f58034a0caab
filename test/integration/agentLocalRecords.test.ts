import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalEndpointWatcher, PolicyReadyMarks } from "../../src/agent/localEndpoints.js";
import type { WorkloadEndpointRecord } from "../../src/model/endpoint.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { localEndpointPath, localEndpointsDir, policyReadyDir, policyReadyPath, readyMarkCovers } from "../../src/model/localEndpoints.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { captureLog } from "../helpers/log.js";

const rec = (pod: string, ip: string, node = "cni-node-name"): WorkloadEndpointRecord => ({ node, namespace: "ns1", pod, containerId: `ctr-${pod}`, ifName: "eth0", hostIface: hostIfaceName("ns1", pod), ips: [ip] });

/** The plugin's way of writing: a dot-file renamed into place. */
function publish(dataDir: string, r: WorkloadEndpointRecord): void {
  mkdirSync(localEndpointsDir(dataDir), { recursive: true });
  const tmp = join(localEndpointsDir(dataDir), `.${r.hostIface}.tmp`);
  writeFileSync(tmp, JSON.stringify(r));
  renameSync(tmp, localEndpointPath(dataDir, r.hostIface));
}

describe("the agent's view of the plugin's local endpoint records", () => {
  const dirs: string[] = [];
  const watchers: LocalEndpointWatcher[] = [];
  const fresh = (): string => {
    const d = mkdtempSync(join(tmpdir(), "sluice-local-"));
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const w of watchers) w.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const start = async (dataDir: string, rescanMs = 60_000): Promise<{ w: LocalEndpointWatcher; changes: () => number; logs: ReturnType<typeof captureLog> }> => {
    const logs = captureLog();
    const w = new LocalEndpointWatcher({ dataDir, nodeName: "node-7", log: logs.log, rescanMs });
    watchers.push(w);
    let n = 0;
    w.on("changed", () => n++);
    await w.start();
    return { w, changes: () => n, logs };
  };

  test("a record written after start shows up at once (fs.watch), as this node's, and goes with its file", async () => {
    const dataDir = fresh();
    mkdirSync(localEndpointsDir(dataDir), { recursive: true });
    const { w, changes } = await start(dataDir);
    assert.deepEqual(w.records(), []);
    const t0 = Date.now();
    publish(dataDir, rec("a", "10.244.1.2"));
    assert.ok(await eventually(async () => w.records().length === 1, 2000, 5), "seen");
    assert.ok(Date.now() - t0 < 1000, `seen after ${Date.now() - t0} ms, long before the 60 s rescan`);
    assert.deepEqual(w.records(), [{ ...rec("a", "10.244.1.2"), node: "node-7" }], "the node is the agent's, whatever the plugin was told");
    assert.equal(changes(), 1);
    unlinkSync(localEndpointPath(dataDir, hostIfaceName("ns1", "a")));
    assert.ok(await eventually(async () => w.records().length === 0, 2000, 5), "gone");
    assert.equal(changes(), 2);
  });

  test("the directory is made at start, so the first pod's record is seen at once; one removed and made again is found by the periodic rescan", async () => {
    const dataDir = fresh();
    const { w } = await start(dataDir, 60_000);
    assert.ok(existsSync(localEndpointsDir(dataDir)), "made by start()");
    const t0 = Date.now();
    publish(dataDir, rec("b", "10.244.1.3"));
    assert.ok(await eventually(async () => w.records().length === 1, 2000, 5));
    assert.ok(Date.now() - t0 < 1000, `seen after ${Date.now() - t0} ms, long before the 60 s rescan`);
    w.stop();

    const other = fresh();
    const { w: w2 } = await start(other, 100);
    rmSync(localEndpointsDir(other), { recursive: true });
    publish(other, rec("c", "10.244.1.4"));
    publish(other, rec("d", "10.244.1.5"));
    assert.ok(await eventually(async () => w2.records().length === 2, 3000, 20));
    assert.deepEqual(w2.records().map((r) => r.pod).sort(), ["c", "d"]);
  });

  test("partial, invalid and misnamed files are ignored (logged once); a broken rewrite keeps the last good record; temp files are skipped", async () => {
    const dataDir = fresh();
    publish(dataDir, rec("d", "10.244.1.5"));
    const { w, logs } = await start(dataDir, 50);
    assert.deepEqual(w.records().map((r) => r.pod), ["d"]);
    const dir = localEndpointsDir(dataDir);
    writeFileSync(join(dir, `${hostIfaceName("ns1", "e")}.json`), '{"node":"x","namespace":"ns1","po');
    writeFileSync(join(dir, `${hostIfaceName("ns1", "f")}.json`), JSON.stringify({ ...rec("f", "10.244.1.6"), ips: ["10.244.1.6/24"] }));
    writeFileSync(join(dir, "slc000000000000.json"), JSON.stringify(rec("g", "10.244.1.7")));
    writeFileSync(join(dir, `.${hostIfaceName("ns1", "h")}.json`), JSON.stringify(rec("h", "10.244.1.8")));
    // The good record of d overwritten in place by something that is not the plugin.
    writeFileSync(localEndpointPath(dataDir, hostIfaceName("ns1", "d")), "{");
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(w.records().map((r) => r.pod), ["d"], "d's last good version stays; the others never counted");
    const warnings = logs.records.filter((r) => r["msg"] === "ignoring an invalid local endpoint record");
    assert.equal(warnings.length, 4, JSON.stringify(warnings));
    assert.ok(warnings.some((r) => String(r["reason"]).includes("ips[0]")));
    assert.ok(warnings.some((r) => String(r["reason"]).includes("does not match the file name")));
    assert.ok(warnings.some((r) => r["keptLastGood"] === true));
    // Completing the partial file makes it count.
    publish(dataDir, rec("e", "10.244.1.9"));
    assert.ok(await eventually(async () => w.records().some((r) => r.pod === "e"), 2000, 10));
  });

  test("records seen through watch events alone (re-reading only the files they name) stay equal to a full read, over random creates, rewrites and removals", async () => {
    const dataDir = fresh();
    for (let i = 0; i < 40; i++) publish(dataDir, rec(`p${i}`, `10.244.2.${i + 2}`));
    const { w } = await start(dataDir, 3_600_000); // no periodic rescan in this test
    assert.equal(w.records().length, 40);
    let seed = 17;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const full = async (): Promise<string[]> => {
      const { w: fresh2 } = await start(dataDir, 3_600_000);
      fresh2.stop();
      return fresh2.records().map((r) => JSON.stringify(r));
    };
    for (let round = 0; round < 6; round++) {
      for (let k = 0; k < 30; k++) {
        const i = rnd(60);
        const path = localEndpointPath(dataDir, hostIfaceName("ns1", `p${i}`));
        const op = rnd(4);
        if (op === 0 && existsSync(path)) unlinkSync(path);
        else if (op === 1) writeFileSync(path, JSON.stringify(rec(`p${i}`, `10.244.3.${rnd(250) + 2}`))); // in place
        else publish(dataDir, rec(`p${i}`, `10.244.4.${rnd(250) + 2}`));
      }
      const want = await full();
      assert.ok(await eventually(async () => JSON.stringify(w.records().map((r) => JSON.stringify(r))) === JSON.stringify(want), 3000, 10), `round ${round}: the watcher's records equal a full read`);
    }
  });
});

describe("policy-ready marks", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-ready-"));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  const marks = (): string[] => readdirSync(policyReadyDir(dataDir)).sort();

  test("sync writes a mark per programmed endpoint, removes the others (a previous run's too), and rewrites one the plugin removed", async () => {
    mkdirSync(policyReadyDir(dataDir), { recursive: true });
    writeFileSync(policyReadyPath(dataDir, "slcstale0000000"), "{}");
    const m = new PolicyReadyMarks(dataDir, captureLog().log);
    await m.sync([
      { hostIface: "slcaaaaaaaaaaaa", containerId: "ctr-a", ips: ["10.244.1.2"] },
      { hostIface: "slcbbbbbbbbbbbb", containerId: "ctr-b", ips: ["fd00::2", "10.244.1.3"] },
      // A pod the API server reported, with no record on the node: nobody waits for it.
      { hostIface: "slccccccccccccc", containerId: "", ips: ["10.244.1.9"] },
    ]);
    assert.deepEqual(marks(), ["slcaaaaaaaaaaaa", "slcbbbbbbbbbbbb"]);
    const markB = (): string => readFileSync(policyReadyPath(dataDir, "slcbbbbbbbbbbbb"), "utf8");
    assert.ok(readyMarkCovers(markB(), "ctr-b", ["10.244.1.3", "fd00:0::2"]), "order and IPv6 spelling do not matter");
    assert.ok(!readyMarkCovers(markB(), "ctr-b", ["10.244.1.3"]), "a subset is not the same");
    assert.ok(!readyMarkCovers(markB(), "ctr-b2", ["10.244.1.3", "fd00::2"]), "another container's mark is not this one's");
    unlinkSync(policyReadyPath(dataDir, "slcaaaaaaaaaaaa"));
    await m.sync([
      { hostIface: "slcaaaaaaaaaaaa", containerId: "ctr-a", ips: ["10.244.1.2"] },
      { hostIface: "slcbbbbbbbbbbbb", containerId: "ctr-b2", ips: ["10.244.1.3", "fd00::2"] },
    ]);
    assert.deepEqual(marks(), ["slcaaaaaaaaaaaa", "slcbbbbbbbbbbbb"]);
    assert.ok(readyMarkCovers(markB(), "ctr-b2", ["10.244.1.3", "fd00::2"]), "a new container with the same addresses gets its own mark");
    await m.sync([]);
    assert.deepEqual(marks(), []);
  });
});
