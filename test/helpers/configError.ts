import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.js";

/** Asserts that `fn` throws a ConfigError for `field` whose reason matches `why`. */
export function rejects(fn: () => unknown, field: string, why: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.field, field);
    assert.match(err.reason, why);
    assert.ok(err.message.includes(`${field}: `), `message "${err.message}" should name ${field}`);
    return true;
  });
}
