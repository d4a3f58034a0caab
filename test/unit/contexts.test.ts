/** sluicectl's contexts file: recording, removing, picking, and what a datastore command runs with. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { contextsPath, currentContext, readContexts, recordContext, removeContexts, useContext, withCurrentContext } from "../../src/ctl/contexts.js";

describe("sluicectl contexts", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-ctx-"));
  const file = join(dir, "sub", "config.json");
  const a = { name: "sandbox-a", etcdEndpoints: "unix:///tmp/a/etcd.sock:0", etcdCafile: "/tmp/a/ca.crt", etcdCertfile: "/tmp/a/c.crt", etcdKeyfile: "/tmp/a/c.key", sandboxStateDir: "/tmp/a" };
  const b = { name: "prod", etcdEndpoints: "https://10.0.0.1:2379" };

  test("where the file is: SLUICE_CONFIG, else XDG_CONFIG_HOME, else ~/.config", () => {
    assert.equal(contextsPath({ SLUICE_CONFIG: "/x/c.json", XDG_CONFIG_HOME: "/y" }), "/x/c.json");
    assert.equal(contextsPath({ XDG_CONFIG_HOME: "/y" }), "/y/sluice/config.json");
    assert.equal(contextsPath({ HOME: "/home/u" }), "/home/u/.config/sluice/config.json");
  });

  test("record makes current, written 0600; use switches; remove of the current leaves none current", () => {
    assert.equal(currentContext(file), undefined, "no file: no context");
    recordContext(file, b);
    recordContext(file, a);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(currentContext(file)?.name, "sandbox-a");
    useContext(file, "prod");
    assert.equal(currentContext(file)?.name, "prod");
    assert.throws(() => useContext(file, "nope"), /no context "nope" in .*have: prod, sandbox-a/);
    useContext(file, "sandbox-a");
    assert.deepEqual(removeContexts(file, (c) => c.sandboxStateDir === "/tmp/a"), ["sandbox-a"]);
    assert.equal(readContexts(file).currentContext, undefined);
    assert.deepEqual(readContexts(file).contexts.map((c) => c.name), ["prod"]);
  });

  test("a flag or variable for the connection wins; otherwise the current context fills all four", () => {
    recordContext(file, a);
    const filled = withCurrentContext({ "resource-prefix": "/p" }, file);
    assert.equal(filled.used?.name, "sandbox-a");
    assert.deepEqual(filled.flags, { "resource-prefix": "/p", "etcd-endpoints": a.etcdEndpoints, "etcd-cafile": a.etcdCafile, "etcd-certfile": a.etcdCertfile, "etcd-keyfile": a.etcdKeyfile });
    // Only a CA given: the context's certificate must not be mixed with another etcd.
    const own = withCurrentContext({ "etcd-cafile": "/mine/ca.crt" }, file);
    assert.equal(own.used, undefined);
    assert.deepEqual(own.flags, { "etcd-cafile": "/mine/ca.crt" });
  });

  test("a damaged file is refused naming the file and the field", () => {
    writeFileSync(file, JSON.stringify({ contexts: [{ name: "x" }] }));
    assert.throws(() => readContexts(file), /config\.json: contexts\.0\.etcdEndpoints.*fix or remove the file/);
    writeFileSync(file, "{");
    assert.throws(() => readContexts(file), /is not valid JSON/);
    assert.ok(readFileSync(file, "utf8").length > 0, "left as it was");
    rmSync(dir, { recursive: true, force: true });
  });
});
