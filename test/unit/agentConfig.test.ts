import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.js";
import { rejects } from "../helpers/configError.js";
import { AGENT_FLAGS, loadAgentConfig } from "../../src/config/agentConfig.js";
import { type FlagSpec, envNames, formatHelp, parseDuration, parseFlags } from "../../src/config/flags.js";


const load = (argv: string[], env: NodeJS.ProcessEnv = {}, hostname = "host-a") => loadAgentConfig(argv, env, hostname);
const reject = (argv: string[], field: string, why: RegExp, env: NodeJS.ProcessEnv = {}) => rejects(() => load(argv, env), field, why);

describe("loadAgentConfig defaults (flanneld's)", () => {
  test("no flags, no env", () => {
    assert.deepEqual(load([]), {
      "etcd-endpoints": ["http://127.0.0.1:4001", "http://127.0.0.1:2379"],
      "etcd-prefix": "/coreos.com/network",
      iface: [],
      "iface-regex": [],
      "subnet-file": "/run/flannel/subnet.env",
      "subnet-lease-renew-margin": 3_600_000,
      "subnet-lease-ttl": 86_400_000,
      "ip-masq": false,
      "ip-masq-fully-random-disable": false,
      "iptables-resync": 5000,
      "iptables-forward-rules": true,
      "iptables-backend": "auto",
      dataplane: "auto",
      "ip-blackhole-route": false,
      "route-resync": 10_000,
      "healthz-ip": "0.0.0.0",
      "healthz-port": 0,
      "net-config-path": "/etc/kube-flannel/net-conf.json",
      "kube-subnet-mgr": false,
      "kube-annotation-prefix": "sluice.dev",
      "set-node-network-unavailable": true,
      "cni-data-dir": "/var/lib/cni/networks",
      "enable-policy": true,
      "policy-resync": 60_000,
      "resource-prefix": "/sluice/v1",
      "log-level": "info",
      version: false,
      help: false,
      nodeName: "host-a",
    });
  });

  test("optional flags are absent", () => {
    const cfg = load([]);
    assert.equal(cfg["public-ip"], undefined);
    assert.equal(cfg["public-ipv6"], undefined);
    assert.equal(cfg["etcd-keyfile"], undefined);
    assert.equal(cfg["node-name"], undefined);
    assert.equal(cfg["docker-opts-file"], undefined);
  });
});

describe("command-line forms", () => {
  test("--flag value", () => {
    assert.equal(load(["--etcd-prefix", "/sluice/network"])["etcd-prefix"], "/sluice/network");
  });

  test("--flag=value", () => {
    assert.equal(load(["--etcd-prefix=/sluice/network"])["etcd-prefix"], "/sluice/network");
  });

  test("a value may itself contain =", () => {
    assert.equal(load(["--kube-annotation-prefix=a=b"])["kube-annotation-prefix"], "a=b");
  });

  test("single-dash forms, as Go's flag package allows", () => {
    const cfg = load(["-etcd-prefix", "/a", "-subnet-file=/tmp/subnet.env", "-ip-masq"]);
    assert.equal(cfg["etcd-prefix"], "/a");
    assert.equal(cfg["subnet-file"], "/tmp/subnet.env");
    assert.equal(cfg["ip-masq"], true);
  });

  test("boolean --ip-masq alone means true", () => {
    assert.equal(load(["--ip-masq"])["ip-masq"], true);
  });

  test("boolean --flag=false and other spellings", () => {
    assert.equal(load(["--ip-masq=false"])["ip-masq"], false);
    assert.equal(load(["--ip-masq=true"])["ip-masq"], true);
    assert.equal(load(["--iptables-forward-rules=false"])["iptables-forward-rules"], false);
    assert.equal(load(["--ip-masq=1"])["ip-masq"], true);
    assert.equal(load(["--ip-masq=0"])["ip-masq"], false);
    assert.equal(load(["--ip-masq=FALSE"])["ip-masq"], false);
  });

  test("a boolean does not consume the next argument", () => {
    const cfg = load(["--ip-masq", "--etcd-prefix", "/x"]);
    assert.equal(cfg["ip-masq"], true);
    assert.equal(cfg["etcd-prefix"], "/x");
  });

  test("a bad boolean is rejected naming the flag", () => {
    reject(["--ip-masq=maybe"], "--ip-masq", /"maybe" is not a boolean/);
  });

  test("--iface is repeatable and keeps its order", () => {
    assert.deepEqual(load(["--iface", "eth1", "--iface=10.0.0.5", "--iface", "eth0"]).iface, ["eth1", "10.0.0.5", "eth0"]);
    assert.deepEqual(load(["--iface-regex", "^en", "--iface-regex=^eth"])["iface-regex"], ["^en", "^eth"]);
  });

  test("a string flag given twice: the last wins", () => {
    assert.equal(load(["--etcd-prefix=/a", "--etcd-prefix=/b"])["etcd-prefix"], "/b");
  });

  test("a value flag at the end without its value is rejected", () => {
    reject(["--etcd-prefix"], "--etcd-prefix", /needs a value/);
  });

  test("an unknown flag is rejected naming it", () => {
    reject(["--bogus"], "--bogus", /not a known flag/);
    reject(["--bogus=1"], "--bogus", /not a known flag/);
    reject(["-bogus"], "--bogus", /not a known flag/);
  });

  test("a positional argument is rejected", () => {
    reject(["extra"], "extra", /unexpected argument/);
    reject(["--", "--ip-masq"], "--ip-masq", /unexpected argument/);
  });

  test("the source of the error is sluice-agent", () => {
    assert.throws(
      () => load(["--bogus"]),
      (err: unknown) => err instanceof ConfigError && err.source === "sluice-agent" && err.message === "sluice-agent: --bogus: is not a known flag (see --help)",
    );
  });
});

