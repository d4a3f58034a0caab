import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../src/config/errors.js";
import { runDemo } from "../../src/ctl/demo.js";
import { run } from "../../src/dataplane/exec.js";
import { Sandbox, teardown } from "../../src/sandbox/cluster.js";
import { listNetns } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { ensurePrivateDir } from "../../src/sandbox/stateDir.js";
import { uniquePrefix } from "../helpers/netns.js";

/** A uid that is not ours (nobody). */
const OTHER_UID = 65534;

/**
 * The sandbox's and the demo's state directories (default under /tmp, where anyone can
 * make a directory or a symlink first): made 0700, and refused when they are a symlink or
 * another user's, before anything is read, run, written or removed there.
 */
describe("sandbox and demo state directories", () => {
  const root = mkdtempSync(join(tmpdir(), "sluice-statedir-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  const mode = (p: string): number => statSync(p).mode & 0o777;
  const refusedBecause = (why: RegExp) => (err: unknown): boolean => err instanceof ConfigError && err.field === "--state-dir" && why.test(err.message);

  test("a new state directory (and its missing parents) is made 0700; our own looser one is tightened", () => {
    const dir = join(root, "a", "b", "state");
    ensurePrivateDir(dir);
    assert.equal(mode(dir), 0o700);
    const loose = join(root, "loose");
    mkdirSync(loose, { mode: 0o755 });
    chmodSync(loose, 0o777);
    ensurePrivateDir(loose);
    assert.equal(mode(loose), 0o700);
  });

  test("a symlink, another user's directory or a file is refused, naming the path and why; the target is untouched", () => {
    const target = join(root, "target");
    mkdirSync(target, { mode: 0o755 });
    writeFileSync(join(target, "precious"), "x");
    const link = join(root, "link");
    symlinkSync(target, link);
    assert.throws(() => ensurePrivateDir(link), refusedBecause(new RegExp(`${link} is a symbolic link; refusing to use it as a state directory`)));
    const foreign = join(root, "foreign");
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, OTHER_UID, OTHER_UID);
    assert.throws(() => ensurePrivateDir(foreign), refusedBecause(/is owned by uid 65534, not by this user/));
    const file = join(root, "file");
    writeFileSync(file, "");
    assert.throws(() => ensurePrivateDir(file), refusedBecause(/is not a directory/));
    assert.equal(mode(target), 0o755, "the link's target keeps its mode");
    assert.deepEqual(readdirSync(target), ["precious"]);
  });

  test("sluicectl sandbox up refuses a symlinked state directory and builds nothing; status refuses another user's", async () => {
    const prefix = uniquePrefix("sd");
    const target = join(root, "up-target");
    mkdirSync(target);
    const link = join(root, "up-link");
    symlinkSync(target, link);
    const up = await run(process.execPath, [binPath("sluicectl"), "sandbox", "up", "--nodes", "1", "--prefix", prefix, "--state-dir", link], undefined, 60_000);
    assert.equal(up.code, 2, up.stdout + up.stderr);
    assert.match(up.stderr, /--state-dir: .*up-link is a symbolic link; refusing to use it as a state directory/);
    assert.deepEqual(readdirSync(target), [], "nothing written through the link");
    assert.deepEqual((await listNetns()).filter((n) => n.startsWith(prefix)), [], "no namespace made");

    // Someone else's directory with a state file that would have root run their binaries.
    const foreign = join(root, "up-foreign");
    mkdirSync(foreign);
    writeFileSync(join(foreign, "sandbox.json"), JSON.stringify({ version: 1, options: { prefix, stateDir: foreign, nodes: 1, backend: "vxlan", segments: 1, agentBin: "/tmp/evil" }, nextNodeIndex: 2, nodes: [], createdAt: "" }));
    chownSync(foreign, OTHER_UID, OTHER_UID);
    assert.throws(() => Sandbox.load(foreign), refusedBecause(/is owned by uid 65534/));
    const status = await run(process.execPath, [binPath("sluicectl"), "sandbox", "status", "--state-dir", foreign]);
    assert.equal(status.code, 2, status.stdout + status.stderr);
    assert.match(status.stderr, /is owned by uid 65534, not by this user/);
  });

  test("teardown and the demo refuse a symlinked state directory before they stop or remove anything", async () => {
    const target = join(root, "td-target");
    mkdirSync(target);
    writeFileSync(join(target, "precious"), "x");
    const link = join(root, "td-link");
    symlinkSync(target, link);
    await assert.rejects(teardown(uniquePrefix("td"), link), refusedBecause(/is a symbolic link/));
    const out: string[] = [];
    await assert.rejects(runDemo({ backend: "vxlan", keep: false, prefix: uniquePrefix("dm"), stateDir: link }, { out: (s) => out.push(s), err: (s) => out.push(s) }), refusedBecause(/is a symbolic link/));
    assert.deepEqual(out, [], "the demo built nothing");
    assert.ok(existsSync(join(target, "precious")), "nothing removed through the link");
  });
});
