import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../shared/auditEvent";
import { capDynamic, capText, truncateJson } from "../../shared/fieldCaps";
import {
  MAX_FIELD_BYTES,
  MAX_RECORD_BYTES,
  OMITTED_KEYS_PARAM,
  OMITTED_KEY_COUNT_PARAM,
  TRUNCATED_KEYS_PARAM,
  TRUNCATION_MARKER,
  sentinelRecordBytes,
  sentinelRecordFromLine,
  toSentinelRecord,
  type SentinelAuditRecord,
} from "../../shared/sentinelRecord";
import { prepareEvents } from "../../shared/export/batching";

const base: AuditEvent = {
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

const bytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value), "utf8");
/** Over the cap however it is counted: escapes (6 bytes of JSON each), non-ASCII, plain. */
const huge = (n = 100_000): string => `${"\u0001".repeat(n / 4)}${"é".repeat(n / 4)}${"\n".repeat(n / 4)}${"x".repeat(n / 4)}`;

/** What every record must be: each value under the cap, the whole under 1 MB, its size known exactly. */
function expectValid(event: AuditEvent): SentinelAuditRecord {
  const record = toSentinelRecord(event);
  for (const [column, value] of Object.entries(record)) {
    expect(bytes(value), column).toBeLessThanOrEqual(MAX_FIELD_BYTES);
  }
  expect(bytes(record)).toBeLessThan(MAX_RECORD_BYTES);
  expect(sentinelRecordBytes(event, bytes(event))).toBe(bytes(record));
  // And the record sent (built from the archive line) is that record.
  const [prepared] = prepareEvents([{ timeUs: 1, eventId: event.event_id, event }], { redaction: [], ingestionOn: true });
  expect(JSON.stringify(sentinelRecordFromLine(prepared!.line))).toBe(JSON.stringify(record));
  return record;
}

describe("string columns", () => {
  const cases: [string, (value: string) => AuditEvent, (record: SentinelAuditRecord) => unknown][] = [
    ["SchemaVersion", (v) => ({ ...base, version: v }), (r) => r.SchemaVersion],
    ["AuditLevel", (v) => ({ ...base, audit_level: v }), (r) => r.AuditLevel],
    ["AccountId", (v) => ({ ...base, account_id: v }), (r) => r.AccountId],
    ["WorkspaceId", (v) => ({ ...base, workspace_id: v }), (r) => r.WorkspaceId],
    ["ServiceName", (v) => ({ ...base, service_name: v }), (r) => r.ServiceName],
    ["ActionName", (v) => ({ ...base, action_name: v }), (r) => r.ActionName],
    ["RequestId", (v) => ({ ...base, request_id: v }), (r) => r.RequestId],
    ["SessionId", (v) => ({ ...base, session_id: v }), (r) => r.SessionId],
    ["SourceIPAddress", (v) => ({ ...base, source_ip_address: v }), (r) => r.SourceIPAddress],
    ["UserAgent", (v) => ({ ...base, user_agent: v }), (r) => r.UserAgent],
    ["EventId", (v) => ({ ...base, event_id: v }), (r) => r.EventId],
    ["UserEmail", (v) => ({ ...base, user_identity: { email: v, subject_name: "a" } }), (r) => r.UserEmail],
    ["UserSubjectName", (v) => ({ ...base, user_identity: { email: "a", subject_name: v } }), (r) => r.UserSubjectName],
    ["ResponseErrorMessage", (v) => ({ ...base, response: { status_code: 500, error_message: v, result: null } }), (r) => r.ResponseErrorMessage],
    ["ResponseResult", (v) => ({ ...base, response: { status_code: 200, error_message: null, result: v } }), (r) => r.ResponseResult],
  ];
  for (const [column, withValue, read] of cases) {
    it(`${column}: an oversized value keeps its start and ends with the marker`, () => {
      const value = huge();
      const record = expectValid(withValue(value));
      const capped = read(record) as string;
      expect(capped.endsWith(TRUNCATION_MARKER)).toBe(true);
      expect(value.startsWith(capped.slice(0, -TRUNCATION_MARKER.length))).toBe(true);
      // As much as fits: within a character's escape of the cap.
      expect(bytes(capped)).toBeGreaterThan(MAX_FIELD_BYTES - 6);
    });
  }

  it("leaves a value at the cap alone, and caps one a byte over", () => {
    const atCap = "x".repeat(MAX_FIELD_BYTES - 2);
    expect(capText(atCap, MAX_FIELD_BYTES)).toBe(atCap);
    expect(capText(`${atCap}x`, MAX_FIELD_BYTES).endsWith(TRUNCATION_MARKER)).toBe(true);
  });

  it("cuts by JSON bytes, never inside a surrogate pair or an escape", () => {
    expect(truncateJson("ab😀c", 5)).toBe("ab");
    expect(truncateJson("ab😀c", 6)).toBe("ab😀");
    expect(truncateJson('a"b', 2)).toBe("a");
    expect(truncateJson("a\u0001b", 6)).toBe("a");
    expect(truncateJson("a\ud800b", 7)).toBe("a\ud800");
    for (const text of ["plain", huge(400), '名前😀\ud800\udfff\u007f\\"/']) {
      for (let max = 0; max < 80; max++) {
        const cut = truncateJson(text, max);
        expect(text.startsWith(cut)).toBe(true);
        expect(bytes(cut) - 2).toBeLessThanOrEqual(max);
      }
    }
  });
});

