/** One backend's piece of the Backend section: its zod object, errors named `Backend.<Key>`. */
import type { z } from "zod";
import { ConfigError, describeZodIssues } from "../config/errors.js";
import type { RawBackend } from "./types.js";

export function parseBackendKeys<S extends z.ZodType>(schema: S, raw: RawBackend, source: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const first = describeZodIssues(r.error.issues)[0];
  throw new ConfigError(first ? `Backend.${first.field}` : "Backend", first?.reason ?? "is invalid", source);
}
