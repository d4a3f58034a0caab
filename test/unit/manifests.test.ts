/**
 * The Kubernetes manifests (manifests/, crds/) are what a cluster runs, so they are kept
 * true by tests: every object against the Kubernetes OpenAPI schemas plus a strict
 * unknown-field check, RBAC least privilege, the ConfigMap through the agent's and the
 * CNI plugin's own parsers, the DaemonSet's flags through the agent's flag parser, and
 * the wiring between them (mounts, ports, paths). crds/ must hold one CRD for every
 * registered kind outside the built-in API groups; a missing one fails, it is never skipped.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { pathToFileURL } from "node:url";
import { parseAllDocuments } from "yaml";
import type { IClusterRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole" with { "resolution-mode": "import" };
import type { IClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding" with { "resolution-mode": "import" };
import type { ICustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition" with { "resolution-mode": "import" };
import type { IVolume } from "kubernetes-models/v1/Volume" with { "resolution-mode": "import" };
import { loadAgentConfig } from "../../src/config/agentConfig.js";
import { KINDS } from "../../src/config/resourceKinds.js";
import { parseCniNetConf } from "../../src/config/cniConfig.js";
import { parseNetworkConfig } from "../../src/config/networkConfig.js";
import { KubeFieldChecker, type KubeObject, schemaErrors } from "../helpers/kubeSchemas.js";
import { type ManifestDoc, ROOT, configMap, crdObjects, daemonSet, findObject, manifestObjects, plainEnv, podContainer, readYaml, yamlFiles } from "../helpers/manifests.js";

const NODE_NAME_PLACEHOLDER = "__KUBERNETES_NODE_NAME__";
/** The API groups a cluster serves itself: every other registered kind needs a CRD in crds/. */
const BUILT_IN_GROUPS = ["", "networking.k8s.io"];
const CRD_KINDS = KINDS.filter((k) => !BUILT_IN_GROUPS.includes(k.group)).map((k) => `${k.plural}.${k.group}`).sort();
const where = (d: ManifestDoc): string => `${d.file} #${d.index + 1} (${d.object.kind} ${(d.object["metadata"] as { name?: string } | undefined)?.name ?? "?"})`;

