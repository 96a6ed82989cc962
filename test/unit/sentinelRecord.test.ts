import { describe, expect, it } from "vitest";
import { syntheticRows } from "../../sandbox/sqlWarehouse/synthetic";
import { REDACTED, eventFromRow, type AuditEvent } from "../../shared/auditEvent";
import { BatchBuilder, prepareEvents, type BatchLimits, type PreparedEvent } from "../../shared/export/batching";
import {
  MAX_FIELD_BYTES,
  TRUNCATED_KEYS_PARAM,
  TRUNCATION_MARKER,
  responseResultValue,
  sentinelRecordBytes,
  sentinelRecordFromLine,
  toSentinelRecord,
  truncateUtf8,
} from "../../shared/sentinelRecord";

const event: AuditEvent = {
  account_id: "acc",
  workspace_id: "123",
  version: "2.0",
  event_time: "2024-09-01T00:00:00.000001Z",
  event_date: "2024-09-01",
  source_ip_address: "10.0.0.1:443",
  user_agent: "ua",
  session_id: "s",
  user_identity: { email: "a@example.com", subject_name: "a" },
  service_name: "accounts",
  action_name: "login",
  request_id: "r",
  request_params: { user: "a" },
  response: { status_code: 401, error_message: "bad", result: null },
  audit_level: "WORKSPACE_LEVEL",
  event_id: "e1",
  identity_metadata: { run_by: "x", run_as: "y" },
};

/** Nulls, escapes, non-ASCII text, a "__proto__" key and values over the cap. */
const variants = (): AuditEvent[] => [
  event,
  { ...event, event_date: null, response: null, user_identity: null, identity_metadata: null, request_params: null },
  { ...event, user_identity: { email: null, subject_name: "sp" }, response: { status_code: null, error_message: null, result: null } },
  { ...event, user_identity: { email: 'quote"back\\slash@example.com', subject_name: "tab\tnew\nline" } },
  { ...event, user_identity: { email: "zoë@exämple.com", subject_name: "名前😀" }, user_agent: "ü\u0001" },
  { ...event, user_identity: { email: "lone\ud800surrogate", subject_name: "del\u007f" } },
  { ...event, request_params: Object.assign(Object.create(null) as Record<string, string | null>, { ["__proto__"]: "x", 'k"ey': "v" }) },
  { ...event, request_params: { a: "é".repeat(100_000) } },
  { ...event, user_agent: "u".repeat(40_000) },
  { ...event, response: { status_code: 500, error_message: "\n".repeat(40_000), result: null } },
  { ...event, response: { status_code: 200, error_message: null, result: "r".repeat(70_000) } },
  { ...event, response: { status_code: 200, error_message: null, result: '{ "cluster_id" : "0102-abc", "note": "é\\n\\u00e9" }' } },
  { ...event, response: { status_code: 200, error_message: null, result: `{"ids":[${Array(1000).fill("1e20").join(",")}]}` } },
  { ...event, response: { status_code: 200, error_message: null, result: `{"ids":[${Array(7000).fill("1e20").join(",")}]}` } },
  { ...event, response: { status_code: 200, error_message: null, result: JSON.stringify({ big: "x".repeat(50_000), small: 1 }) } },
  { ...event, response: { status_code: 200, error_message: null, result: '{"run_id":1234567890123456789}' } },
  { ...event, response: { status_code: 200, error_message: null, result: "{broken" } },
];

