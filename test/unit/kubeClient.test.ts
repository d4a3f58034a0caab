import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../src/config/errors.js";
import { collectionPath, kubeConfigFrom } from "../../src/datastore/kubeClient.js";

describe("kubeConfigFrom: --kubeconfig-file, else --kube-api-url, else the pod's service account", () => {
  let dir: string;
  let sa: string;
  let noSa: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-kc-"));
    sa = join(dir, "sa");
    noSa = join(dir, "none");
    for (const [f, text] of [
      ["sa/token", "tok"],
      ["sa/ca.crt", "-----BEGIN CERTIFICATE-----\n"],
      ["kubeconfig", "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: abc}\ncurrent-context: x\n"],
      ["noctx", "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"],
    ] as const) {
      const path = join(dir, f);
      rmSync(path, { force: true });
      if (f.startsWith("sa/")) mkdirSync(sa, { recursive: true });
      writeFileSync(path, text);
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a kubeconfig file; --kube-api-url overrides its server", async () => {
    const kc = await kubeConfigFrom({ kubeconfigFile: join(dir, "kubeconfig"), env: {}, serviceAccountDir: noSa });
    assert.equal(kc.getCurrentCluster()?.server, "https://10.0.0.1:6443");
    const over = await kubeConfigFrom({ kubeconfigFile: join(dir, "kubeconfig"), apiUrl: "http://127.0.0.1:8080", env: {}, serviceAccountDir: noSa });
    assert.equal(over.getCurrentCluster()?.server, "http://127.0.0.1:8080");
    assert.equal(over.getCurrentCluster()?.skipTLSVerify, true, "the client accepts plain HTTP only without TLS verification");
    assert.equal(over.getCurrentUser()?.token, "abc");
  });

  test("--kube-api-url alone: plain HTTP allowed; the service account's token when in a pod", async () => {
    const plain = await kubeConfigFrom({ apiUrl: "http://10.1.0.1:8080/", env: {}, serviceAccountDir: noSa });
    assert.equal(plain.getCurrentCluster()?.server, "http://10.1.0.1:8080");
    assert.equal(plain.getCurrentUser()?.authProvider, undefined);
    const inPod = await kubeConfigFrom({ apiUrl: "https://10.96.0.1:443", env: {}, serviceAccountDir: sa });
    assert.equal(inPod.getCurrentCluster()?.caFile, join(sa, "ca.crt"));
    assert.equal((inPod.getCurrentUser()?.authProvider as { config: { tokenFile: string } }).config.tokenFile, join(sa, "token"));
  });

  test("in a pod: KUBERNETES_SERVICE_HOST/PORT and the service account", async () => {
    const kc = await kubeConfigFrom({ env: { KUBERNETES_SERVICE_HOST: "fd00:96::1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: sa });
    assert.equal(kc.getCurrentCluster()?.server, "https://[fd00:96::1]:443");
  });

  test("clear errors naming the flag", async () => {
    const fails = async (o: Parameters<typeof kubeConfigFrom>[0], field: string, re: RegExp): Promise<void> => {
      await assert.rejects(kubeConfigFrom(o), (err: unknown) => err instanceof ConfigError && err.field === field && re.test(err.message));
    };
    await fails({ kubeconfigFile: join(dir, "missing"), env: {} }, "--kubeconfig-file", /cannot read .*missing/);
    await fails({ kubeconfigFile: join(dir, "noctx"), env: {} }, "--kubeconfig-file", /no current-context/);
    await fails({ apiUrl: "10.0.0.1:6443", env: {} }, "--kube-api-url", /http/);
    await fails({ apiUrl: "ftp://x", env: {} }, "--kube-api-url", /http:\/\/ or https:\/\//);
    await fails({ env: {}, serviceAccountDir: noSa }, "--kubeconfig-file", /not running in a pod \(KUBERNETES_SERVICE_HOST is not set, KUBERNETES_SERVICE_PORT is not set, no service account token/);
  });

  test("collection paths", () => {
    assert.equal(collectionPath({ group: "", version: "v1", plural: "pods" }), "/api/v1/pods");
    assert.equal(collectionPath({ group: "networking.k8s.io", version: "v1", plural: "networkpolicies" }), "/apis/networking.k8s.io/v1/networkpolicies");
  });
});
