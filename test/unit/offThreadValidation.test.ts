/**
 * Large objects are validated in the agent's worker thread (sluice-worker, the compiled one
 * under build/src/bin/): the caller gets what validating here would give (less exact copies
 * in a NetworkPolicy's ORed lists), a failure in the
 * thread is an error for that call only, and a stored value over the API's object size is
 * refused before anything reads it.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { LARGE_OBJECT_BYTES, hasMoreValues, validateText, validateTextOffThread } from "../../src/config/offThreadValidation.js";
import { MAX_OBJECT_BYTES, networkPolicyKind } from "../../src/config/resourceKinds.js";
import { networkPolicyWithoutCopies } from "../../src/config/k8sSchemas.js";
import { decodeStoredObject, decodeStoredObjectOffThread } from "../../src/datastore/etcdResources.js";
import { WorkerThread } from "../../src/util/workerThread.js";

const policy = (peers: number, cidr = "10.0.0.0/8"): string =>
  JSON.stringify({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "p", namespace: "x" }, spec: { podSelector: {}, ingress: [{ from: Array.from({ length: peers }, () => ({ ipBlock: { cidr } })), ports: [{ port: 80 }] }] } });

describe("validation off the event loop", () => {
  const thread = new WorkerThread("test-validate");
  after(() => thread.close());

  test("a large valid or invalid object: the same answer as validating it here, without the exact copies in its ORed lists", async () => {
    const good = policy(5000);
    assert.ok(good.length >= LARGE_OBJECT_BYTES, `${good.length} bytes`);
    const here = validateText(networkPolicyKind, good);
    assert.ok(here.ok);
    assert.deepEqual(await validateTextOffThread(thread, networkPolicyKind, good), { ...here, object: networkPolicyWithoutCopies(here.object).object, copies: 4999 });
    const bad = policy(5000, "10.0.0.0/33");
    const v = await validateTextOffThread(thread, networkPolicyKind, bad);
    assert.deepEqual(v, validateText(networkPolicyKind, bad));
    assert.ok(!v.ok && "issues" in v && v.issues[0]?.path === "spec.ingress[0].from[0].ipBlock.cidr");
    const notJson = `${good.slice(0, -1)},`;
    assert.deepEqual(await validateTextOffThread(thread, networkPolicyKind, notJson), validateText(networkPolicyKind, notJson));
  });

  test("a stored value: decoded off the thread as decodeStoredObject decodes it; over MAX_OBJECT_BYTES it is refused unread", async () => {
    const kv = { value: Buffer.from(policy(5000)), mod_revision: "42" };
    const here = decodeStoredObject(networkPolicyKind, "x", "p", kv);
    assert.ok(here.ok);
    assert.deepEqual(await decodeStoredObjectOffThread(thread, networkPolicyKind, "x", "p", kv), { ...here, object: networkPolicyWithoutCopies(here.object).object, copies: 4999 });
    const wrongKey = await decodeStoredObjectOffThread(thread, networkPolicyKind, "x", "other", kv);
    assert.deepEqual(wrongKey, { ok: false, reason: 'metadata.name "p" does not match the key' });
    const huge = { value: Buffer.alloc(MAX_OBJECT_BYTES + 1, " "), mod_revision: "43" };
    const expected = { ok: false, reason: `is ${MAX_OBJECT_BYTES + 1} bytes of JSON, over the 1572864 bytes (1.5 MiB) one Kubernetes object may take` };
    assert.deepEqual(decodeStoredObject(networkPolicyKind, "x", "p", huge), expected);
    assert.deepEqual(await decodeStoredObjectOffThread(thread, networkPolicyKind, "x", "p", huge), expected);
  });

  test("a task that throws rejects that call only; a call over its timeout replaces the thread; close rejects what is in flight", async () => {
    await assert.rejects(thread.call("no-such-task", {}), /unknown task no-such-task/);
    assert.equal((await validateTextOffThread(thread, networkPolicyKind, policy(5000))).ok, true, "the thread still works");
    const slow = new WorkerThread("test-slow");
    await assert.rejects(slow.call("validate-object", { kind: "NetworkPolicy", text: policy(200_000) }, { timeoutMs: 1 }), /test-slow: validate-object took longer than 1 ms/);
    assert.equal((await validateTextOffThread(slow, networkPolicyKind, policy(5000))).ok, true, "a new thread took over");
    const pending = assert.rejects(slow.call("validate-object", { kind: "NetworkPolicy", text: policy(200_000) }), /test-slow: closed/);
    await slow.close();
    await pending;
  });

  test("networkPolicyWithoutCopies: exact copies of rules, peers and ports go, first ones kept in order; anything else is kept", () => {
    const a = { podSelector: { matchLabels: { app: "a" } } };
    const b = { ipBlock: { cidr: "10.0.0.0/8" } };
    const np = (spec: object) => networkPolicyKind.schema.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "p", namespace: "x" }, spec });
    const out = networkPolicyWithoutCopies(np({ podSelector: {}, ingress: [{ from: [a, b, a, b], ports: [{ port: 80 }, { port: 80 }] }, { from: [a, b, b], ports: [{ port: 80 }] }, {}], egress: [{ to: [b, a, b] }, { to: [b, a] }] }));
    assert.deepEqual(out, { object: np({ podSelector: {}, ingress: [{ from: [a, b], ports: [{ port: 80 }] }, {}], egress: [{ to: [b, a] }] }), copies: 2 + 1 + 1 + 1 + 1 + 1 });
    const none = np({ podSelector: {}, ingress: [{ from: [a, b] }] });
    assert.equal(networkPolicyWithoutCopies(none).object, none, "no copies: the same object");
  });

  test("hasMoreValues: counts values up to its limit only", () => {
    assert.equal(hasMoreValues({ a: [1, 2, { b: "c" }] }, 6), false);
    assert.equal(hasMoreValues({ a: [1, 2, { b: "c" }] }, 5), true);
    assert.equal(hasMoreValues(JSON.parse(policy(5000)) as unknown), true);
    assert.equal(hasMoreValues(JSON.parse(policy(10)) as unknown), false);
  });
});
