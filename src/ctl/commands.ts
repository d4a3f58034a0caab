/**
 * sluicectl's commands. Each takes its own flags (etcd commands take the agent's etcd
 * flags and their SLUICE_/FLANNELD_ environment forms) and returns an exit code.
 */
import { readFileSync } from "node:fs";
import { pino } from "pino";
import { ConfigError } from "../config/errors.js";
import { type FlagSpec, type RawFlags, formatHelp, parseFlags } from "../config/flags.js";
import { parseNetworkConfig } from "../config/networkConfig.js";
import { describeBackend } from "../backends/specs.js";
import { readSubnetEnv, renderDockerOpts, writeFileAtomic } from "../agent/subnetEnv.js";
import { connectEtcd } from "../datastore/etcdClient.js";
import { EtcdSubnetRegistry } from "../datastore/etcdSubnetRegistry.js";
import { cleanupNode } from "./cleanup.js";
import { formatCidr, parseCidr, parseIp } from "../model/ip.js";
import { ETCD_FLAGS } from "./etcdFlags.js";
import { DEMO_PREFIX, DEMO_STATE, runDemo } from "./demo.js";
import { RESOURCE_COMMANDS } from "./apply.js";
import { SANDBOX_FLAGS, SANDBOX_USAGE, runSandbox } from "./sandbox.js";
import { EXPLAIN_FLAGS, EXPLAIN_USAGE, runExplain } from "./explain.js";
import { contextsPath, readContexts, removeContexts, useContext, withCurrentContext } from "./contexts.js";

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** `usage`, when present, is printed by --help above the flags (commands with subcommands). */
type Command = { summary: string; usage?: string; flags: FlagSpec[]; run: (flags: RawFlags, args: string[], io: Io) => Promise<number> };

const str = (f: RawFlags, k: string): string | undefined => (typeof f[k] === "string" ? (f[k] as string) : undefined);

function registryFrom(flags: RawFlags): { registry: EtcdSubnetRegistry; close: () => void } {
  const endpoints = (str(flags, "etcd-endpoints") ?? "http://127.0.0.1:2379").split(",").map((s) => s.trim());
  const client = connectEtcd({ endpoints, caFile: str(flags, "etcd-cafile"), certFile: str(flags, "etcd-certfile"), keyFile: str(flags, "etcd-keyfile"), username: str(flags, "etcd-username"), password: str(flags, "etcd-password") });
  const registry = new EtcdSubnetRegistry(client, str(flags, "etcd-prefix") ?? "/coreos.com/network", pino({ level: "warn" }, pino.destination(2)));
  return { registry, close: () => client.close() };
}