describe("environment fallbacks", () => {
  test("FLANNELD_<NAME>, dashes become underscores", () => {
    const cfg = load([], { FLANNELD_ETCD_PREFIX: "/from/flanneld", FLANNELD_SUBNET_FILE: "/tmp/s.env", FLANNELD_IP_MASQ: "true" });
    assert.equal(cfg["etcd-prefix"], "/from/flanneld");
    assert.equal(cfg["subnet-file"], "/tmp/s.env");
    assert.equal(cfg["ip-masq"], true);
  });

  test("SLUICE_<NAME>", () => {
    assert.equal(load([], { SLUICE_ETCD_PREFIX: "/from/sluice" })["etcd-prefix"], "/from/sluice");
  });

  test("SLUICE_ beats FLANNELD_", () => {
    const cfg = load([], { SLUICE_ETCD_PREFIX: "/sluice", FLANNELD_ETCD_PREFIX: "/flanneld", SLUICE_IP_MASQ: "false", FLANNELD_IP_MASQ: "true" });
    assert.equal(cfg["etcd-prefix"], "/sluice");
    assert.equal(cfg["ip-masq"], false);
  });

  test("the command line beats the environment", () => {
    const env = { SLUICE_ETCD_PREFIX: "/sluice", FLANNELD_ETCD_PREFIX: "/flanneld", FLANNELD_IP_MASQ: "true", FLANNELD_IFACE: "eth9" };
    const cfg = load(["--etcd-prefix=/cli", "--ip-masq=false", "--iface=eth0"], env);
    assert.equal(cfg["etcd-prefix"], "/cli");
    assert.equal(cfg["ip-masq"], false);
    assert.deepEqual(cfg.iface, ["eth0"]);
  });

  test("an empty variable is ignored", () => {
    assert.equal(load([], { SLUICE_ETCD_PREFIX: "", FLANNELD_ETCD_PREFIX: "/flanneld" })["etcd-prefix"], "/flanneld");
    assert.equal(load([], { FLANNELD_ETCD_PREFIX: "" })["etcd-prefix"], "/coreos.com/network");
  });

  test("a list flag from the environment is one entry", () => {
    assert.deepEqual(load([], { FLANNELD_IFACE: "eth1" }).iface, ["eth1"]);
  });

  test("env values are validated like flags", () => {
    reject([], "--healthz-port", /port number/, { FLANNELD_HEALTHZ_PORT: "http" });
    reject([], "--public-ip", /IPv4/, { FLANNELD_PUBLIC_IP: "nope" });
  });

  test("a bad boolean in the environment names the variable", () => {
    reject([], "FLANNELD_IP_MASQ", /"sometimes" is not a boolean/, { FLANNELD_IP_MASQ: "sometimes" });
  });

  test("unrelated variables are ignored", () => {
    assert.equal(load([], { SLUICE_NOT_A_FLAG: "x", FLANNELD_ETCD_PREFIX_X: "/y" })["etcd-prefix"], "/coreos.com/network");
  });
});