describe("toSentinelRecord", () => {
  it("uses the DatabricksAudit_CL column names and keeps the event's time", () => {
    expect(toSentinelRecord(event)).toEqual({
      TimeGenerated: event.event_time,
      EventTime: event.event_time,
      SchemaVersion: "2.0",
      AuditLevel: "WORKSPACE_LEVEL",
      AccountId: "acc",
      OrgId: "123",
      WorkspaceId: "123",
      ServiceName: "accounts",
      ActionName: "login",
      RequestId: "r",
      SessionId: "s",
      SourceIPAddress: "10.0.0.1:443",
      UserAgent: "ua",
      UserEmail: "a@example.com",
      UserSubjectName: "a",
      UserIdentity: event.user_identity,
      RequestParams: { user: "a" },
      ResponseStatusCode: 401,
      ResponseErrorMessage: "bad",
      ResponseResult: null,
      EventId: "e1",
      IdentityMetadata: event.identity_metadata,
    });
  });

  it("caps oversized values with a marker and names the capped keys", () => {
    const record = toSentinelRecord({
      ...event,
      request_params: { a: "é".repeat(100_000), b: "\n".repeat(40_000), c: "small" },
      response: { status_code: 200, error_message: null, result: "r".repeat(70_000) },
    });
    expect(Buffer.byteLength(JSON.stringify(record.RequestParams))).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(record.RequestParams!.c).toBe("small");
    expect(record.RequestParams!.a!.endsWith(TRUNCATION_MARKER)).toBe(true);
    expect(record.RequestParams![TRUNCATED_KEYS_PARAM]!.split(",").sort()).toEqual(["a", "b"]);
    const result = record.ResponseResult as string;
    expect(Buffer.byteLength(result)).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(result.endsWith(TRUNCATION_MARKER)).toBe(true);
  });

  it("truncates UTF-8 without splitting a character", () => {
    expect(truncateUtf8("aé", 2)).toBe("a");
    expect(truncateUtf8("😀😀", 5)).toBe("😀");
  });
});

describe("ResponseResult (dynamic, as the Sentinel solution's table declares it)", () => {
  const withResult = (result: string | null): AuditEvent => ({ ...event, response: { status_code: 200, error_message: null, result } });
  const sent = (result: string | null): unknown => toSentinelRecord(withResult(result)).ResponseResult;

  it("is the object a JSON object's text holds, so a query reads ResponseResult.cluster_id", () => {
    expect(sent('{"cluster_id":"0102-abc","spec":{"workers":2}}')).toEqual({ cluster_id: "0102-abc", spec: { workers: 2 } });
    expect(responseResultValue('{"__proto__":{"x":1}}')).toEqual(JSON.parse('{"__proto__":{"x":1}}'));
  });

  it("stays the text for anything else: words, arrays, scalars, broken JSON, null", () => {
    for (const text of ["failed", "[1,2]", "42", '"quoted"', "{broken", "{}x", ' {"a":1}', ""]) expect(sent(text), text).toBe(text);
    expect(sent(null)).toBeNull();
  });

  it("stays the text when an integer in it is too long for JSON.parse to keep exactly", () => {
    const text = '{"run_id":1234567890123456789}';
    expect(sent(text)).toBe(text);
    expect(sent('{"run_id":123456789012345}')).toEqual({ run_id: 123456789012345 });
  });

  it("caps an oversized object as an object, so the column stays valid JSON", () => {
    const record = toSentinelRecord(withResult(JSON.stringify({ big: "x".repeat(50_000), small: 1 })));
    const value = record.ResponseResult as Record<string, unknown>;
    expect(typeof value).toBe("object");
    expect(value.small).toBe(1);
    expect(Buffer.byteLength(JSON.stringify(value))).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(String(value.big).endsWith(TRUNCATION_MARKER)).toBe(true);
  });
});

