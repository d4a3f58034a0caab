/** Where the built entry points are, whether we run from the bundle (dist/bin) or from tsc output (build/). */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export function packageRoot(from: string = __dirname): string {
  let dir = from;
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

export const binPath = (name: "sluice-agent" | "sluicectl" | "sluice-cni"): string => join(packageRoot(), "dist", "bin", `${name}.js`);
