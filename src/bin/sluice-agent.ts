#!/usr/bin/env node
/** sluice-agent: the per-node daemon. Parses flags, starts the agent, handles signals. */
import { hostname } from "node:os";
import { AGENT_FLAGS, loadAgentConfig } from "../config/agentConfig.js";
import { formatHelp } from "../config/flags.js";
import { ConnectivityAgent } from "../agent/connectivityAgent.js";
import { makeLogger } from "../agent/logger.js";
import { VERSION } from "../version.js";

async function main(): Promise<number> {
  let cfg;
  try {
    cfg = loadAgentConfig(process.argv.slice(2), process.env, hostname());
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (cfg.help) {
    process.stdout.write(formatHelp(`sluice-agent ${VERSION}: pod connectivity and policy for one node\n\nUsage: sluice-agent [flags]`, AGENT_FLAGS) + "\n");
    return 0;
  }
  if (cfg.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const log = makeLogger(cfg["log-level"], "sluice-agent");
  const agent = new ConnectivityAgent(cfg, log);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    void agent.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  try {
    await agent.start();
    log.info({ node: cfg.nodeName }, "agent running");
  } catch (err) {
    log.fatal({ err: (err as Error).message }, "agent failed to start");
    await agent.stop().catch(() => undefined);
    return 1;
  }
  return -1; // keep running
}

void main().then((code) => {
  if (code >= 0) process.exit(code);
});
