/** `sluicectl explain` against a Kubernetes API server (the in-test one, through the real client library), as an operator runs it on a cluster. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { binPath } from "../../src/sandbox/paths.js";
import { FakeKubeApi } from "../helpers/fakeKubeApi.js";
import { namespaceObject, networkPolicyObject, nodeObject, podObject } from "../helpers/kube.js";

describe("sluicectl explain in Kubernetes mode", () => {
  let api: FakeKubeApi;
  const dir = mkdtempSync(join(tmpdir(), "sluice-explain-kube-"));
  // A context recorded elsewhere must not be used: the Kubernetes flags name the store.
  const env = { ...process.env, SLUICE_CONFIG: join(dir, "none.json") };
  const explain = (...args: string[]): ReturnType<typeof run> => run(process.execPath, [binPath("sluicectl"), "explain", ...args], undefined, 30_000, env);

  before(async () => {
    api = await FakeKubeApi.start();
    api.put(nodeObject("n1", { addresses: ["192.168.0.1"] }));
    api.put(namespaceObject("shop", { team: "shop" }));
    api.put(namespaceObject("other"));
    api.put(podObject("shop", "web", { node: "n1", ips: ["10.244.1.2"], labels: { app: "web" }, ports: [{ name: "http", containerPort: 8080 }] }));
    api.put(podObject("shop", "api", { node: "n1", ips: ["10.244.1.3"], labels: { app: "api" } }));
    api.put(podObject("other", "x", { node: "n1", ips: ["10.244.1.4"] }));
    api.put(networkPolicyObject("shop", "web-from-api", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "api" } } }], ports: [{ port: "http" }] }] }));
    api.put({ apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "no-other" }, spec: { tier: "Admin", priority: 5, subject: { namespaces: { matchLabels: { team: "shop" } } }, ingress: [{ name: "deny-other", action: "Deny", from: [{ namespaces: { matchLabels: { "kubernetes.io/metadata.name": "other" } } }] }] } });
  });
  after(async () => {
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("--kube-api-url: a NetworkPolicy allows a named port, an Admin Deny beats everything", async () => {
    const allowed = await explain("--kube-api-url", api.url, "shop/api", "shop/web", "--port", "8080/TCP");
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^shop\/api \(10\.244\.1\.3\) -> shop\/web \(10\.244\.1\.2\) 8080\/TCP: Allow/);
    assert.match(allowed.stdout, /\[NetworkPolicy\] shop\/web-from-api/);
    assert.doesNotMatch(allowed.stderr, /using context/);
    const denied = await explain("--kube-api-url", api.url, "other/x", "shop/web", "--port", "8080/TCP");
    assert.equal(denied.code, 1);
    assert.match(denied.stdout, /\[Admin\] no-other deny-other: Deny/);
  });

  test("--kubeconfig-file and --matrix -o json; a change on the server shows at the next run", async () => {
    const kc = join(dir, "kubeconfig");
    writeFileSync(kc, api.kubeconfig());
    const m = JSON.parse((await explain("--kubeconfig-file", kc, "--matrix", "-n", "shop", "--port", "8080/TCP", "-o", "json")).stdout) as { pods: string[]; matrix: Record<string, Record<string, boolean>> };
    assert.deepEqual(m.pods, ["shop/api", "shop/web"]);
    assert.equal(m.matrix["shop/api"]?.["shop/web"], true);
    api.remove({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", namespace: "shop", name: "web-from-api" });
    api.put(networkPolicyObject("shop", "web-closed", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"] }));
    const after = await explain("--kubeconfig-file", kc, "shop/api", "shop/web", "--port", "8080/TCP");
    assert.equal(after.code, 1);
    assert.match(after.stdout, /isolated by shop\/web-closed/);
  });

  test("an unreachable API server exits 3 naming it; --sandbox with a Kubernetes flag is refused", async () => {
    const down = await explain("--kube-api-url", "http://127.0.0.1:1", "shop/api", "shop/web");
    assert.equal(down.code, 3);
    assert.match(down.stderr, /Kubernetes API at http:\/\/127\.0\.0\.1:1/);
    const both = await explain("--kube-api-url", api.url, "--sandbox", "shop/api", "shop/web");
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--sandbox: .*cannot be combined with the Kubernetes flags/);
  });
});