describe("every manifest and CRD against the Kubernetes OpenAPI schemas", () => {
  const docs = [...manifestObjects(), ...crdObjects()];
  let fields: KubeFieldChecker;
  before(() => {
    fields = KubeFieldChecker.create([...docs.map((d) => d.object), { apiVersion: "apps/v1", kind: "DaemonSet" }, { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" }]);
  });

  test("manifests/ holds the whole install", () => {
    const kinds = manifestObjects().map((d) => d.object.kind).sort();
    assert.deepEqual(kinds, ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Namespace", "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);
  });

  for (const d of docs) {
    test(where(d), async () => {
      const found = { schemaErrors: await schemaErrors(d.object), unknownFields: fields.unknownFields(d.object) };
      assert.deepEqual(found, { schemaErrors: [], unknownFields: [] });
    });
  }

  test("CRDs: crds/ holds only CustomResourceDefinitions, one for every registered kind outside the built-in API groups", () => {
    const crds = crdObjects();
    for (const d of crds) assert.equal(`${d.object.apiVersion} ${d.object.kind}`, "apiextensions.k8s.io/v1 CustomResourceDefinition", where(d));
    const defined = crds.map((d) => d.object as unknown as ICustomResourceDefinition).map((c) => `${c.spec.names.plural}.${c.spec.group}`);
    assert.deepEqual(defined.sort(), CRD_KINDS, "crds/ against the kinds the agent reads");
  });

  test("the strict check catches what the schema validator lets through", async () => {
    const ds = structuredClone(daemonSet()) as unknown as KubeObject & { spec: { template: { spec: Record<string, unknown> } } };
    const pod = ds.spec.template.spec;
    pod["tolerashuns"] = pod["tolerations"];
    delete pod["tolerations"];
    assert.deepEqual(await schemaErrors(ds), [], "kubernetes-models' validator allows unknown fields");
    assert.deepEqual(fields.unknownFields(ds), ["spec.template.spec.tolerashuns"]);

    // Inside a CRD's schema (items is "a schema or a list of them"): a misspelt x- key.
    const crd: ICustomResourceDefinition = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "things.example.com" },
      spec: {
        group: "example.com",
        scope: "Cluster",
        names: { plural: "things", kind: "Thing" },
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", properties: { spec: { type: "array", items: { type: "object", "x-kubernetes-preserve-unknown-field": true } as object } } } } }],
      },
    };
    assert.deepEqual(fields.unknownFields(crd as unknown as KubeObject), ["spec.versions[0].schema.openAPIV3Schema.properties.spec.items.x-kubernetes-preserve-unknown-field"]);
  });
});

describe("RBAC: least privilege", () => {
  const role = findObject("ClusterRole") as unknown as IClusterRole;
  const binding = findObject("ClusterRoleBinding") as unknown as IClusterRoleBinding;

  test("exactly what the agent lists, watches and patches", () => {
    const grants = (role.rules ?? []).flatMap((r) => (r.apiGroups ?? []).flatMap((g) => (r.resources ?? []).map((res) => `${g || "core"}/${res}: ${[...r.verbs].sort().join(",")}`)));
    assert.deepEqual(grants.sort(), [
      "core/namespaces: list,watch",
      "core/nodes/status: patch",
      "core/nodes: get,list,watch",
      "core/pods: list,watch",
      "networking.k8s.io/networkpolicies: list,watch",
      "policy.networking.k8s.io/clusternetworkpolicies: list,watch",
      "sluice.dev/globalnetworkpolicies: list,watch",
      "sluice.dev/globalnetworksets: list,watch",
      "sluice.dev/networksets: list,watch",
    ]);
    assert.ok(!JSON.stringify(role.rules).includes("*"), "no wildcards");
    assert.ok((role.rules ?? []).every((r) => r.nonResourceURLs === undefined && r.resourceNames === undefined));
    assert.equal(role.aggregationRule, undefined);
    assert.deepEqual(manifestObjects().filter((d) => /Role/.test(d.object.kind)).map((d) => d.object.kind).sort(), ["ClusterRole", "ClusterRoleBinding"], "no other roles");
  });

  test("bound to the DaemonSet's service account, and to nothing else", () => {
    const ds = daemonSet();
    const sa = findObject("ServiceAccount") as unknown as { metadata: { name: string; namespace: string } };
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata?.name });
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    assert.equal(ds.spec?.template.spec?.serviceAccountName, sa.metadata.name);
    assert.equal(ds.metadata?.namespace, sa.metadata.namespace);
  });

  test("every kind the agent's policy source lists and watches is granted", () => {
    const granted = (group: string, plural: string): string[] => (role.rules ?? []).filter((r) => r.apiGroups?.includes(group) && r.resources?.includes(plural)).flatMap((r) => r.verbs);
    for (const k of KINDS) {
      const verbs = granted(k.group, k.plural);
      assert.ok(verbs.includes("list") && verbs.includes("watch"), `${k.plural}.${k.group || "core"}: list and watch`);
    }
  });

  test("every CRD's resource is watched", () => {
    const crds = crdObjects().map((d) => d.object as unknown as ICustomResourceDefinition);
    assert.equal(crds.length, CRD_KINDS.length, "one CRD per custom kind");
    const granted = new Set((role.rules ?? []).flatMap((r) => (r.apiGroups ?? []).flatMap((g) => (r.resources ?? []).map((res) => `${g}/${res}`))));
    for (const c of crds) assert.ok(granted.has(`${c.spec.group}/${c.spec.names.plural}`), `${c.spec.group}/${c.spec.names.plural} is not in the ClusterRole`);
  });
});

