/**
 * scripts/install-cni.sh as the DaemonSet's init container runs it (its env, the
 * ConfigMap's conflist), into stand-in node directories: what it installs, that it is
 * idempotent and atomic, and that the installed plugin (the wrapper running the copied
 * node binary and the bundle alone, no node_modules) answers a runtime, ADD and DEL
 * included, in a throwaway node namespace.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCniNetConf } from "../../src/config/cniConfig.js";
import { type CniNode, invokeCni, makeCniNode } from "../helpers/cni.js";
import { ROOT, configMap, daemonSet, plainEnv, podContainer } from "../helpers/manifests.js";
import { uniquePrefix } from "../helpers/netns.js";

const NODE = "node-7.example";

describe("install-cni.sh (the init container)", () => {
  let dir: string;
  let binDir: string;
  let netDir: string;
  let source: string;
  const init = podContainer(daemonSet(), "install-cni", true);
  const confName = plainEnv(init)["CNI_CONF_NAME"] ?? assert.fail("CNI_CONF_NAME");
  const conflistText = configMap().data?.["cni-conf.json"] ?? assert.fail("cni-conf.json");

  const install = (env: Record<string, string> = {}): { code: number | null; stderr: string } => {
    const r = spawnSync("sh", [join(ROOT, "scripts/install-cni.sh")], {
      env: { PATH: process.env["PATH"], ...plainEnv(init), NODE_NAME: NODE, CNI_BIN_DIR: binDir, CNI_NET_DIR: netDir, CNI_CONF_SOURCE: source, SLUICE_HOME: ROOT, NODE_BIN: process.execPath, ...env },
      encoding: "utf8",
    });
    return { code: r.status, stderr: r.stderr };
  };
  const stamp = (p: string): string => {
    const s = statSync(p);
    return `${s.ino}:${s.mtimeMs}`;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-install-"));
    binDir = join(dir, "opt/cni/bin");
    netDir = join(dir, "etc/cni/net.d");
    mkdirSync(join(dir, "etc-sluice"));
    source = join(dir, "etc-sluice/cni-conf.json");
    writeFileSync(source, conflistText);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("installs the wrapper, node, the bundle and the conflist for this node", () => {
    const r = install();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(join(binDir, "sluice")).mode & 0o777, 0o755);
    assert.ok(readFileSync(join(binDir, "sluice.d/node")).equals(readFileSync(process.execPath)));
    assert.equal(statSync(join(binDir, "sluice.d/node")).mode & 0o777, 0o755);
    assert.ok(readFileSync(join(binDir, "sluice.d/sluice-cni.js")).equals(readFileSync(join(ROOT, "dist/bin/sluice-cni.js"))));
    const list = JSON.parse(readFileSync(join(netDir, confName), "utf8")) as { name: string; cniVersion: string; plugins: Record<string, unknown>[] };
    assert.deepEqual(list, JSON.parse(conflistText.replaceAll("__KUBERNETES_NODE_NAME__", NODE)));
    assert.equal(parseCniNetConf({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion }, {}).nodeName, NODE);
    assert.match(r.stderr, /portmap is missing/, "no portmap in the stand-in bin dir");
  });

  test("a second run changes nothing", () => {
    const files = ["sluice", "sluice.d/node", "sluice.d/sluice-cni.js"].map((f) => join(binDir, f)).concat(join(netDir, confName));
    const before = files.map(stamp);
    const r = install();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(files.map(stamp), before);
    assert.equal(r.stderr.match(/is up to date/g)?.length, 4);
  });

  test("a changed ConfigMap replaces the conflist by rename, leaving no temporary file", () => {
    const conf = join(netDir, confName);
    const before = statSync(conf).ino;
    writeFileSync(source, conflistText.replace(/"policyReadyTimeoutMs": \d+/, '"policyReadyTimeoutMs": 1234'));
    try {
      assert.equal(install().code, 0);
      assert.notEqual(statSync(conf).ino, before);
      assert.match(readFileSync(conf, "utf8"), /"policyReadyTimeoutMs": 1234/);
      assert.deepEqual(spawnSync("find", [dir, "-name", "*.tmp.*"], { encoding: "utf8" }).stdout, "");
    } finally {
      writeFileSync(source, conflistText);
      install();
    }
  });

  test("warns when another network's config comes first", () => {
    writeFileSync(join(netDir, "05-other.conflist"), "{}");
    try {
      assert.match(install().stderr, /05-other\.conflist comes before/);
    } finally {
      rmSync(join(netDir, "05-other.conflist"));
    }
    writeFileSync(join(netDir, "99-last.conf"), "{}");
    try {
      assert.doesNotMatch(install().stderr, /comes before/);
    } finally {
      rmSync(join(netDir, "99-last.conf"));
    }
  });

  test("refuses to run without the node name", () => {
    const r = install({ NODE_NAME: "" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NODE_NAME/);
  });

  test("the installed plugin answers VERSION outside the repository", () => {
    const r = spawnSync(join(binDir, "sluice"), [], { env: { CNI_COMMAND: "VERSION" }, input: "{}", encoding: "utf8", cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    const v = JSON.parse(r.stdout) as { supportedVersions: string[] };
    assert.ok(v.supportedVersions.includes((JSON.parse(conflistText) as { cniVersion: string }).cniVersion));
  });

  describe("ADD and DEL through the installed plugin, in a node namespace", () => {
    let node: CniNode;
    before(async () => {
      node = await makeCniNode(uniquePrefix("inst"), 37);
    });
    after(async () => {
      await node?.destroy();
    });

    test("wires and unwires a pod", async () => {
      const plugin = join(binDir, "sluice");
      const pod = await node.pod("a");
      const added = await node.add(pod, "c1", "a", { plugin });
      assert.equal(added.code, 0, added.stdout + added.stderr);
      assert.match(JSON.stringify(added.json?.["ips"]), /10\.244\.7\./);
      assert.equal(node.allocations().length, 1);
      const deleted = await invokeCni(node.ns, { command: "DEL", containerId: "c1", netns: pod, ifName: "eth0", conf: node.conf(), plugin });
      assert.equal(deleted.code, 0, deleted.stdout + deleted.stderr);
      assert.equal(node.allocations().length, 0);
    });
  });
});
