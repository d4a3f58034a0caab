/** The grid parser and diff printer the NetworkPolicy e2e suite reports with. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MatrixParseError, describeDiff, diffMatrices, formatMatrix, parseMatrix, uniformMatrix } from "../../helpers/policyMatrix.js";

const PODS = ["x/a", "x/b", "y/a"];
const GRID = `
  # a comment line
  //    x/a x/b y/a
  x/a    .   X   .
  x/b    .   .   X
  y/a    X   .   .
`;

describe("policy matrix grids", () => {
  test("parses rows = from, columns = to", () => {
    const m = parseMatrix(GRID, PODS);
    assert.deepEqual(m.pods, PODS);
    assert.deepEqual(m.cells, [
      [true, false, true],
      [true, true, false],
      [false, true, true],
    ]);
  });

  test("round-trips through formatMatrix", () => {
    const m = parseMatrix(GRID, PODS);
    assert.deepEqual(parseMatrix(formatMatrix(m), PODS), m);
  });

  test("rejects a header in another order, a row out of order, a short row and a stray cell", () => {
    assert.throws(() => parseMatrix(GRID, ["x/b", "x/a", "y/a"]), /header lists x\/a x\/b y\/a/);
    assert.throws(() => parseMatrix("// x/a x/b\nx/b . .\nx/a . .", ["x/a", "x/b"]), /row 1 is x\/b, expected x\/a/);
    assert.throws(() => parseMatrix("// x/a x/b\nx/a . .\nx/b .", ["x/a", "x/b"]), /row x\/b has 1 cells, expected 2/);
    assert.throws(() => parseMatrix("// x/a x/b\nx/a . o\nx/b . .", ["x/a", "x/b"]), (e: unknown) => e instanceof MatrixParseError && /column x\/b: cell "o"/.test(e.message));
    assert.throws(() => parseMatrix("// x/a x/b\nx/a . .", ["x/a", "x/b"]), /1 rows for 2 columns/);
  });

  test("the diff names exactly the pairs that differ and marks them in the grid", () => {
    const expected = parseMatrix(GRID, PODS);
    const observed = uniformMatrix(PODS, true);
    assert.deepEqual(diffMatrices(expected, observed), [
      { from: "x/a", to: "x/b", expected: false, observed: true },
      { from: "x/b", to: "y/a", expected: false, observed: true },
      { from: "y/a", to: "x/a", expected: false, observed: true },
    ]);
    const text = describeDiff("TCP/80", expected, observed);
    assert.match(text, /^TCP\/80: 3 of 9 pairs differ/);
    assert.match(text, /x\/a\s+\.\s+\.\*\s+\./);
    assert.match(text, / {2}y\/a -> x\/a: expected blocked, observed connected/);
    assert.equal(describeDiff("TCP/80", expected, expected), "");
  });
});