export const COMMANDS: Record<string, Command> = {
  ...RESOURCE_COMMANDS,
  "config-set": {
    summary: "validate a flannel-style network config (net-conf.json) and store it in etcd",
    flags: [...ETCD_FLAGS, { name: "f", kind: "string", help: "file to read (- for stdin)" }],
    run: async (flags, _args, io) => {
      const file = str(flags, "f");
      if (!file) throw new ConfigError("-f", "is required (a net-conf.json file, or - for stdin)", "sluicectl config-set");
      const text = readFileSync(file === "-" ? 0 : file, "utf8");
      parseNetworkConfig(text, file);
      const { registry, close } = registryFrom(flags);
      try {
        await registry.putNetworkConfig(text);
      } finally {
        close();
      }
      io.out(`network config stored at ${registry.prefix}/config\n`);
      return 0;
    },
  },
  "config-get": {
    summary: "print the network config stored in etcd",
    flags: ETCD_FLAGS,
    run: async (flags, _args, io) => {
      const { registry, close } = registryFrom(flags);
      try {
        const c = await registry.getNetworkConfig();
        io.out(JSON.stringify({ Network: c.ipv4 && formatCidr(c.ipv4.network), SubnetLen: c.ipv4?.subnetLen, IPv6Network: c.ipv6 && formatCidr(c.ipv6.network), Backend: describeBackend(c.backend) }, null, 2) + "\n");
      } finally {
        close();
      }
      return 0;
    },
  },
  leases: {
    summary: "list subnet leases (and reservations)",
    flags: [...ETCD_FLAGS, { name: "o", kind: "string", help: "output: table or json", default: "table" }],
    run: async (flags, _args, io) => {
      const { registry, close } = registryFrom(flags);
      try {
        const { leases } = await registry.listLeases();
        if (str(flags, "o") === "json") {
          io.out(JSON.stringify(leases.map((l) => ({ subnet: l.subnet && formatCidr(l.subnet), subnet6: l.subnet6 && formatCidr(l.subnet6), ...l.attrs, reservation: l.leaseId === "0" })), null, 2) + "\n");
          return 0;
        }
        io.out(["SUBNET".padEnd(20), "NODE".padEnd(14), "PUBLIC-IP".padEnd(16), "BACKEND".padEnd(9), "KIND"].join(" ") + "\n");
        for (const l of leases) {
          const subnets = [l.subnet, l.subnet6].filter((c) => c !== undefined).map(formatCidr).join(" ");
          io.out([subnets.padEnd(20), (l.attrs.NodeName ?? "-").padEnd(14), (l.attrs.PublicIP || "-").padEnd(16), (l.attrs.BackendType || "-").padEnd(9), l.leaseId === "0" ? "reservation" : "lease"].join(" ") + "\n");
        }
      } finally {
        close();
      }
      return 0;
    },
  },
  reserve: {
    summary: "reserve a subnet for a node (a lease key without TTL): sluicectl reserve 10.244.7.0/24 --public-ip 192.0.2.7",
    flags: [...ETCD_FLAGS, { name: "public-ip", kind: "string", help: "the node the subnet is reserved for" }],
    run: async (flags, args, io) => {
      const subnetText = args[0];
      if (!subnetText) throw new ConfigError("SUBNET", "is required (e.g. 10.244.7.0/24)", "sluicectl reserve");
      const publicIp = str(flags, "public-ip");
      if (!publicIp) throw new ConfigError("--public-ip", "is required", "sluicectl reserve");
      const subnet = parseCidr(subnetText, true);
      parseIp(publicIp);
      const { registry, close } = registryFrom(flags);
      try {
        const key = registry.keyOf(subnet.family === 4 ? subnet : undefined, subnet.family === 6 ? subnet : undefined);
        await registry.reserve(subnet.family === 4 ? subnet : undefined, subnet.family === 6 ? subnet : undefined, { PublicIP: publicIp, BackendType: "" });
        io.out(`reserved ${formatCidr(subnet)} for ${publicIp} (${key})\n`);
      } finally {
        close();
      }
      return 0;
    },
  },
  config: {
    summary: "sluicectl's contexts (etcd connections; sandbox up records one): config current-context | get-contexts | use-context NAME | delete-context NAME",
    usage: `Subcommands:
  current-context        print the current context's name (exit 1 when there is none)
  get-contexts           list the contexts; * marks the current one
  use-context NAME       make NAME current
  delete-context NAME    remove NAME
Datastore commands (apply, get, delete, explain, leases, reserve, config-get, config-set) use
the current context when no --etcd-* flag (or SLUICE_ETCD_* variable) is given, and say so
on stderr. The file: $SLUICE_CONFIG, else $XDG_CONFIG_HOME/sluice/config.json, else
~/.config/sluice/config.json.`,
    flags: [{ name: "o", kind: "string", help: "get-contexts output: table or json", default: "table" }],
    run: async (flags, args, io) => {
      const [sub, name, ...extra] = args;
      const path = contextsPath();
      const src = `sluicectl config ${sub ?? ""}`.trim();
      const needName = (): string => {
        if (!name) throw new ConfigError("NAME", "is required", src);
        if (extra.length > 0) throw new ConfigError(extra[0] as string, "unexpected argument", src);
        return name;
      };
      switch (sub) {
        case "current-context": {
          const f = readContexts(path);
          if (f.currentContext === undefined) {
            io.err(`no current context (${path}); sluicectl sandbox up records one\n`);
            return 1;
          }
          io.out(`${f.currentContext}\n`);
          return 0;
        }
        case "get-contexts": {
          const f = readContexts(path);
          if (str(flags, "o") === "json") {
            io.out(JSON.stringify(f, null, 2) + "\n");
            return 0;
          }
          io.out(["CURRENT", "NAME".padEnd(24), "ETCD"].join("  ") + "\n");
          for (const c of f.contexts) io.out([(c.name === f.currentContext ? "*" : "").padEnd(7), c.name.padEnd(24), c.etcdEndpoints].join("  ") + "\n");
          return 0;
        }
        case "use-context":
          useContext(path, needName());
          io.out(`switched to context "${name}"\n`);
          return 0;
        case "delete-context": {
          const n = needName();
          if (removeContexts(path, (c) => c.name === n).length === 0) throw new ConfigError("NAME", `no context "${n}" in ${path}`, src);
          io.out(`deleted context "${n}"\n`);
          return 0;
        }
        default:
          throw new ConfigError("SUBCOMMAND", `${sub === undefined ? "is required" : `"${sub}" is not one`}: current-context, get-contexts, use-context NAME, delete-context NAME`, "sluicectl config");
      }
    },
  },
  "docker-opts": {
    summary: "write Docker daemon options from subnet.env, like flannel's mk-docker-opts.sh",
    flags: [
      { name: "f", kind: "string", help: "subnet.env to read", default: "/run/flannel/subnet.env" },
      { name: "d", kind: "string", help: "file to write (- for stdout)", default: "/run/docker_opts.env" },
      { name: "k", kind: "string", help: "name of the combined variable", default: "DOCKER_OPTS" },
      { name: "i", kind: "boolean", help: "write the individual variables" },
      { name: "c", kind: "boolean", help: "write the combined variable" },
      { name: "m", kind: "boolean", help: "leave out --ip-masq" },
    ],
    run: async (flags, _args, io) => {
      const file = str(flags, "f") ?? "/run/flannel/subnet.env";
      const env = await readSubnetEnv(file);
      if (!env || !env.subnet || env.mtu === undefined || env.ipMasq === undefined) throw new ConfigError("-f", `${file} is missing or lacks FLANNEL_SUBNET, FLANNEL_MTU or FLANNEL_IPMASQ`, "sluicectl docker-opts");
      const both = !flags["i"] && !flags["c"];
      const text = renderDockerOpts(
        { network: env.network, subnet: env.subnet, ipv6Network: env.ipv6Network, ipv6Subnet: env.ipv6Subnet, mtu: env.mtu, ipMasq: env.ipMasq },
        { combinedKey: str(flags, "k") ?? "DOCKER_OPTS", individual: both || flags["i"] === true, combined: both || flags["c"] === true, omitIpMasq: flags["m"] === true },
      );
      const out = str(flags, "d") ?? "/run/docker_opts.env";
      if (out === "-") io.out(text);
      else await writeFileAtomic(out, text);
      return 0;
    },
  },
  cleanup: {
    summary: "remove everything Sluice programmed on this node (iptables chains and jumps, VXLAN devices, routes); run on the node",
    flags: [{ name: "iptables-backend", kind: "string", help: "auto, nft or legacy", default: "auto" }],
    run: async (flags, _args, io) => {
      const backend = str(flags, "iptables-backend") ?? "auto";
      if (!["auto", "nft", "legacy"].includes(backend)) throw new ConfigError("--iptables-backend", `"${backend}" must be auto, nft or legacy`, "sluicectl cleanup");
      const report = await cleanupNode(backend as "auto" | "nft" | "legacy");
      io.out(report.join("\n") + "\n");
      return 0;
    },
  },
  explain: {
    summary: "why policy allows or denies a connection, tier by tier (explain x/a y/b --port 80/TCP), or the whole matrix it predicts (--matrix)",
    usage: EXPLAIN_USAGE,
    flags: EXPLAIN_FLAGS,
    run: runExplain,
  },
  sandbox: {
    summary: "a cluster in network namespaces on this host: up/down/status, node, ns, pod, label, exec, probe, matrix",
    usage: SANDBOX_USAGE,
    flags: SANDBOX_FLAGS,
    run: runSandbox,
  },
  demo: {
    summary: "a 3-node sandbox, pods in two namespaces wired by sluice-cni, a connectivity matrix from real TCP probes; --keep leaves it up",
    flags: [
      { name: "backend", kind: "string", help: "vxlan, host-gw, vxlan-direct, wireguard, ipip or udp", default: "vxlan" },
      { name: "keep", kind: "boolean", help: "leave the cluster running (remove it with: sluicectl demo-down)" },
    ],
    run: async (flags, _args, io) => runDemo({ backend: str(flags, "backend") ?? "vxlan", keep: flags["keep"] === true }, io),
  },
  "demo-down": {
    summary: "remove a demo cluster left running with demo --keep (or by a crash); same as sandbox down for the demo's state",
    flags: [],
    run: async (_flags, _args, io) => runSandbox({ "state-dir": DEMO_STATE, prefix: DEMO_PREFIX }, ["down"], io),
  },
};

