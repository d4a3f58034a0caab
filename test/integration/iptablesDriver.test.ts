import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { IptablesDriver, binaries } from "../../src/dataplane/iptables.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { hostRuleset } from "../../src/render/hostRules.js";
import { formatRuleset } from "../../src/render/iptablesFormat.js";
import { parseCidr } from "../../src/model/ip.js";
import { captureLog } from "../helpers/log.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

const prefix = uniquePrefix("ipt");
const ns = `${prefix}-a`;
const rulesOf = (text: string, chain: string): string[] => text.split("\n").filter((l) => l.startsWith(`-A ${chain} `));

// The driver takes text: the ruleset as the policy dataplane formats it.
const spec = formatRuleset(hostRuleset({ family: 4, network: parseCidr("10.244.0.0/16"), subnet: parseCidr("10.244.3.0/24"), ipMasq: true, randomFully: true, forwardRules: true }));

for (const mode of ["nft", "legacy"] as const) {
  describe(`iptables driver (${mode}) in a throwaway namespace`, () => {
    let driver: IptablesDriver;
    const nsName = `${ns}-${mode}`;
    const saveHere = async (): Promise<string> => nsExec(nsName, `iptables-${mode}-save`, []);
    before(async () => {
      await makeNetns(nsName);
      await nsExec(nsName, `iptables-${mode}`, ["-P", "FORWARD", "DROP"]);
      driver = new IptablesDriver(binaries(4, mode, nsName), captureLog().log);
    });
    after(async () => removeNetnsWithPrefix(nsName));

    test("first apply installs our chains and puts our jumps first", async () => {
      await driver.apply(spec);
      const text = await saveHere();
      assert.match(rulesOf(text, "FORWARD")[0] ?? "", /-j SLUICE-FORWARD$/);
      assert.match(rulesOf(text, "POSTROUTING")[0] ?? "", /-j SLUICE-POSTROUTING$/);
      assert.equal(rulesOf(text, "SLUICE-POSTROUTING").length, 6);
      assert.deepEqual(
        rulesOf(text, "SLUICE-FORWARD").map((l) => l.replace(/ -m comment --comment "sluice:[0-9a-f]{16}"/, "")),
        ["-A SLUICE-FORWARD -s 10.244.0.0/16 -j ACCEPT", "-A SLUICE-FORWARD -d 10.244.0.0/16 -j ACCEPT"],
      );
      assert.match(text, /:FORWARD DROP/, "the FORWARD policy is never changed");
    });

    test("re-applying the same state writes nothing", async () => {
      const before = driver.writes;
      await driver.apply(spec);
      await driver.apply(spec);
      assert.equal(driver.writes, before);
    });

    test("coexists with foreign rules inserted before and after ours, and moves back to the top", async () => {
      await nsExec(nsName, `iptables-${mode}`, ["-N", "DOCKER-USER"]);
      await nsExec(nsName, `iptables-${mode}`, ["-I", "FORWARD", "1", "-j", "DOCKER-USER"]);
      await nsExec(nsName, `iptables-${mode}`, ["-A", "FORWARD", "-s", "192.0.2.0/24", "-j", "ACCEPT"]);
      await nsExec(nsName, `iptables-${mode}`, ["-t", "nat", "-I", "POSTROUTING", "1", "-s", "198.51.100.0/24", "-j", "RETURN"]);
      await driver.apply(spec);
      const text = await saveHere();
      const fwd = rulesOf(text, "FORWARD");
      assert.match(fwd[0] ?? "", /-j SLUICE-FORWARD$/, "our jump is first again");
      assert.ok(fwd.includes("-A FORWARD -j DOCKER-USER"), "Docker's jump is still there");
      assert.ok(fwd.includes("-A FORWARD -s 192.0.2.0/24 -j ACCEPT"), "the appended foreign rule is still there");
      assert.equal(fwd.filter((l) => l.includes("SLUICE-FORWARD")).length, 1, "exactly one jump of ours");
      assert.ok(rulesOf(text, "POSTROUTING").includes("-A POSTROUTING -s 198.51.100.0/24 -j RETURN"));
      assert.match(text, /:DOCKER-USER - /, "the foreign chain is untouched");
    });

    test("drift is repaired: a deleted rule and an inserted rule in our chain", async () => {
      await nsExec(nsName, `iptables-${mode}`, ["-D", "SLUICE-FORWARD", "1"]);
      await nsExec(nsName, `iptables-${mode}`, ["-I", "SLUICE-FORWARD", "1", "-j", "DROP"]);
      await nsExec(nsName, `iptables-${mode}`, ["-t", "nat", "-F", "SLUICE-POSTROUTING"]);
      const writes = driver.writes;
      await driver.apply(spec);
      assert.ok(driver.writes > writes);
      const text = await saveHere();
      assert.equal(rulesOf(text, "SLUICE-FORWARD").length, 2);
      assert.ok(!rulesOf(text, "SLUICE-FORWARD").some((l) => l.endsWith("-j DROP")));
      assert.equal(rulesOf(text, "SLUICE-POSTROUTING").length, 6);
    });

    test("removeAll takes out our chains and jumps only", async () => {
      await driver.removeAll(4, ["filter", "nat"]);
      const text = await saveHere();
      assert.doesNotMatch(text, /SLUICE-/);
      assert.ok(rulesOf(text, "FORWARD").includes("-A FORWARD -j DOCKER-USER"));
      assert.ok(rulesOf(text, "POSTROUTING").includes("-A POSTROUTING -s 198.51.100.0/24 -j RETURN"));
    });
  });
}

