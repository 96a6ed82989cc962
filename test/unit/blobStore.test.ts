import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { jsonLinesBuffer } from "../../shared/blobStore";
import { fastGzip } from "../../shared/fastGzip";

describe("jsonLinesBuffer", () => {
  const lines = [
    '{"a":"plain"}',
    '{"a":"zoë søren données"}',
    '{"a":"名前😀"}',
    '{"a":"lone \\ud800 escaped"}',
    JSON.stringify({ a: "lone \ud800 raw" }),
    "",
    '{"a":1}',
  ];

  it("is the lines as UTF-8, each ended by a newline, as joining them would give", () => {
    expect(jsonLinesBuffer(lines).equals(Buffer.from(lines.join("\n") + "\n", "utf8"))).toBe(true);
    // A lone surrogate (JSON.stringify escapes them, but the encoding must still agree): U+FFFD both ways.
    const odd = [...lines, "raw \ud800 surrogate"];
    expect(jsonLinesBuffer(odd).equals(Buffer.from(odd.join("\n") + "\n", "utf8"))).toBe(true);
  });

  it("holds one line per event and nothing else when there is one line, or none", () => {
    expect(jsonLinesBuffer(['{"x":"é"}']).toString("utf8")).toBe('{"x":"é"}\n');
    expect(jsonLinesBuffer([]).length).toBe(0);
  });

  it("reads back unchanged through the archive's gzip", async () => {
    const text = gunzipSync(await fastGzip(jsonLinesBuffer(lines))).toString("utf8");
    expect(text.split("\n").slice(0, -1)).toEqual(lines);
  });
});
