import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { argMentionsPath } from "../../src/sandbox/cluster.js";
import { sandboxNetns, sandboxNetnsPattern } from "../../src/sandbox/netns.js";
import { hasNetnsPrefix } from "../helpers/netns.js";

describe("sandbox namespace names", () => {
  const all = [
    "sluice-sb-underlay",
    "sluice-sb-node-1",
    "sluice-sb-node-12",
    "sluice-sb-pod-default.web-1",
    "sluice-sb-pod-x.a.b",
    "sluice-sb-ep-2-a",
    "sluice-sb-ext-1",
    // another sandbox whose prefix starts with ours
    "sluice-sb-2-underlay",
    "sluice-sb-2-node-1",
    "sluice-sb-2-pod-default.web",
    "sluice-sb-2-ep-1-a",
    // not a sandbox's at all
    "sluice-sb",
    "sluice-sb-node-",
    "sluice-sb-node-1x",
    "sluice-sb-ext-a",
    "sluice-sb-pod-nodot",
    "sluice-sbx-node-1",
    "xsluice-sb-node-1",
  ];

  test("match exactly the namespaces a sandbox with that prefix makes", () => {
    assert.deepEqual(sandboxNetns("sluice-sb", all), ["sluice-sb-underlay", "sluice-sb-node-1", "sluice-sb-node-12", "sluice-sb-pod-default.web-1", "sluice-sb-pod-x.a.b", "sluice-sb-ep-2-a", "sluice-sb-ext-1"]);
    assert.deepEqual(sandboxNetns("sluice-sb-2", all), ["sluice-sb-2-underlay", "sluice-sb-2-node-1", "sluice-sb-2-pod-default.web", "sluice-sb-2-ep-1-a"]);
  });

  test("the prefix is taken literally, not as a pattern", () => {
    assert.ok(sandboxNetnsPattern("a.b").test("a.b-node-1"));
    assert.ok(!sandboxNetnsPattern("a.b").test("axb-node-1"));
  });

  test("test helper prefixes need a separator", () => {
    assert.ok(hasNetnsPrefix("sltcniers-node", "sltcniers"));
    assert.ok(hasNetnsPrefix("sltcniers", "sltcniers"));
    assert.ok(!hasNetnsPrefix("sltcniers5-node", "sltcniers"), "pid rs is not pid rs5");
    assert.ok(hasNetnsPrefix("sltcniers-p-x", "sltcniers-"));
    assert.ok(!hasNetnsPrefix("sltcniers5-p-x", "sltcniers-"));
  });
});

describe("command-line arguments naming a state directory", () => {
  const dir = "/tmp/sb";
  test("the directory or paths inside it, bare or embedded", () => {
    for (const arg of ["/tmp/sb", "/tmp/sb/", "/tmp/sb/etcd/data", "unix:///tmp/sb/etcd/etcd.sock", "--data-dir=/tmp/sb/etcd", '{"ctl":"/tmp/sb/s/p.sock"}', "unix:///tmp/sb/a.sock,http://127.0.0.1:1"]) {
      assert.ok(argMentionsPath(arg, dir), arg);
    }
  });
  test("not a sibling with a longer name or the same name elsewhere", () => {
    for (const arg of ["/tmp/sb-2", "/tmp/sb-2/etcd/data", "/tmp/sb2/x", "/tmp/sb.old/x", "/var/tmp/sb/x", "unix:///tmp/sb-2/etcd.sock", "/tmp/s"]) {
      assert.ok(!argMentionsPath(arg, dir), arg);
    }
  });
  test("insideOnly: the directory itself does not count", () => {
    assert.ok(!argMentionsPath("/tmp/sb", dir, true));
    assert.ok(!argMentionsPath("sluicectl sandbox down --state-dir /tmp/sb", dir, true));
    assert.ok(argMentionsPath("/tmp/sb/node-1/subnet.env", dir, true));
    assert.ok(!argMentionsPath("/tmp/sb-2/node-1/subnet.env", dir, true));
  });
});
