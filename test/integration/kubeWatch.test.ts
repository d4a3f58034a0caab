/**
 * KubeCollectionWatch with the client library's informer (2.x) against the fake API
 * server: watches the server ends cleanly are resumed from their resourceVersion (no
 * relist, nothing lost while none was open), and stop() during the informer's reconnect
 * wait opens no further watch.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { KubeConfig } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { KubeCollectionWatch, type RawKubeObject } from "../../src/datastore/kubeWatch.js";
import { FakeKubeApi } from "../helpers/fakeKubeApi.js";
import { kubeConfigFor, namespaceObject, until } from "../helpers/kube.js";
import { captureLog } from "../helpers/log.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NAMESPACES = { group: "", version: "v1", plural: "namespaces", kind: "Namespace" };

describe("KubeCollectionWatch", () => {
  let api: FakeKubeApi;
  let kc: KubeConfig;
  before(async () => {
    api = await FakeKubeApi.start();
    kc = await kubeConfigFor(api);
  });
  after(async () => {
    await api.stop();
  });

  const watchOf = (names: string[]) =>
    new KubeCollectionWatch({
      kc,
      log: captureLog().log,
      resource: NAMESPACES,
      handlers: {
        list: (items: RawKubeObject[]) => names.splice(0, names.length, ...items.map((i) => i.metadata?.name ?? "")),
        upsert: (o: RawKubeObject) => names.push(o.metadata?.name ?? ""),
        remove: () => undefined,
      },
    });
  const open = (): number => api.watchCounts()["v1/namespaces"] ?? 0;
  const watchRequests = () => api.requests({ method: "GET", path: "/api/v1/namespaces" }).filter((r) => r.watch);

  test("a watch the server ends cleanly is resumed from its resourceVersion: no relist, the changes made meanwhile arrive", async () => {
    api.clearRequests();
    const names: string[] = [];
    const w = watchOf(names);
    try {
      await w.start();
      await until("the watch", () => open() === 1);
      for (const name of ["a", "b", "c"]) {
        api.closeWatches();
        const rv = api.put(namespaceObject(name)).metadata.resourceVersion;
        await until(`namespace ${name}`, () => names.includes(name));
        await until("the watch reopened", () => open() === 1);
        assert.ok(Number(watchRequests().at(-1)?.query["resourceVersion"]) < Number(rv), "resumed from before the change, so the change came as an event");
      }
      assert.equal(w.listCount, 1, "never relisted");
      assert.ok(w.live);
    } finally {
      await w.stop();
    }
  });

  test("stop() while the informer waits to reopen a watch: no request after it, no watch left open", async () => {
    const names: string[] = [];
    const w = watchOf(names);
    await w.start();
    await until("the watch", () => open() === 1);
    // The informer reopens a watch that ended without an event at once the first time, then
    // after 1 s, then after 2 s: the third close leaves it waiting for 2 s, and stop() comes
    // half a second into that wait (time enough to see the end of the stream on loopback).
    for (let i = 0; i < 2; i++) {
      api.closeWatches();
      await until("the watch reopened", () => open() === 1);
    }
    api.closeWatches();
    await sleep(500);
    const before = api.requests().length;
    await w.stop();
    await sleep(2_500);
    assert.deepEqual(api.requests().slice(before), [], "no request after stop()");
    assert.equal(open(), 0);
  });
});