describe("dynamic columns", () => {
  it("RequestParams of 10,000 small values comes out under the cap, counting and naming (boundedly) the keys left out", () => {
    const params: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) params[`k${i}`] = "abcde";
    const record = expectValid({ ...base, request_params: params });
    const capped = record.RequestParams!;
    const kept = Object.keys(capped).filter((k) => k.startsWith("k"));
    expect(kept.length).toBeGreaterThan(1000);
    expect(kept).toEqual(Object.keys(params).slice(0, kept.length)); // in their order
    for (const key of kept) expect(capped[key]).toBe("abcde");
    expect(Number(capped[OMITTED_KEY_COUNT_PARAM])).toBe(10_000 - kept.length);
    expect(bytes(capped[OMITTED_KEYS_PARAM])).toBeLessThanOrEqual(1024);
    expect(capped[OMITTED_KEYS_PARAM]!.startsWith(`k${kept.length},k${kept.length + 1},`)).toBe(true);
    expect(capped[OMITTED_KEYS_PARAM]).toMatch(/,…\+\d+$/);
    expect(capped[TRUNCATED_KEYS_PARAM]).toBeUndefined();
  });

  it("RequestParams: long values are cut to one common length, short ones stay whole", () => {
    const record = expectValid({ ...base, request_params: { a: "é".repeat(100_000), b: "\n".repeat(40_000), c: "small", d: "y".repeat(5_000) } });
    const capped = record.RequestParams!;
    expect(capped.c).toBe("small");
    expect(capped.d).toBe("y".repeat(5_000));
    expect(capped[TRUNCATED_KEYS_PARAM]!.split(",").sort()).toEqual(["a", "b"]);
    expect(Math.abs(bytes(capped.a) - bytes(capped.b))).toBeLessThan(8);
  });

  it("RequestParams with huge keys leaves them out, and names them within bounds", () => {
    const hugeKey = "K".repeat(50_000);
    const record = expectValid({ ...base, request_params: { [hugeKey]: "v", ok: "fine" } });
    expect(record.RequestParams!.ok).toBe("fine");
    expect(record.RequestParams![OMITTED_KEY_COUNT_PARAM]).toBe("1");
    expect(record.RequestParams![OMITTED_KEYS_PARAM]).toBe("…+1");
  });

  it("UserIdentity with new fields stays whole when small", () => {
    const identity = { email: "a@example.com", subject_name: "a", display_name: "Ann", groups: ["g1", "g2"], level: 3 };
    const record = expectValid({ ...base, user_identity: identity });
    expect(record.UserIdentity).toEqual(identity);
  });

  it("a huge UserIdentity with new fields: the large values are cut, the small ones and the known fields kept", () => {
    const identity = {
      email: "a@example.com",
      subject_name: "a",
      token_claims: huge(200_000),
      nested: { deep: ["x".repeat(80_000)] },
      flag: true,
      count: 12,
    };
    const record = expectValid({ ...base, user_identity: identity });
    const capped = record.UserIdentity!;
    expect(capped).toMatchObject({ email: "a@example.com", subject_name: "a", flag: true, count: 12 });
    expect((capped.token_claims as string).endsWith(TRUNCATION_MARKER)).toBe(true);
    // A nested value over the cap becomes the start of its JSON text.
    expect((capped.nested as string).startsWith('{"deep":["xxx')).toBe(true);
    expect(capped[TRUNCATED_KEYS_PARAM]).toBe("token_claims,nested");
    expect(record.UserEmail).toBe("a@example.com");
  });

  it("a huge IdentityMetadata", () => {
    const record = expectValid({ ...base, identity_metadata: { run_by: huge(), run_as: huge(), acting_resource: "job/1" } as AuditEvent["identity_metadata"] });
    expect(record.IdentityMetadata!.acting_resource).toBe("job/1");
    expect(record.IdentityMetadata![TRUNCATED_KEYS_PARAM]).toBe("run_by,run_as");
  });

  it("a dynamic value of many new fields of every kind", () => {
    const identity: Record<string, unknown> = { email: "e", subject_name: null };
    for (let i = 0; i < 3000; i++) identity[`f${i}`] = i % 3 === 0 ? i : i % 3 === 1 ? null : { v: "ü".repeat(i % 50) };
    const record = expectValid({ ...base, user_identity: identity as AuditEvent["user_identity"] });
    expect(record.UserIdentity!.email).toBe("e");
    expect(Number(record.UserIdentity![OMITTED_KEY_COUNT_PARAM])).toBeGreaterThan(0);
  });

  it("capDynamic returns a value under the cap as the same object", () => {
    const value = { a: "b" };
    expect(capDynamic(value, MAX_FIELD_BYTES)).toBe(value);
    expect(capDynamic(null, MAX_FIELD_BYTES)).toBeNull();
  });

  it("caps to any limit, however small", () => {
    const params: Record<string, string> = {};
    for (let i = 0; i < 500; i++) params[`key-${i}`] = "v".repeat(i * 10);
    for (const limit of [1024, 2048, 4096, 10_000]) expect(bytes(capDynamic(params, limit))).toBeLessThanOrEqual(limit);
  });
});

describe("the whole record", () => {
  it("stays under 1 MB when every field is over the cap", () => {
    const big = (): string => huge(120_000);
    const params: Record<string, string> = {};
    for (let i = 0; i < 20; i++) params[`p${i}`] = big();
    const record = expectValid({
      account_id: big(),
      workspace_id: big(),
      version: big(),
      event_time: base.event_time,
      event_date: base.event_date,
      source_ip_address: big(),
      user_agent: big(),
      session_id: big(),
      user_identity: { email: big(), subject_name: big(), extra: big() } as AuditEvent["user_identity"],
      service_name: big(),
      action_name: big(),
      request_id: big(),
      request_params: params,
      response: { status_code: 500, error_message: big(), result: big() },
      audit_level: big(),
      event_id: big(),
      identity_metadata: { run_by: big(), run_as: big() },
    });
    expect(bytes(record)).toBeGreaterThan(500_000);
  });
});