describe("admission: the agent changes only its own Node", () => {
  interface Policy {
    metadata: { name: string };
    spec: {
      failurePolicy?: string;
      matchConstraints: { resourceRules: Array<{ apiGroups: string[]; apiVersions: string[]; operations: string[]; resources: string[] }> };
      matchConditions?: Array<{ name: string; expression: string }>;
      validations: Array<{ expression: string; reason?: string }>;
    };
  }
  const policy = findObject("ValidatingAdmissionPolicy") as unknown as Policy;
  const binding = findObject("ValidatingAdmissionPolicyBinding") as unknown as { spec: { policyName: string; validationActions: string[]; matchResources?: unknown; paramRef?: unknown } };
  const role = findObject("ClusterRole") as unknown as IClusterRole;
  const sa = findObject("ServiceAccount") as unknown as { metadata: { name: string; namespace: string } };

  test("applies to the DaemonSet's service account only, by the user name its tokens carry", () => {
    assert.deepEqual(policy.spec.matchConditions, [{ name: "sluice-agent", expression: `request.userInfo.username == 'system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}'` }]);
    assert.equal(daemonSet().spec?.template.spec?.serviceAccountName, sa.metadata.name);
  });

  test("covers every node resource the ClusterRole lets the agent write, and fails closed", () => {
    const writes = (role.rules ?? []).filter((r) => r.verbs.some((v) => !["get", "list", "watch"].includes(v)));
    const covered = (group: string, resource: string): boolean => policy.spec.matchConstraints.resourceRules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.operations.includes("UPDATE") && r.apiVersions.includes("v1"));
    for (const r of writes) for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) assert.ok(covered(g, res), `${g || "core"}/${res} (${r.verbs.join(",")}) is not covered`);
    assert.ok(writes.length > 0 && writes.every((r) => (r.resources ?? []).every((res) => res.startsWith("nodes"))), "the agent writes nodes only");
    assert.equal(policy.spec.failurePolicy, "Fail");
  });

  test("compares the token's node claim with the Node the request is for; the binding denies", () => {
    const [v] = policy.spec.validations;
    assert.equal(policy.spec.validations.length, 1);
    assert.match(v?.expression ?? "", /'authentication\.kubernetes\.io\/node-name' in request\.userInfo\.extra/);
    assert.match(v?.expression ?? "", /request\.userInfo\.extra\['authentication\.kubernetes\.io\/node-name'\]\[0\] == request\.name/);
    assert.equal(v?.reason, "Forbidden");
    assert.deepEqual(binding.spec, { policyName: policy.metadata.name, validationActions: ["Deny"] }, "every matching request, no params");
  });
});

describe("ConfigMap: flannel's net-conf.json and the CNI conflist", () => {
  const data = configMap().data ?? {};
  const agentArgs = (): Record<string, unknown> => loadAgentConfig(podContainer(daemonSet(), "agent").args ?? [], { NODE_NAME: "node-1" }, "host") as unknown as Record<string, unknown>;

  test("net-conf.json parses with the agent's parser, with flannel's keys", () => {
    const text = data["net-conf.json"];
    assert.ok(text, "net-conf.json key");
    const raw = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(raw).sort(), ["Backend", "Network"]);
    const net = parseNetworkConfig(text, "net-conf.json");
    assert.equal(net.backend.type, "vxlan");
    assert.ok(net.ipv4, "an IPv4 network");
  });

  test("the conflist: sluice first, then portmap, each entry valid for its plugin", () => {
    const text = data["cni-conf.json"];
    assert.ok(text, "cni-conf.json key");
    assert.ok(text.includes(NODE_NAME_PLACEHOLDER), "nodeName is filled in per node by install-cni.sh");
    const list = JSON.parse(text.replaceAll(NODE_NAME_PLACEHOLDER, "node-1")) as { name: string; cniVersion: string; plugins: Record<string, unknown>[] };
    assert.equal(list.cniVersion, "1.0.0");
    assert.deepEqual(list.plugins.map((p) => p["type"]), ["sluice", "portmap"]);
    // libcni hands each plugin its entry with the list's name and cniVersion added.
    const conf = parseCniNetConf({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion }, {});
    assert.equal(conf.nodeName, "node-1");
    assert.deepEqual(conf.retiredKeys, [], "no keys of the plugin that wrote to etcd");
    assert.equal(conf.subnetFile, agentArgs()["subnet-file"], "the plugin reads the subnet.env the agent writes");
    assert.equal(typeof list.plugins[0]?.["policyReadyTimeoutMs"], "number");
    assert.deepEqual(list.plugins[1], { type: "portmap", capabilities: { portMappings: true } });
  });
});

