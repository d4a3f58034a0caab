import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { binPath, packageRoot } from "../../src/sandbox/paths.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";

let etcd: TestEtcd;
let dir: string;
before(async () => {
  etcd = await startTestEtcd();
  dir = mkdtempSync(join(tmpdir(), "sluicectl-apply-"));
});
after(async () => {
  await etcd.stop();
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
/** Ages change with time; compare tables with each age as "Ns". */
const ages = (table: string): string => table.replace(/\b\d+s$/gm, "Ns");
/** A sluicectl bound to the test etcd and a prefix of its own. */
function ctl(): { prefix: string; run: (args: string[], stdin?: string) => ReturnType<typeof run>; keys: () => Promise<string[]> } {
  const prefix = `/ctl-${process.pid}-${++counter}/sluice/v1`;
  return {
    prefix,
    run: (args, stdin) => run(process.execPath, [binPath("sluicectl"), ...args, ...etcd.flags(), "--resource-prefix", prefix], stdin, 30_000),
    keys: async () => (await etcd.client.getAll().prefix(`${prefix}/`).keys()).map((k) => k.slice(prefix.length)),
  };
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const POLICIES = `# two policies and their namespace
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: web}}
    ports:
    - port: 8080
`;

describe("sluicectl apply", () => {
  test("a multi-document file: created, then unchanged, then configured, like kubectl", async () => {
    const c = ctl();
    const f = file("multi.yaml", POLICIES);
    const r1 = await c.run(["apply", "-f", f]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r1.stdout, "namespace/shop created\nnetworkpolicy.networking.k8s.io/deny-all created\nnetworkpolicy.networking.k8s.io/allow-web created\n");
    assert.deepEqual((await c.keys()).sort(), ["/namespaces/shop", "/networkpolicies/shop/allow-web", "/networkpolicies/shop/deny-all"]);

    const r2 = await c.run(["apply", "-f", f]);
    assert.equal(r2.stdout, "namespace/shop unchanged\nnetworkpolicy.networking.k8s.io/deny-all unchanged\nnetworkpolicy.networking.k8s.io/allow-web unchanged\n");

    const r3 = await c.run(["apply", "-f", file("multi2.yaml", POLICIES.replace("port: 8080", "port: 9090"))]);
    assert.equal(r3.stdout, "namespace/shop unchanged\nnetworkpolicy.networking.k8s.io/deny-all unchanged\nnetworkpolicy.networking.k8s.io/allow-web configured\n");
    const stored = JSON.parse((await etcd.client.get(`${c.prefix}/networkpolicies/shop/allow-web`).string()) ?? "{}") as { spec: { ingress: { ports: object[] }[] } };
    assert.deepEqual(stored.spec.ingress[0]?.ports, [{ protocol: "TCP", port: 9090 }]);
  });

  test("kind: List and JSON from stdin", async () => {
    const c = ctl();
    const list = { apiVersion: "v1", kind: "List", items: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "a" } }, { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "p", namespace: "a" }, spec: { podSelector: {} } }] };
    const r = await c.run(["apply", "-f", "-"], JSON.stringify(list, null, 2));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "namespace/a created\nnetworkpolicy.networking.k8s.io/p created\n");
    const yamlList = `apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: web-1, namespace: a, labels: {app: web}}\n  spec:\n    containers:\n    - name: c\n      ports: [{name: http, containerPort: 8080}]\n`;
    const r2 = await c.run(["apply", "-f", "-"], yamlList);
    assert.equal(r2.stdout, "pod/web-1 created\n");
  });

  test("a file with one invalid document applies nothing and names the document, object, field and reason", async () => {
    const c = ctl();
    const bad = POLICIES.replace("policyTypes: [Ingress, Egress]", "ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}").replace("port: 8080", "port: 0");
    const r = await c.run(["apply", "-f", file("bad.yaml", bad)]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      [
        "error: document 2 (NetworkPolicy shop/deny-all): spec.ingress[0].from[0].ipBlock.cidr: must be a CIDR such as 10.0.0.0/8",
        "error: document 4 (NetworkPolicy shop/allow-web): spec.ingress[0].ports[0].port: must be between 1 and 65535",
        "error: 2 problems found; nothing was applied",
        "",
      ].join("\n"),
    );
    assert.deepEqual(await c.keys(), [], "nothing written, not even the valid Namespace");
  });

  test("an unknown kind is named with its apiVersion", async () => {
    const c = ctl();
    const r = await c.run(["apply", "-f", "-"], "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {}\n");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: document 1 \(Widget w\): no kind "Widget" is registered for version "example\.com\/v1" \(known kinds: /);
    const calico = await c.run(["apply", "-f", "-"], "apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {}\n");
    assert.equal(calico.code, 1);
    assert.equal(calico.stderr, 'error: document 1 (GlobalNetworkPolicy g): no kind "GlobalNetworkPolicy" is registered for version "crd.projectcalico.org/v1" (Sluice serves GlobalNetworkPolicy as sluice.dev/v1)\nerror: 1 problem found; nothing was applied\n');
  });

  test("-n fills in the namespace; a different metadata.namespace is an error and nothing is written", async () => {
    const c = ctl();
    const noNs = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n";
    const r = await c.run(["apply", "-n", "team-a", "-f", "-"], noNs);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await c.keys(), ["/networkpolicies/team-a/p"]);
    const r0 = await c.run(["apply", "-f", "-"], noNs);
    assert.equal(r0.code, 0);
    assert.deepEqual((await c.keys()).sort(), ["/networkpolicies/default/p", "/networkpolicies/team-a/p"], "no -n: the default namespace");

    const conflicting = `${noNs}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: q, namespace: team-b}\nspec: {podSelector: {}}\n`;
    const r2 = await c.run(["apply", "--namespace", "team-a", "-f", "-"], conflicting);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /error: document 2 \(NetworkPolicy team-b\/q\): metadata\.namespace: the namespace from the provided object "team-b" does not match the namespace "team-a"\. You must pass '--namespace=team-b' to perform this operation\./);
    assert.equal((await c.keys()).length, 2, "nothing new written");
  });

  test("no objects, no file, a missing file", async () => {
    const c = ctl();
    assert.deepEqual(await c.run(["apply", "-f", "-"], "# nothing here\n---\n"), { code: 1, stdout: "", stderr: "error: no objects passed to apply\n" });
    const r = await c.run(["apply"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /-f: is required/);
    const m = await c.run(["apply", "-f", join(dir, "nope.yaml")]);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /nope\.yaml: no such file or directory/);
  });

  test("an unreachable etcd is named in the error", async () => {
    const r = await run(process.execPath, [binPath("sluicectl"), "get", "ns", "--etcd-endpoints", "http://127.0.0.1:1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: etcd at http:\/\/127\.0\.0\.1:1: /);
  });

  test("--dry-run validates and reports without writing", async () => {
    const c = ctl();
    const r = await c.run(["apply", "--dry-run", "-f", file("dry.yaml", POLICIES)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^namespace\/shop created \(dry run\)\n/);
    assert.deepEqual(await c.keys(), []);
  });
});

describe("sluicectl apply and delete of any size", () => {
  const many = (n: number): string =>
    ["apiVersion: v1\nkind: Namespace\nmetadata: {name: big}", ...Array.from({ length: n }, (_, i) => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np-${i}, namespace: big}\nspec: {podSelector: {matchLabels: {app: a${i}}}}`)].join("\n---\n");

  test("300 objects go in transactions of at most --max-txn-ops, each reported; delete -f of them too", async () => {
    const c = ctl();
    const f = file("many.yaml", many(299));
    const r = await c.run(["apply", "-f", f, "--max-txn-ops", "100"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /applying 300 objects in transactions of at most 100/);
    assert.equal(r.stdout.trim().split("\n").length, 300);
    assert.match(r.stdout, /^namespace\/big created\n/);
    assert.match(r.stdout, /networkpolicy.networking.k8s.io\/np-298 created\n$/);
    assert.equal((await c.keys()).length, 300);
    // The revisions show three transactions: the objects of one share its revision.
    const revs = new Set((await etcd.client.getAll().prefix(`${c.prefix}/`).exec()).kvs.map((kv) => kv.mod_revision));
    assert.equal(revs.size, 3);
    const again = await c.run(["apply", "-f", f, "--max-txn-ops", "100"]);
    assert.equal(again.stdout.match(/ unchanged$/gm)?.length, 300);
    const d = await c.run(["delete", "-f", f, "--max-txn-ops", "100"]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(d.stdout.match(/ deleted$/gm)?.length, 300);
    assert.deepEqual(await c.keys(), []);
  });

  test("--atomic keeps one transaction: refused, nothing written; one invalid object among 300 writes nothing either", async () => {
    const c = ctl();
    const atomic = await c.run(["apply", "-f", file("many-atomic.yaml", many(199)), "--max-txn-ops", "100", "--atomic"]);
    assert.equal(atomic.code, 1);
    assert.match(atomic.stderr, /the batch changes 200 objects, more than one etcd transaction may carry \(--max-txn-ops 100\)[^]*nothing was applied/);
    const bad = await c.run(["apply", "-f", file("many-bad.yaml", many(299).replace("matchLabels: {app: a150}", "matchLabels: {app: -bad-}")), "--max-txn-ops", "100"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /np-150[^]*nothing was applied/);
    assert.deepEqual(await c.keys(), []);
  });
});

describe("sluicectl get and delete", () => {
  test("tables, -A, -o wide/yaml/json/name, label selectors, not found", async () => {
    const c = ctl();
    assert.equal((await c.run(["apply", "-f", file("g.yaml", POLICIES)])).code, 0);
    assert.equal((await c.run(["apply", "-n", "other", "-f", "-"], "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, labels: {tier: a}}\nspec:\n  podSelector:\n    matchExpressions: [{key: app, operator: In, values: [db, cache]}]\n")).code, 0);

    const t = await c.run(["get", "netpol", "-n", "shop"]);
    assert.equal(t.code, 0, t.stderr);
    assert.equal(ages(t.stdout), ["NAME        POD-SELECTOR   AGE", "allow-web   app=web        Ns", "deny-all    <none>         Ns", ""].join("\n"));

    const all = await c.run(["get", "networkpolicies", "-A"]);
    assert.equal(
      ages(all.stdout),
      ["NAMESPACE   NAME        POD-SELECTOR        AGE", "other       x           app in (cache,db)   Ns", "shop        allow-web   app=web             Ns", "shop        deny-all    <none>              Ns", ""].join("\n"),
    );

    const nsWide = await c.run(["get", "ns", "-o", "wide"]);
    assert.match(nsWide.stdout, /^NAME {3}STATUS {3}AGE +LABELS\nshop {3}Active {3}\d+s +kubernetes\.io\/metadata\.name=shop,team=web\n$/);

    const y = await c.run(["get", "netpol", "deny-all", "-n", "shop", "-o", "yaml"]);
    assert.match(y.stdout, /^apiVersion: networking\.k8s\.io\/v1\nkind: NetworkPolicy\nmetadata:\n {2}name: deny-all\n {2}namespace: shop\n/);
    assert.match(y.stdout, /resourceVersion: "\d+"/);

    const j = JSON.parse((await c.run(["get", "netpol", "-A", "-o", "json"])).stdout) as { kind: string; items: { metadata: { name: string } }[] };
    assert.equal(j.kind, "List");
    assert.deepEqual(j.items.map((i) => i.metadata.name), ["x", "allow-web", "deny-all"]);

    assert.equal((await c.run(["get", "netpol", "-A", "-l", "tier=a", "-o", "name"])).stdout, "networkpolicy.networking.k8s.io/x\n");
    assert.equal((await c.run(["get", "netpol/allow-web", "ns/shop", "-n", "shop", "-o", "name"])).stdout, "networkpolicy.networking.k8s.io/allow-web\nnamespace/shop\n", "in the order asked");

    const nf = await c.run(["get", "netpol", "nope", "-n", "shop"]);
    assert.equal(nf.code, 1);
    assert.equal(nf.stderr, 'Error from server (NotFound): networkpolicies.networking.k8s.io "nope" not found\n');
    const empty = await c.run(["get", "netpol", "-n", "void"]);
    assert.deepEqual([empty.code, empty.stdout, empty.stderr], [0, "", "No resources found in void namespace.\n"]);
    const unknown = await c.run(["get", "widgets"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /the server doesn't have a resource type "widgets"/);
  });

  test("delete by name, by file and --all; a missing object is an error unless --ignore-not-found", async () => {
    const c = ctl();
    const f = file("d.yaml", POLICIES);
    assert.equal((await c.run(["apply", "-f", f])).code, 0);

    const d1 = await c.run(["delete", "netpol", "deny-all", "-n", "shop"]);
    assert.deepEqual([d1.code, d1.stdout], [0, 'networkpolicy.networking.k8s.io "deny-all" deleted\n']);
    const d2 = await c.run(["delete", "netpol", "deny-all", "-n", "shop"]);
    assert.deepEqual([d2.code, d2.stderr], [1, 'Error from server (NotFound): networkpolicies.networking.k8s.io "deny-all" not found\n']);
    assert.equal((await c.run(["delete", "netpol", "deny-all", "-n", "shop", "--ignore-not-found"])).code, 0);

    const d3 = await c.run(["delete", "-f", f]);
    assert.equal(d3.code, 1, "deny-all is already gone");
    assert.equal(d3.stdout, 'namespace "shop" deleted\nnetworkpolicy.networking.k8s.io "allow-web" deleted\n');
    assert.deepEqual(await c.keys(), []);

    assert.equal((await c.run(["apply", "-f", f])).code, 0);
    const d4 = await c.run(["delete", "netpol", "--all", "-n", "shop"]);
    assert.equal(d4.stdout, 'networkpolicy.networking.k8s.io "allow-web" deleted\nnetworkpolicy.networking.k8s.io "deny-all" deleted\n');
    assert.deepEqual(await c.keys(), ["/namespaces/shop"]);
  });

  test("--help lists the new commands", async () => {
    const r = await run(process.execPath, [binPath("sluicectl"), "--help"]);
    for (const name of ["apply", "get", "delete"]) assert.match(r.stdout, new RegExp(`^  ${name} `, "m"));
    const h = await run(process.execPath, [binPath("sluicectl"), "apply", "--help"]);
    assert.match(h.stdout, /--resource-prefix value/);
    assert.match(h.stdout, /--etcd-endpoints value/);
  });
});

describe("sluicectl and the policy kinds", () => {
  const KINDS_FILE = join(packageRoot(), "test", "fixtures", "policy-kinds.yaml");

  test("apply stores every kind of the board's examples; a second apply changes nothing; get prints each kind's columns", async () => {
    const c = ctl();
    const r = await c.run(["apply", "-f", KINDS_FILE]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        "clusternetworkpolicy.policy.networking.k8s.io/tenant-blue created",
        "clusternetworkpolicy.policy.networking.k8s.io/baseline-tenants created",
        "globalnetworkpolicy.sluice.dev/web-corp created",
        "networkset.sluice.dev/partners created",
        "globalnetworkset.sluice.dev/corporate created",
        "node/node-1 created",
        "",
      ].join("\n"),
    );
    assert.deepEqual((await c.keys()).sort(), ["/clusternetworkpolicies/baseline-tenants", "/clusternetworkpolicies/tenant-blue", "/globalnetworkpolicies/web-corp", "/globalnetworksets/corporate", "/networksets/blue/partners", "/nodes/node-1"]);
    assert.match((await c.run(["apply", "-f", KINDS_FILE])).stdout, /^(\S+ unchanged\n){6}$/);

    const table = async (...args: string[]): Promise<string> => {
      const t = await c.run(["get", ...args]);
      assert.equal(t.code, 0, t.stderr);
      return t.stdout;
    };
    /** A wide table's cells (columns are at least three spaces apart; cells hold at most one space), ages as "Ns". */
    const cells = (t: string): string[][] => t.trimEnd().split("\n").map((l) => l.split(/ {3,}/).map((c) => c.replace(/^\d+s$/, "Ns")));
    assert.equal(ages(await table("cnp")), TABLES.cnp);
    assert.deepEqual(cells(await table("clusternetworkpolicies", "-o", "wide")), TABLES.cnpWide);
    assert.deepEqual(cells(await table("gnp", "-o", "wide")), TABLES.gnpWide);
    assert.equal(ages(await table("netsets", "-n", "blue")), TABLES.netsets);
    assert.deepEqual(cells(await table("networksets", "-A", "-o", "wide")), TABLES.netsetsAll);
    assert.equal(ages(await table("globalnetsets")), TABLES.globalnetsets);
    assert.deepEqual(cells(await table("no", "-o", "wide")), TABLES.nodesWide);

    // What kubectl would store: the Node keeps its status; the CNP keeps its rule names.
    const node = JSON.parse((await c.run(["get", "node", "node-1", "-o", "json"])).stdout) as { status: { addresses: { type: string; address: string }[] } };
    assert.deepEqual(node.status.addresses[0], { type: "InternalIP", address: "192.168.50.11" });
    const stored = JSON.parse((await etcd.client.get(`${c.prefix}/clusternetworkpolicies/tenant-blue`).string()) ?? "{}") as { spec: { egress: { name: string }[] } };
    assert.deepEqual(stored.spec.egress.map((e) => e.name), ["deny-to-other-tenants", "accept-dns-on-control-plane", "deny-blocked-ranges"]);

    const d = await c.run(["delete", "cnp", "tenant-blue"]);
    assert.equal(d.stdout, 'clusternetworkpolicy.policy.networking.k8s.io "tenant-blue" deleted\n');
  });

  test("an invalid object of a new kind is refused with its field and nothing is written", async () => {
    const c = ctl();
    const text = readFileSync(KINDS_FILE, "utf8").replace("priority: 10", "priority: 1001").replace("notPorts: [53]", "notPorts: [DNS]");
    const r = await c.run(["apply", "-f", "-"], text);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      [
        "error: document 1 (ClusterNetworkPolicy tenant-blue): spec.priority: must be between 0 and 1000",
        "error: document 3 (GlobalNetworkPolicy web-corp): spec.egress[1].destination.notPorts[0]: \"DNS\" is not a port number, a range \"start:end\" or a port name (IANA_SVC_NAME: at most 15 lower-case letters, digits and '-', at least one letter)",
        "error: 2 problems found; nothing was applied",
        "",
      ].join("\n"),
    );
    assert.deepEqual(await c.keys(), []);
  });
});

/** Narrow tables end with AGE (normalized by ages()); wide ones are compared cell by cell. */
const TABLES = {
  cnp: ["NAME               TIER       PRIORITY   AGE", "baseline-tenants   Baseline   50         Ns", "tenant-blue        Admin      10         Ns", ""].join("\n"),
  cnpWide: [
    ["NAME", "TIER", "PRIORITY", "AGE", "SUBJECT"],
    ["baseline-tenants", "Baseline", "50", "Ns", "pods: tenant / <none>"],
    ["tenant-blue", "Admin", "10", "Ns", "namespaces: tenant=blue"],
  ],
  gnpWide: [
    ["NAME", "ORDER", "SELECTOR", "AGE", "NAMESPACE-SELECTOR", "TYPES"],
    ["web-corp", "100", "app=web", "Ns", "tenant=blue", "Ingress,Egress"],
  ],
  netsets: ["NAME       NETS                                AGE", "partners   198.51.100.0/24,2001:db8:100::/48   Ns", ""].join("\n"),
  netsetsAll: [
    ["NAMESPACE", "NAME", "NETS", "AGE", "LABELS"],
    ["blue", "partners", "198.51.100.0/24,2001:db8:100::/48", "Ns", "partner=true"],
  ],
  globalnetsets: ["NAME        NETS                       AGE", "corporate   10.0.0.0/8,172.16.0.0/12   Ns", ""].join("\n"),
  nodesWide: [
    ["NAME", "STATUS", "ROLES", "AGE", "INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR"],
    ["node-1", "Ready", "control-plane", "Ns", "192.168.50.11", "<none>", "10.244.1.0/24"],
  ],
};