describe("durations", () => {
  test("subnet-lease-renew-margin: bare numbers are minutes", () => {
    assert.equal(load(["--subnet-lease-renew-margin=30"])["subnet-lease-renew-margin"], 1_800_000);
    assert.equal(load(["--subnet-lease-renew-margin", "1.5"])["subnet-lease-renew-margin"], 90_000);
  });

  test("subnet-lease-renew-margin: durations with units", () => {
    assert.equal(load(["--subnet-lease-renew-margin=30s"])["subnet-lease-renew-margin"], 30_000);
    assert.equal(load(["--subnet-lease-renew-margin=2h"])["subnet-lease-renew-margin"], 7_200_000);
    assert.equal(load(["--subnet-lease-renew-margin=90m"])["subnet-lease-renew-margin"], 5_400_000);
  });

  test("iptables-resync: bare numbers are seconds", () => {
    assert.equal(load(["--iptables-resync=7"])["iptables-resync"], 7000);
    assert.equal(load(["--iptables-resync=30s"])["iptables-resync"], 30_000);
    assert.equal(load(["--iptables-resync=250ms"])["iptables-resync"], 250);
    assert.equal(load([], { FLANNELD_IPTABLES_RESYNC: "2" })["iptables-resync"], 2000);
  });

  test("subnet-lease-ttl", () => {
    assert.equal(load(["--subnet-lease-ttl=2h", "--subnet-lease-renew-margin=30"])["subnet-lease-ttl"], 7_200_000);
  });

  test("garbage durations are rejected naming the flag", () => {
    reject(["--iptables-resync=soon"], "--iptables-resync", /"soon" is not seconds or a duration/);
    reject(["--subnet-lease-renew-margin=5d"], "--subnet-lease-renew-margin", /"5d" is not minutes or a duration/);
    reject(["--route-resync=-1"], "--route-resync", /not seconds or a duration/);
  });

  test("resync intervals under 100ms are rejected", () => {
    reject(["--iptables-resync=50ms"], "--iptables-resync", /at least 100ms/);
    reject(["--route-resync=0"], "--route-resync", /at least 100ms/);
  });

  test("the renew margin must be shorter than the lease TTL", () => {
    // default TTL 24h = 1440 minutes
    assert.equal(load(["--subnet-lease-renew-margin=1439"])["subnet-lease-renew-margin"], 86_340_000);
    reject(["--subnet-lease-renew-margin=1440"], "--subnet-lease-renew-margin", /shorter than --subnet-lease-ttl/);
    reject(["--subnet-lease-renew-margin=25h"], "--subnet-lease-renew-margin", /shorter than --subnet-lease-ttl/);
    // the default margin (60 minutes) is not shorter than a 1h TTL
    reject(["--subnet-lease-ttl=1h"], "--subnet-lease-renew-margin", /shorter than --subnet-lease-ttl/);
  });

  test("the renew margin must be positive", () => {
    reject(["--subnet-lease-renew-margin=0"], "--subnet-lease-renew-margin", /positive/);
  });
});

