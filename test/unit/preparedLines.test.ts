import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import type { AuditEvent, KeyedEvent } from "../../shared/auditEvent";
import { lineBuffers, prepareEvents, withOwnLine, type Preparation } from "../../shared/export/batching";
import { fastGzip } from "../../shared/fastGzip";
import { lineText } from "../../shared/sentinelRecord";

const base: AuditEvent = {
  account_id: "acc",
  workspace_id: "123",
  version: "2.0",
  event_time: "2024-09-01T00:00:00.000001Z",
  event_date: "2024-09-01",
  source_ip_address: "10.0.0.1",
  user_agent: "curl",
  session_id: null,
  user_identity: { email: "a@example.com", subject_name: null },
  service_name: "accounts",
  action_name: "login",
  request_id: "r",
  request_params: { user: "a" },
  response: { status_code: 200, error_message: null, result: null },
  audit_level: "ACCOUNT_LEVEL",
  event_id: "e0",
  identity_metadata: null,
};

const keyed = (values: string[]): KeyedEvent[] =>
  values.map((value, i) => ({ timeUs: i, eventId: `e${i}`, event: { ...base, event_id: `e${i}`, request_params: { value } } }));

const PLAIN: Preparation = { redaction: [], ingestionOn: false };

describe("prepareEvents' lines", () => {
  const values = ["plain", "zoë søren données", "名前😀", "lone \ud800 raw", "", 'quote " and \\ backslash'];

  it("are each event's JSON as UTF-8 with a newline, as joining the strings would give", () => {
    const events = keyed(values);
    const prepared = prepareEvents(events, PLAIN);
    const expected = events.map((e) => `${JSON.stringify(e.event)}\n`);
    expect(prepared.map((p) => lineText(p.line))).toEqual(expected);
    expect(Buffer.concat(prepared.map((p) => p.line)).equals(Buffer.from(expected.join(""), "utf8"))).toBe(true);
  });

  it("are views of one buffer of exactly their size, so a handoff moves one buffer", () => {
    const prepared = prepareEvents(keyed(values), PLAIN);
    const buffers = lineBuffers(prepared);
    expect(buffers).toHaveLength(1);
    expect(buffers[0]!.byteLength).toBe(prepared.reduce((sum, p) => sum + p.line.byteLength, 0));
    // Not a slice of Node's shared pool (which could not be moved to another thread).
    expect(prepared[0]!.line.byteOffset).toBe(0);
  });

  it("survive outgrowing the working buffer: many lines, and one line larger than it", () => {
    const many = keyed(Array.from({ length: 3000 }, (_, i) => `${"é".repeat(400)}${i}`));
    const big = keyed(["x".repeat(3 * 1024 * 1024)]);
    for (const events of [many, big, keyed(values)]) {
      const prepared = prepareEvents(events, PLAIN);
      expect(prepared.map((p) => lineText(p.line))).toEqual(events.map((e) => `${JSON.stringify(e.event)}\n`));
    }
  });

  it("do not change when the next events are prepared", () => {
    const first = prepareEvents(keyed(["first"]), PLAIN);
    prepareEvents(keyed(["second, longer than the first"]), PLAIN);
    expect(JSON.parse(lineText(first[0]!.line)).request_params.value).toBe("first");
  });

  it("read back unchanged through the archive's gzip", async () => {
    const prepared = prepareEvents(keyed(values), PLAIN);
    const text = gunzipSync(await fastGzip(Buffer.concat(prepared.map((p) => p.line)))).toString("utf8");
    expect(
      text
        .split("\n")
        .slice(0, -1)
        .map((line) => (JSON.parse(line) as AuditEvent).request_params?.value),
    ).toEqual(values.map((v) => JSON.parse(JSON.stringify(v)) as string));
  });

  it("are none for no events", () => {
    expect(prepareEvents([], PLAIN)).toEqual([]);
  });

  it("are the same when each item becomes its event only in its turn", () => {
    const events = keyed(values);
    const seen: number[] = [];
    const prepared = prepareEvents([0, 1, 2, 3, 4, 5], PLAIN, (i) => {
      seen.push(i);
      return events[i]!;
    });
    expect(seen).toEqual([0, 1, 2, 3, 4, 5]);
    const direct = prepareEvents(events, PLAIN);
    expect(prepared.map((p) => ({ ...p, line: lineText(p.line) }))).toEqual(direct.map((p) => ({ ...p, line: lineText(p.line) })));
  });
});

describe("withOwnLine", () => {
  it("copies the line out of its handoff buffer, unchanged", () => {
    const prepared = prepareEvents(keyed(["a", "b", "c"]), PLAIN);
    const own = withOwnLine(prepared[1]!);
    expect(lineText(own.line)).toBe(lineText(prepared[1]!.line));
    expect(own.line.buffer).not.toBe(prepared[1]!.line.buffer);
    expect(own.line.buffer.byteLength).toBe(prepared[1]!.line.byteLength);
    expect({ ...own, line: undefined }).toEqual({ ...prepared[1]!, line: undefined });
  });
});