describe("sentinelRecordBytes", () => {
  const exact = (e: AuditEvent): number => Buffer.byteLength(JSON.stringify(toSentinelRecord(e)), "utf8");
  const worked = (e: AuditEvent): number => sentinelRecordBytes(e, Buffer.byteLength(JSON.stringify(e), "utf8"));

  it("equals the record's serialized size for every synthetic event", () => {
    let timeUs = Date.UTC(2026, 10, 1) * 1000;
    for (const row of syntheticRows(5_000, { seed: 7 })) {
      const { event } = eventFromRow({ ...row, event_time_us: (timeUs += 1_234_567) });
      expect(worked(event)).toBe(exact(event));
    }
  });

  it("equals it for nulls, escapes, non-ASCII text and capped values", () => {
    for (const variant of variants()) expect(worked(variant)).toBe(exact(variant));
  });

  it("is what prepareEvents records, so calls are cut on the true sizes of the records sent", () => {
    const prepared = prepareEvents([{ timeUs: 1, eventId: event.event_id, event }], { redaction: [{ key: "user", action: "mask" }], ingestionOn: true })[0]!;
    const sent = sentinelRecordFromLine(prepared.line);
    expect(prepared.recordBytes).toBe(Buffer.byteLength(JSON.stringify(sent), "utf8"));
    expect(sent.RequestParams?.user).toBe(REDACTED);
  });

  it("builds from the archive line the record toSentinelRecord makes of the event", () => {
    for (const variant of variants()) {
      const { line } = prepareEvents([{ timeUs: 1, eventId: variant.event_id, event: variant }], { redaction: [], ingestionOn: true })[0]!;
      expect(JSON.stringify(sentinelRecordFromLine(line))).toBe(JSON.stringify(toSentinelRecord(variant)));
    }
  });
});

describe("sentinelRecordBytes over generated shapes", () => {
  const exact = (e: AuditEvent): number => Buffer.byteLength(JSON.stringify(toSentinelRecord(e)), "utf8");
  /** A small deterministic generator (mulberry32), so a failure repeats. */
  const random = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const next = random(20261206);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const pieces = ["a", "plain text", 'quote"', "back\\slash", "\n\t\r", "\u0001\u001f", "é", "名前", "😀", "\ud800", "\u007f", "/", " "];
  const text = (): string | null => {
    const roll = next();
    if (roll < 0.15) return null;
    if (roll < 0.2) return "";
    if (roll < 0.22) {
      // 20-60 KB of JSON: under or over the cap.
      const piece = pick(pieces);
      return piece.repeat(Math.ceil((20_000 + next() * 40_000) / (Buffer.byteLength(JSON.stringify(piece)) - 2)));
    }
    return Array.from({ length: 1 + Math.floor(next() * 6) }, () => pick(pieces)).join("");
  };
  const anyValue = (depth = 0): unknown => {
    const roll = next();
    if (roll < 0.3) return text();
    if (roll < 0.4) return Math.floor(next() * 1e6) - 5e5;
    if (roll < 0.45) return next() * 1e-3;
    if (roll < 0.5) return next() < 0.5;
    if (roll < 0.6 || depth > 2) return null;
    if (roll < 0.8) return Object.fromEntries(Array.from({ length: Math.floor(next() * 4) }, (_, i) => [`${pick(pieces)}${i}`, anyValue(depth + 1)]));
    return Array.from({ length: Math.floor(next() * 4) }, () => anyValue(depth + 1));
  };
  const extras = (target: Record<string, unknown>, prefix: string): boolean => {
    if (next() < 0.6) return false;
    for (let i = 0, n = 1 + Math.floor(next() * 3); i < n; i++) target[`${prefix}${pick(pieces)}${i}`] = anyValue();
    return true;
  };
  const generated = (): { event: AuditEvent; exact: boolean } => {
    const identity = next() < 0.15 ? null : { email: text(), subject_name: text() };
    const response = next() < 0.15 ? null : { status_code: next() < 0.2 ? null : Math.floor(next() * 600), error_message: text(), result: text() };
    const metadata = next() < 0.3 ? null : { run_by: text(), run_as: text() };
    const params =
      next() < 0.2
        ? null
        : Object.fromEntries(
            next() < 0.03
              ? Array.from({ length: 3000 }, (_, i) => [`${pick(pieces)}${i}`, pick(pieces)])
              : Array.from({ length: Math.floor(next() * 8) }, (_, i) => [`${pick(pieces)}${i}`, text()]),
          );
    const event: AuditEvent = {
      account_id: text(),
      workspace_id: text(),
      version: text(),
      event_time: "2026-01-02T03:04:05.123456Z",
      event_date: next() < 0.1 ? null : "2026-01-02",
      source_ip_address: text(),
      user_agent: text(),
      session_id: text(),
      user_identity: identity,
      service_name: text(),
      action_name: text(),
      request_id: text(),
      request_params: params,
      response,
      audit_level: text(),
      event_id: text() ?? "id",
      identity_metadata: metadata,
    };
    if (identity) extras(identity, "ui_");
    if (metadata) extras(metadata, "im_");
    // Columns the record does not declare, and fields inside response (flattened away): the line carries them, the record not.
    const responseExtras = response ? extras(response, "rs_") : false;
    const columnExtras = extras(event as unknown as Record<string, unknown>, "col_");
    return { event, exact: !responseExtras && !columnExtras };
  };

  it("is exact, or an over-estimate where the line carries what the record does not, for every shape", () => {
    let overEstimates = 0;
    for (let n = 0; n < 1_000; n++) {
      const { event, exact: shouldBeExact } = generated();
      const [prepared] = prepareEvents([{ timeUs: 1, eventId: event.event_id, event }], { redaction: [], ingestionOn: true });
      const sent = sentinelRecordFromLine(prepared!.line);
      const actual = Buffer.byteLength(JSON.stringify(sent), "utf8");
      expect(actual).toBe(exact(event));
      expect(actual).toBeLessThan(1_000_000);
      if (shouldBeExact || prepared!.line.byteLength > MAX_FIELD_BYTES) expect(prepared!.recordBytes).toBe(actual);
      else expect(prepared!.recordBytes).toBeGreaterThanOrEqual(actual);
      if (prepared!.recordBytes > actual) overEstimates += 1;
    }
    expect(overEstimates).toBeGreaterThan(50);
  });
});

