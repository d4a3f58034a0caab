/** An error in operator input that names the offending field and why it is wrong. */
export class ConfigError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
    readonly source = "config",
  ) {
    super(`${source}: ${field}: ${reason}`);
    this.name = "ConfigError";
  }
}

/** Turns zod issues into one readable message per field ("Backend.VNI: expected ..."). */
export function describeZodIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>): { field: string; reason: string }[] {
  // List indices say which element, not which field: "--iface" rather than "--iface.0".
  return issues.map((i) => {
    const path = i.path.filter((p) => typeof p !== "number").map(String);
    return { field: path.length ? path.join(".") : "(root)", reason: i.message };
  });
}