export async function runCtl(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "help") {
    io.out(["sluicectl: manage and explore Sluice", "", "Commands:", ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`), "", "Run sluicectl <command> --help for its flags."].join("\n") + "\n");
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.err(`sluicectl: unknown command "${name}" (see sluicectl --help)\n`);
    return 2;
  }
  const specs = [...cmd.flags, { name: "help", kind: "boolean" as const, help: "show this help" }];
  try {
    const parsed = parseFlags(rest, specs, process.env, `sluicectl ${name}`);
    if (parsed.flags["help"]) {
      io.out(formatHelp(`sluicectl ${name}: ${cmd.summary}${cmd.usage ? `\n\n${cmd.usage}` : ""}`, cmd.flags) + "\n");
      return 0;
    }
    let flags = parsed.flags;
    // A datastore command without connection flags talks to the current context (explain's --sandbox / --state-dir / --kube* name their store themselves).
    const otherStore = ["sandbox", "state-dir", "kube", "kubeconfig-file", "kube-api-url"].some((k) => flags[k] !== undefined && flags[k] !== false);
    if (cmd.flags.some((f) => f.name === "etcd-endpoints") && !otherStore) {
      const path = contextsPath();
      const r = withCurrentContext(flags, path);
      if (r.used) io.err(`sluicectl: using context "${r.used.name}" (etcd ${r.used.etcdEndpoints}, from ${path}); --etcd-endpoints picks another\n`);
      flags = r.flags;
    }
    return await cmd.run(flags, parsed.positional, io);
  } catch (err) {
    io.err(`${(err as Error).message}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }
}