describe("BatchBuilder", () => {
  const event = (i: number, recordBytes: number): PreparedEvent => ({
    timeUs: i,
    eventId: `e${i}`,
    workspaceId: "1",
    line: new Uint8Array(100),
    recordBytes,
  });
  const build = (sizes: number[], limits: Partial<BatchLimits> = {}) => {
    const builder = new BatchBuilder({ maxEvents: 1000, callsPerBatch: 2, maxArchiveBytes: 1e9, ...limits }, true);
    const batches = sizes.flatMap((size, i) => builder.add(event(i, size)) ?? []);
    const last = builder.flush();
    return last ? [...batches, last] : batches;
  };

  it("cuts calls exactly where the Logs Ingestion client would (record sizes summing below 1,000,000 bytes)", () => {
    const [batch] = build(Array.from({ length: 18 }, () => 100_000));
    expect(batch!.calls!.map((c) => c.end - c.start)).toEqual([9, 9]);
  });

  it("fills whole calls per batch, so only the last call of a run is partly empty", () => {
    const batches = build(Array.from({ length: 40 }, () => 100_000));
    expect(batches.map((b) => b.events.length)).toEqual([18, 18, 4]);
    expect(batches.map((b) => b.calls!.length)).toEqual([2, 2, 1]);
    expect(batches[1]!.events[0]!.eventId).toBe("e18");
  });

  it("keeps a single oversized record in a call of its own", () => {
    const [batch] = build([10, 2_000_000, 10], { callsPerBatch: 5 });
    expect(batch!.calls).toEqual([
      { start: 0, end: 1 },
      { start: 1, end: 2 },
      { start: 2, end: 3 },
    ]);
  });

  it("bounds events per batch, and archive bytes when Log Analytics is off", () => {
    expect(
      build(
        Array.from({ length: 25 }, () => 10),
        { maxEvents: 10 },
      ).map((b) => b.events.length),
    ).toEqual([10, 10, 5]);
    const off = new BatchBuilder({ maxEvents: 1000, callsPerBatch: 2, maxArchiveBytes: 250 }, false);
    const batches = [0, 1, 2, 3, 4].flatMap((i) => off.add(event(i, 0)) ?? []);
    expect(batches.map((b) => [b.events.length, b.calls])).toEqual([
      [2, null],
      [2, null],
    ]);
  });
});