describe("DaemonSet", () => {
  const ds = daemonSet();
  const pod = ds.spec?.template.spec;
  const agent = podContainer(ds, "agent");
  const init = podContainer(ds, "install-cni", true);
  const volumes = new Map((pod?.volumes ?? []).map((v) => [v.name, v]));
  const cfg = loadAgentConfig(agent.args ?? [], { NODE_NAME: "node-1" }, "host");
  /** Where a container sees a volume, and which. */
  const mountOf = (c: typeof agent, path: string): { volume: IVolume; sub: string } | undefined => {
    for (const m of c.volumeMounts ?? []) {
      if (path === m.mountPath || path.startsWith(`${m.mountPath}/`)) {
        const volume = volumes.get(m.name);
        assert.ok(volume, `mount ${m.mountPath} names no volume`);
        return { volume, sub: posix.relative(m.mountPath, path) };
      }
    }
    return undefined;
  };

  test("node-wide, every taint tolerated, critical, one node at a time", () => {
    assert.equal(pod?.hostNetwork, true);
    assert.equal(pod?.priorityClassName, "system-node-critical");
    assert.deepEqual(pod?.tolerations, [{ operator: "Exists" }]);
    assert.deepEqual(ds.spec?.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
    assert.deepEqual(ds.spec?.selector.matchLabels, Object.fromEntries(Object.entries(ds.spec?.template.metadata?.labels ?? {}).filter(([k]) => k in (ds.spec?.selector.matchLabels ?? {}))));
  });

  test("the agent's flags parse with its own parser: Kubernetes mode, health on a port", () => {
    assert.equal(cfg["kube-subnet-mgr"], true);
    assert.equal(cfg["kube-annotation-prefix"], "sluice.dev");
    assert.equal(cfg.nodeName, "node-1");
    assert.ok(cfg["healthz-port"] > 0);
    assert.deepEqual(
      (agent.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]),
      [["NODE_NAME", "spec.nodeName"], ["POD_NAMESPACE", "metadata.namespace"]],
    );
    assert.equal(agent.command, undefined, "the image's entry point is sluice-agent");
  });

  test("probes hit the health server where it listens", () => {
    const port = (agent.ports ?? []).find((p) => p.name === "healthz");
    assert.equal(port?.containerPort, cfg["healthz-port"]);
    for (const [probe, path] of [[agent.livenessProbe, "/healthz"], [agent.readinessProbe, "/readyz"]] as const) {
      assert.equal(probe?.httpGet?.path, path);
      assert.ok(probe.httpGet.port === "healthz" || probe.httpGet.port === cfg["healthz-port"]);
      if (cfg["healthz-ip"] !== "0.0.0.0") assert.equal(probe.httpGet.host, cfg["healthz-ip"]);
    }
  });

  test("least privilege: every capability dropped but what each container needs, no escalation, read-only root, RuntimeDefault seccomp", () => {
    const locked = { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, seccompProfile: { type: "RuntimeDefault" } };
    assert.deepEqual(agent.securityContext, { ...locked, capabilities: { drop: ["ALL"], add: ["NET_ADMIN", "NET_RAW"] } });
    assert.deepEqual(init.securityContext, { ...locked, capabilities: { drop: ["ALL"] } }, "the init container only writes files it owns");
    assert.equal(pod?.hostPID, undefined);
    assert.equal(pod?.hostIPC, undefined);
  });

  test("with a read-only root, everything the containers write is a mount: the agent's paths, the init container's scratch /tmp", () => {
    for (const path of [dirname(cfg["subnet-file"]), (cfg as unknown as Record<string, string>)["cni-data-dir"] ?? "/var/lib/cni/networks", "/run/xtables.lock"]) {
      const m = mountOf(agent, path);
      assert.ok(m, `${path} is mounted`);
      assert.notEqual((agent.volumeMounts ?? []).find((v) => v.name === m.volume.name)?.readOnly, true, `${path} is writable`);
    }
    const tmp = mountOf(init, "/tmp");
    assert.ok(tmp?.volume.emptyDir, "install-cni.sh's mktemp has an emptyDir");
  });

  test("every mount names a volume, every volume is mounted", () => {
    const mounted = new Set([...(agent.volumeMounts ?? []), ...(init.volumeMounts ?? [])].map((m) => m.name));
    assert.deepEqual([...mounted].sort(), [...volumes.keys()].sort());
  });

  test("the files the agent reads and writes are the node's (or the ConfigMap's)", () => {
    const netConf = mountOf(agent, cfg["net-config-path"]);
    assert.ok(netConf, "net-conf.json is mounted");
    assert.equal(netConf.volume.configMap?.name, configMap().metadata?.name);
    assert.ok(configMap().data?.[netConf.sub], `ConfigMap key ${netConf.sub}`);
    const subnetDir = mountOf(agent, dirname(cfg["subnet-file"]));
    assert.equal(subnetDir?.volume.hostPath?.path, dirname(cfg["subnet-file"]), "subnet.env lands on the node, where sluice-cni reads it");
    // The plugin's dataDir: the agent reads the pod records and writes the ready marks there.
    const list = JSON.parse(configMap().data?.["cni-conf.json"] ?? "{}") as { plugins: { dataDir?: string }[] };
    const dataDir = list.plugins[0]?.dataDir ?? "";
    const data = mountOf(agent, dataDir);
    assert.deepEqual(data?.volume.hostPath, { path: dataDir, type: "DirectoryOrCreate" });
    assert.equal(data.sub, "");
    assert.notEqual((agent.volumeMounts ?? []).find((m) => m.mountPath === dataDir)?.readOnly, true);
    const agentDataDir = (cfg as unknown as Record<string, unknown>)["cni-data-dir"];
    if (agentDataDir !== undefined) assert.equal(agentDataDir, dataDir, "--cni-data-dir is the plugin's dataDir");
    const lock = mountOf(agent, "/run/xtables.lock");
    assert.deepEqual(lock?.volume.hostPath, { path: "/run/xtables.lock", type: "FileOrCreate" });
    const modules = (agent.volumeMounts ?? []).find((m) => m.mountPath === "/lib/modules");
    assert.equal(modules?.readOnly, true);
  });

  test("the init container installs into the node's CNI directories", () => {
    const env = plainEnv(init);
    assert.equal(mountOf(init, env["CNI_BIN_DIR"] ?? "")?.volume.hostPath?.path, "/opt/cni/bin");
    assert.equal(mountOf(init, env["CNI_NET_DIR"] ?? "")?.volume.hostPath?.path, "/etc/cni/net.d");
    const source = mountOf(init, env["CNI_CONF_SOURCE"] ?? "");
    assert.ok(source, "the conflist source is mounted");
    assert.equal(source.volume.configMap?.name, configMap().metadata?.name);
    assert.ok(configMap().data?.[source.sub], `ConfigMap key ${source.sub}`);
    assert.match(env["CNI_CONF_NAME"] ?? "", /^\d\d-sluice\.conflist$/);
    assert.equal(init.env?.find((e) => e.name === "NODE_NAME")?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName");
  });

  test("both containers run this version's image", () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    assert.equal(agent.image, `sluice:${version}`);
    assert.equal(init.image, agent.image);
  });
});