describe("etcd flags", () => {
  test("comma-separated endpoints, whitespace trimmed, empties dropped", () => {
    assert.deepEqual(load(["--etcd-endpoints=https://10.0.0.1:2379, https://10.0.0.2:2379,"])["etcd-endpoints"], ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
  });

  test("unix:///path endpoints are accepted", () => {
    assert.deepEqual(load(["--etcd-endpoints", "unix:///var/run/etcd.sock"])["etcd-endpoints"], ["unix:///var/run/etcd.sock"]);
    assert.deepEqual(load(["--etcd-endpoints=unix:///run/etcd.sock,http://127.0.0.1:2379"])["etcd-endpoints"], ["unix:///run/etcd.sock", "http://127.0.0.1:2379"]);
  });

  test("bad endpoints are rejected naming --etcd-endpoints", () => {
    reject(["--etcd-endpoints=10.0.0.1:2379"], "--etcd-endpoints", /http\(s\):\/\/host:port or unix:\/\/\/path/);
    reject(["--etcd-endpoints=ftp://10.0.0.1:2379"], "--etcd-endpoints", /http\(s\)/);
    reject(["--etcd-endpoints=unix://relative.sock"], "--etcd-endpoints", /unix:\/\/\/path/);
    reject(["--etcd-endpoints=,"], "--etcd-endpoints", /comma-separated/);
  });

  test("--etcd-prefix must start with /", () => {
    reject(["--etcd-prefix=coreos.com/network"], "--etcd-prefix", /start with \//);
  });

  test("--etcd-keyfile and --etcd-certfile go together", () => {
    const cfg = load(["--etcd-keyfile=/k.pem", "--etcd-certfile=/c.pem", "--etcd-cafile=/ca.pem"]);
    assert.equal(cfg["etcd-keyfile"], "/k.pem");
    assert.equal(cfg["etcd-certfile"], "/c.pem");
    assert.equal(cfg["etcd-cafile"], "/ca.pem");
    reject(["--etcd-keyfile=/k.pem"], "--etcd-certfile", /given together/);
    reject(["--etcd-certfile=/c.pem"], "--etcd-certfile", /given together/);
  });
});

describe("addresses, ports and enums", () => {
  test("--public-ip must be IPv4, --public-ipv6 must be IPv6", () => {
    const cfg = load(["--public-ip=192.168.0.10", "--public-ipv6=fd00::10"]);
    assert.equal(cfg["public-ip"], "192.168.0.10");
    assert.equal(cfg["public-ipv6"], "fd00::10");
    reject(["--public-ip=fd00::1"], "--public-ip", /must be an IPv4 address/);
    reject(["--public-ip=10.0.0.256"], "--public-ip", /must be an IPv4 address/);
    reject(["--public-ipv6=10.0.0.1"], "--public-ipv6", /must be an IPv6 address/);
  });

  test("--iface-can-reach takes either family", () => {
    assert.equal(load(["--iface-can-reach=8.8.8.8"])["iface-can-reach"], "8.8.8.8");
    assert.equal(load(["--iface-can-reach=2001:4860::8888"])["iface-can-reach"], "2001:4860::8888");
    rejects(() => load(["--iface-can-reach=nope"]), "--iface-can-reach", /./);
  });

  test("--healthz-port", () => {
    assert.equal(load(["--healthz-port=8471"])["healthz-port"], 8471);
    assert.equal(load(["--healthz-port", "65535"])["healthz-port"], 65535);
    reject(["--healthz-port=65536"], "--healthz-port", /between 0 and 65535/);
    reject(["--healthz-port=http"], "--healthz-port", /port number/);
    reject(["--healthz-port=-1"], "--healthz-port", /port number/);
  });

  test("--healthz-ip", () => {
    assert.equal(load(["--healthz-ip=127.0.0.1"])["healthz-ip"], "127.0.0.1");
    reject(["--healthz-ip=localhost"], "--healthz-ip", /IP address/);
  });

  test("--iptables-backend and --log-level are enums", () => {
    assert.equal(load(["--iptables-backend=nft"])["iptables-backend"], "nft");
    reject(["--iptables-backend=ebtables"], "--iptables-backend", /auto|nft|legacy/);
    assert.equal(load(["--dataplane=nftables"]).dataplane, "nftables");
    reject(["--dataplane=bpf"], "--dataplane", /auto|iptables|nftables/);
    assert.equal(load(["--log-level=debug"])["log-level"], "debug");
    reject(["--log-level=verbose"], "--log-level", /info/);
  });

  test("--iface-regex must be valid regular expressions", () => {
    assert.deepEqual(load(["--iface-regex=^eth[0-9]+$"])["iface-regex"], ["^eth[0-9]+$"]);
    assert.throws(() => load(["--iface-regex=("]), (err: unknown) => err instanceof ConfigError && /regular expression/.test(err.reason));
  });

  test("an empty --iface is rejected", () => {
    assert.throws(() => load(["--iface="]), ConfigError);
  });

  test("list-flag errors name the flag itself", () => {
    reject(["--iface="], "--iface", /./);
    reject(["--iface-regex=("], "--iface-regex", /regular expression/);
  });

  test("--subnet-file must not be empty", () => {
    reject(["--subnet-file="], "--subnet-file", /./);
  });
});

describe("nodeName", () => {
  test("from --node-name", () => {
    assert.equal(load(["--node-name=worker-1"], { NODE_NAME: "from-env" }, "host-a").nodeName, "worker-1");
  });

  test("from SLUICE_NODE_NAME (the flag's own env fallback) before NODE_NAME", () => {
    assert.equal(load([], { SLUICE_NODE_NAME: "sluice-env", NODE_NAME: "k8s-env" }, "host-a").nodeName, "sluice-env");
  });

  test("from NODE_NAME when the flag is not given", () => {
    assert.equal(load([], { NODE_NAME: "worker-2" }, "host-a").nodeName, "worker-2");
  });

  test("else the hostname", () => {
    assert.equal(load([], {}, "host-b").nodeName, "host-b");
  });

  test("an empty NODE_NAME falls back to the hostname", () => {
    assert.equal(load([], { NODE_NAME: "" }, "host-b").nodeName, "host-b");
  });

  test("an empty --node-name is rejected", () => {
    reject(["--node-name="], "--node-name", /1/);
  });

  test("Kubernetes mode needs the Node's name (NODE_NAME from the downward API, or --node-name): no host-name guess", () => {
    reject(["--kube-subnet-mgr"], "NODE_NAME", /must be set with --kube-subnet-mgr \(from the downward API/);
    reject(["--kube-subnet-mgr"], "NODE_NAME", /downward API/, { NODE_NAME: "" });
    assert.equal(load(["--kube-subnet-mgr"], { NODE_NAME: "worker-3" }).nodeName, "worker-3");
    assert.equal(load(["--kube-subnet-mgr", "--node-name", "worker-4"]).nodeName, "worker-4");
  });
});

describe("--cni-data-dir", () => {
  test("defaults to sluice-cni's default dataDir and must be absolute", () => {
    assert.equal(load(["--cni-data-dir", "/srv/cni"])["cni-data-dir"], "/srv/cni");
    reject(["--cni-data-dir", "srv/cni"], "--cni-data-dir", /must be an absolute path/);
  });
});

describe("flags.ts", () => {
  const specs: FlagSpec[] = [
    { name: "name", kind: "string", help: "a name" },
    { name: "on", kind: "boolean", help: "a switch" },
    { name: "item", kind: "list", help: "items" },
    { name: "dotted.name", kind: "string", help: "dots" },
  ];

  test("envNames: SLUICE_ first, then FLANNELD_, upper case, - and . to _", () => {
    assert.deepEqual(envNames("etcd-endpoints"), ["SLUICE_ETCD_ENDPOINTS", "FLANNELD_ETCD_ENDPOINTS"]);
    assert.deepEqual(envNames("ip-masq"), ["SLUICE_IP_MASQ", "FLANNELD_IP_MASQ"]);
    assert.deepEqual(envNames("dotted.name"), ["SLUICE_DOTTED_NAME", "FLANNELD_DOTTED_NAME"]);
  });

  test("parseFlags returns raw values and positionals", () => {
    const r = parseFlags(["--name", "x", "pos1", "--on", "--item=a", "-item", "b", "-", "--", "--name", "y"], specs, {});
    assert.deepEqual(r, { flags: { name: "x", on: true, item: ["a", "b"] }, positional: ["pos1", "-", "--name", "y"] });
  });

  test("parseFlags fills flags from the environment only when absent", () => {
    const r = parseFlags(["--name=cli"], specs, { SLUICE_NAME: "env", FLANNELD_ON: "yes", FLANNELD_ITEM: "i1", SLUICE_DOTTED_NAME: "d" });
    assert.deepEqual(r.flags, { name: "cli", on: true, item: ["i1"], "dotted.name": "d" });
  });

  test("parseFlags errors carry the given source", () => {
    rejects(() => parseFlags(["--nope"], specs, {}, "sluicectl"), "--nope", /not a known flag/);
    assert.throws(() => parseFlags(["--nope"], specs, {}, "sluicectl"), (err: unknown) => err instanceof ConfigError && err.source === "sluicectl");
  });

  test("parseDuration", () => {
    assert.equal(parseDuration("90s", 1000), 90_000);
    assert.equal(parseDuration("5m", 1000), 300_000);
    assert.equal(parseDuration("24h", 1000), 86_400_000);
    assert.equal(parseDuration("250ms", 1000), 250);
    assert.equal(parseDuration("60", 60_000), 3_600_000);
    assert.equal(parseDuration("5", 1000), 5000);
    assert.equal(parseDuration(" 30s ", 1000), 30_000);
    assert.equal(parseDuration("0.5s", 1000), 500);
    assert.equal(parseDuration("", 1000), undefined);
    assert.equal(parseDuration("1d", 1000), undefined);
    assert.equal(parseDuration("-5s", 1000), undefined);
    assert.equal(parseDuration("s", 1000), undefined);
  });

  test("formatHelp lists every flag with its default and env hint", () => {
    const text = formatHelp("sluice-agent", AGENT_FLAGS);
    assert.ok(text.startsWith("sluice-agent\n\nFlags (each also settable as SLUICE_<NAME> or FLANNELD_<NAME>):\n"));
    assert.ok(text.includes("  --etcd-prefix value\n      etcd prefix of the network config and leases (default /coreos.com/network)"));
    assert.ok(text.includes("  --ip-masq\n      masquerade pod traffic that leaves the cluster network (default false)"));
    assert.ok(text.includes("  --iface value (repeatable)\n"));
    for (const spec of AGENT_FLAGS) assert.ok(text.includes(`  --${spec.name}`), spec.name);
  });
});
