/**
 * The delta exchange with the render thread, across a real JSON boundary as the thread
 * sees it: the mirror always holds exactly what was sent, keeps unchanged items as the
 * same objects, sends only what changed, and a mirror that missed a delta asks for a
 * resync instead of rendering a wrong snapshot. And the whole task: renders that come
 * back as deltas equal a full render of the same snapshot, through a thread restart.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { PodEndpoint } from "../../src/model/endpoint.js";
import { Fingerprints, KeyedMirror, KeyedSender, ModelMirror, ModelSender, type ModelDelta, RenderMirror, type RenderDelta } from "../../src/agent/renderExchange.js";
import { type JsonText, type RenderPolicyReply, renderPolicy, renderPolicyTask } from "../../src/agent/policyRenderTask.js";
import type { PolicyModelInput } from "../../src/policy/model.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import { mulberry32 } from "../helpers/golden.js";
import { RANDOM_NP_NODES, randomNetworkPolicyScenario } from "../helpers/randomNetworkPolicies.js";

const across = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

function modelOf(seed: number): PolicyModelInput {
  const s = randomNetworkPolicyScenario(mulberry32(seed));
  return { endpoints: s.endpoints, namespaces: s.namespaces, networkPolicies: s.policies, objects: {}, refused: [] };
}

/** The same input with one pod's labels changed (a new object for it, the rest as they were). */
function relabel(m: PolicyModelInput, i: number, app: string): PolicyModelInput {
  return { ...m, endpoints: m.endpoints.map((e, j): PodEndpoint => (j === i ? { ...e, labels: { ...e.labels, app } } : e)) };
}

describe("render exchange", () => {
  test("the mirror holds what was sent, keeps unchanged items and gets only changes", () => {
    const sender = new ModelSender();
    const mirror = new ModelMirror();
    const first = modelOf(1);
    const got1 = mirror.apply(across(sender.next(first)));
    assert.ok(got1 !== "resync");
    assert.deepEqual(got1, first);
    const second = relabel(first, 0, "changed");
    const delta = sender.next(second);
    assert.equal(delta.endpoints.upsert.length, 1, "one endpoint sent");
    assert.equal(delta.networkPolicies.upsert.length, 0, "no policy sent");
    assert.equal(delta.endpoints.order, undefined, "the order did not change");
    const got2 = mirror.apply(across(delta));
    assert.ok(got2 !== "resync");
    assert.deepEqual(got2, second);
    assert.equal(got2.endpoints[1], got1.endpoints[1], "an unchanged endpoint is the same object");
    assert.equal(got2.networkPolicies, got1.networkPolicies, "an unchanged list is the same list");
    // Removal, addition and a new kind.
    const third: PolicyModelInput = { ...second, endpoints: second.endpoints.slice(1), objects: { Node: [{ apiVersion: "v1", kind: "Node", metadata: { name: "n1" } }] } };
    assert.deepEqual(mirror.apply(across(sender.next(third))), third);
    const fourth: PolicyModelInput = { ...third, objects: {} };
    assert.deepEqual(mirror.apply(across(sender.next(fourth))), fourth);
  });

  test("a keyed collection's mirror equals the list through random edits, and an edit in place sends only what changed", () => {
    type Item = { k: string; v: number };
    const rand = mulberry32(7);
    const pick = (n: number): number => Math.floor(rand() * n);
    const fp = new Fingerprints();
    const sender = new KeyedSender<Item>((i) => i.k, (i) => fp.of(i));
    const mirror = new KeyedMirror<Item>();
    let items: Item[] = Array.from({ length: 20 }, (_, i) => ({ k: `k${i % 17}`, v: i })); // some keys twice
    assert.deepEqual(mirror.apply(across(sender.diff(items))), items);
    for (let step = 0; step < 2000; step++) {
      const next = [...items];
      const at = pick(Math.max(next.length, 1));
      const kind = pick(6);
      let inPlace = false;
      if (kind === 0 && next.length) [next[at], inPlace] = [{ ...(next[at] as Item), v: pick(5) }, true]; // same key, maybe same content
      else if (kind === 1 && next.length) [next[at], inPlace] = [{ ...(next[at] as Item) }, true]; // a new object, equal content
      else if (kind === 2) next.splice(at, 0, { k: `k${pick(25)}`, v: pick(5) });
      else if (kind === 3 && next.length) next.splice(at, 1);
      else if (kind === 4 && next.length > 1) next.reverse();
      else if (next.length) next[at] = { k: `k${pick(25)}`, v: (next[at] as Item).v }; // another key at this position
      const delta = sender.diff(next);
      if (inPlace) {
        assert.equal(delta.order, undefined, `step ${step}: an edit in place keeps the order`);
        const changed = JSON.stringify(next[at]) !== JSON.stringify(items[at]) ? 1 : 0;
        assert.equal(delta.upsert.length, changed, `step ${step}: an edit in place sends the changed item alone`);
      }
      assert.deepEqual(mirror.apply(across(delta)), next, `step ${step} (edit ${kind})`);
      items = next;
    }
  });

  test("a mirror that did not get the delta before asks for a resync", () => {
    const sender = new ModelSender();
    const first = modelOf(2);
    new ModelMirror().apply(across(sender.next(first)));
    const fresh = new ModelMirror(); // a restarted thread
    assert.equal(fresh.apply(across(sender.next(relabel(first, 0, "x")))), "resync");
    sender.reset();
    const all: ModelDelta = sender.next(relabel(first, 0, "x"));
    assert.equal(all.base, 0);
    assert.deepEqual(fresh.apply(across(all)), relabel(first, 0, "x"));
  });

  test("renders sent back as deltas equal full renders, through changes and a thread restart", () => {
    const rnd = mulberry32(77);
    const call = (sender: ModelSender, m: PolicyModelInput): RenderPolicyReply =>
      JSON.parse(renderPolicyTask({ json: JSON.stringify({ model: sender.next(m), nodeName: RANDOM_NP_NODES[0], families: [4, 6], sctpSupported: true }) } satisfies JsonText).json) as RenderPolicyReply;
    for (let round = 0; round < 40; round++) {
      const sender = new ModelSender();
      const mirrors = new Map([
        [4, new RenderMirror()],
        [6, new RenderMirror()],
      ]);
      let m = modelOf(1000 + round);
      const previous = new Map<number, PolicyRender>();
      for (let step = 0; step < 5; step++) {
        if (step > 0) m = relabel(m, Math.floor(rnd() * m.endpoints.length), ["web", "db", "api", "none"][Math.floor(rnd() * 4)] as string);
        const reply = call(sender, m);
        assert.ok(!reply.resync);
        const full = new Map(renderPolicy({ model: m, nodeName: RANDOM_NP_NODES[0], families: [4, 6], sctpSupported: true }).renders);
        for (const [family, delta] of reply.renders) {
          const got = (mirrors.get(family) as RenderMirror).apply(delta as RenderDelta);
          assert.deepEqual(got, full.get(family), `round ${round} step ${step} IPv${family}`);
          // A relabel moves no local pod: the anti-spoofing chains are not sent again and stay the same arrays.
          const before = previous.get(family);
          if (before) {
            assert.equal((delta as RenderDelta).rawChains.upsert.length, 0, `round ${round} step ${step}: raw chains resent`);
            got.rawChains.forEach((c, i) => assert.equal(c.rules, before.rawChains[i]?.rules, `round ${round} step ${step}: ${c.name} is a new array`));
          }
          previous.set(family, got);
        }
      }
    }
  });
});