describe("kustomizations and the single-file bundle", () => {
  interface Kustomization {
    resources?: string[];
  }
  const bundleModule = async (): Promise<{ renderBundle: (root?: string) => string; BUNDLE: string }> =>
    (await import(pathToFileURL(join(ROOT, "scripts/render-manifests.mjs")).href)) as { renderBundle: (root?: string) => string; BUNDLE: string };

  test("manifests/kustomization.yaml lists every manifest and the CRDs", () => {
    const k = readYaml("manifests/kustomization.yaml") as Kustomization;
    for (const r of k.resources ?? []) assert.ok(existsSync(join(ROOT, "manifests", r)), `resource ${r}`);
    const files = (k.resources ?? []).filter((r) => !r.startsWith("../")).map((r) => `manifests/${r}`);
    assert.deepEqual(files.sort(), yamlFiles("manifests"), "no manifest left out");
    assert.ok(k.resources?.includes("../crds"));
  });

  test("crds/kustomization.yaml lists exactly the CRD files", () => {
    const k = readYaml("crds/kustomization.yaml") as Kustomization;
    assert.equal(yamlFiles("crds").length, CRD_KINDS.length, "one file per custom kind");
    assert.deepEqual((k.resources ?? []).map((r) => `crds/${r}`).sort(), yamlFiles("crds"));
  });

  test("the bundle is current", async () => {
    const { renderBundle, BUNDLE } = await bundleModule();
    assert.equal(readFileSync(join(ROOT, BUNDLE), "utf8"), renderBundle(), `${BUNDLE} is stale: run npm run manifests`);
  });

  describe("rendering (on a copy with stand-in CRDs)", () => {
    let root: string;
    before(() => {
      root = mkdtempSync(join(tmpdir(), "sluice-bundle-"));
      cpSync(join(ROOT, "manifests"), join(root, "manifests"), { recursive: true });
      mkdirSync(join(root, "crds"));
      const k = readYaml("crds/kustomization.yaml") as Kustomization;
      writeFileSync(join(root, "crds/kustomization.yaml"), readFileSync(join(ROOT, "crds/kustomization.yaml")));
      for (const f of k.resources ?? []) writeFileSync(join(root, "crds", f), `apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ${f.replace(/\.yaml$/, "")}\n`);
    });
    after(() => rmSync(root, { recursive: true, force: true }));

    test("holds every object of every resource, in the order listed", async () => {
      const { renderBundle } = await bundleModule();
      const names = (text: string): string[] => parseAllDocuments(text).map((d) => d.toJS() as KubeObject | null).filter((o) => o !== null).map((o) => `${o.kind}/${(o["metadata"] as { name: string }).name}`);
      const bundle = names(renderBundle(root));
      const k = readYaml("crds/kustomization.yaml") as Kustomization;
      const crds = (k.resources ?? []).map((f) => `CustomResourceDefinition/${f.replace(/\.yaml$/, "")}`);
      const source = (f: string): string[] => names(readFileSync(join(ROOT, "manifests", f), "utf8"));
      assert.deepEqual(bundle, [...source("namespace.yaml"), ...crds, ...source("rbac.yaml"), ...source("admission.yaml"), ...source("config.yaml"), ...source("daemonset.yaml")]);
    });

    test("refuses what it does not understand", async () => {
      const { renderBundle } = await bundleModule();
      writeFileSync(join(root, "manifests/kustomization.yaml"), readFileSync(join(ROOT, "manifests/kustomization.yaml"), "utf8") + "images:\n  - name: sluice\n    newName: example.com/sluice\n");
      assert.throws(() => renderBundle(root), /"images" is not understood/);
    });
  });
});
