import { describe, expect, it } from "vitest";
import { AUDIT_COLUMNS, eventFromRow, shapeOf, toJsonValue } from "../../shared/auditEvent";
import { scanQuery } from "../../shared/auditQueries";
import { prepareRows } from "../../shared/databricks";
import { lineText } from "../../shared/sentinelRecord";

/** A row as the driver returns it for today's table (the export query adds event_time_us). */
const row = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  account_id: "acc",
  workspace_id: "123",
  version: "2.0",
  event_time: new Date("2024-09-01T00:00:00.000Z"),
  event_date: new Date("2024-09-01T00:00:00.000Z"),
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
  ...extra,
  event_time_us: 1_725_148_800_000_001,
});

/** The archive's line for that row, as it has always been written. */
const TODAYS_LINE =
  '{"account_id":"acc","workspace_id":"123","version":"2.0","event_time":"2024-09-01T00:00:00.000001Z","event_date":"2024-09-01",' +
  '"source_ip_address":"10.0.0.1","user_agent":"curl","session_id":null,"user_identity":{"email":"a@example.com","subject_name":null},' +
  '"service_name":"accounts","action_name":"login","request_id":"r","request_params":{"user":"a"},' +
  '"response":{"status_code":200,"error_message":null,"result":null},"audit_level":"ACCOUNT_LEVEL","event_id":"e0","identity_metadata":null}';

const PLAIN = { redaction: [], ingestionOn: true };

describe("eventFromRow", () => {
  it("writes a row of today's table exactly as before, without the helper column", () => {
    expect(JSON.stringify(eventFromRow(row()).event)).toBe(TODAYS_LINE);
    expect(prepareRows([row(), row()], PLAIN).map((p) => lineText(p.line))).toEqual([`${TODAYS_LINE}\n`, `${TODAYS_LINE}\n`]);
  });

  it("keeps columns Databricks adds, after the known ones, in the result's order, with their values as JSON keeps them", () => {
    const added = {
      zeta_text: "z",
      alpha_count: 7,
      big_id: 2n ** 60n,
      small_id: 42n,
      seen_at: new Date("2024-09-01T01:02:03.456Z"),
      flag: false,
      ratio: Number.NaN,
      payload: Buffer.from("hi"),
      labels: new Map<string, unknown>([
        ["k", "v"],
        ["__proto__", 1],
      ]),
      nested: { inner: { when: new Date(0), ids: [1n, null, "x"] } },
      nothing: null,
    };
    const event = eventFromRow(row(added)).event as unknown as Record<string, unknown>;
    expect(Object.keys(event)).toEqual([...AUDIT_COLUMNS, ...Object.keys(added)]);
    expect(JSON.parse(JSON.stringify(event))).toMatchObject({
      zeta_text: "z",
      alpha_count: 7,
      big_id: "1152921504606846976",
      small_id: 42,
      seen_at: "2024-09-01T01:02:03.456Z",
      flag: false,
      ratio: "NaN",
      payload: "aGk=",
      labels: { k: "v", ["__proto__"]: 1 },
      nested: { inner: { when: "1970-01-01T00:00:00.000Z", ids: [1, null, "x"] } },
      nothing: null,
    });
    expect(JSON.stringify(event).startsWith(TODAYS_LINE.slice(0, -1))).toBe(true);
    expect(event).not.toHaveProperty("event_time_us");
  });

  it("keeps fields Databricks adds inside user_identity, response and identity_metadata, after the known ones", () => {
    const { event } = eventFromRow(
      row({
        user_identity: { email: "a@example.com", subject_name: null, display_name: "Ann", groups: ["g"] },
        response: { status_code: 403, error_message: "no", result: null, error_class: "PERMISSION_DENIED", retry_after_ms: 10n },
        identity_metadata: { run_by: "x", run_as: "y", acting_resource: { kind: "job", id: 5 } },
      }),
    );
    expect(JSON.stringify(event.user_identity)).toBe('{"email":"a@example.com","subject_name":null,"display_name":"Ann","groups":["g"]}');
    expect(JSON.stringify(event.response)).toBe('{"status_code":403,"error_message":"no","result":null,"error_class":"PERMISSION_DENIED","retry_after_ms":10}');
    expect(JSON.stringify(event.identity_metadata)).toBe('{"run_by":"x","run_as":"y","acting_resource":{"kind":"job","id":5}}');
  });

  it("finds a result's added columns and fields once, from its first row and each struct's first value", () => {
    const rows = [
      row({ new_col: 1, identity_metadata: null }),
      row({ new_col: 2, identity_metadata: { run_by: "x", run_as: null, acting_resource: "job" } }),
      row({ new_col: null, identity_metadata: { run_by: "y", run_as: null, acting_resource: null } }),
    ];
    expect(shapeOf(rows)).toEqual({ extraColumns: ["new_col"], userIdentityExtras: [], responseExtras: [], identityMetadataExtras: ["acting_resource"] });
    const lines = prepareRows(rows, PLAIN).map((p) => JSON.parse(lineText(p.line)) as Record<string, unknown>);
    expect(lines.map((l) => l.new_col)).toEqual([1, 2, null]);
    expect(lines.map((l) => l.identity_metadata)).toEqual([
      null,
      { run_by: "x", run_as: null, acting_resource: "job" },
      { run_by: "y", run_as: null, acting_resource: null },
    ]);
  });

  it("reads structs sent as JSON text too", () => {
    const { event } = eventFromRow(row({ user_identity: '{"email":"e","subject_name":"s","extra":1}' }));
    expect(event.user_identity).toEqual({ email: "e", subject_name: "s", extra: 1 });
  });

  it("converts any value to what JSON keeps", () => {
    expect(toJsonValue(undefined)).toBeNull();
    expect(toJsonValue(Number.POSITIVE_INFINITY)).toBe("Infinity");
    expect(toJsonValue(new Date(Number.NaN))).toBeNull();
    expect(toJsonValue(-(2n ** 63n))).toBe("-9223372036854775808");
    expect(toJsonValue(new Uint8Array([0xff, 0x00]))).toBe("/wA=");
  });
});

describe("the export query", () => {
  it("reads every column the table has, plus event_time in microseconds, in export order", () => {
    const { sql } = scanQuery({ services: "all", workspaceIds: [], includeAccountLevel: true }, { timeUs: 0, eventId: "" }, 10);
    expect(sql.startsWith("SELECT *, unix_micros(event_time) AS event_time_us FROM system.access.audit WHERE ")).toBe(true);
    expect(sql.endsWith(" ORDER BY event_time, event_id")).toBe(true);
  });
});
