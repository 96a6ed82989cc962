import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DBSQLClient } from "@databricks/sql";
import type IDBSQLSession from "@databricks/sql/dist/contracts/IDBSQLSession";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_COLUMNS, BASE_SCHEMA } from "../../sandbox/sqlWarehouse/auditTable";
import { AuditRowError, inferType, sparkTypeOf } from "../../sandbox/sqlWarehouse/schemaEvolution";
import { startSqlWarehouse, type SqlWarehouse } from "../../sandbox/sqlWarehouse/server";
import { loadEventsFile } from "../../sandbox/stack";
import { ensureLocalTls, type LocalTls } from "../../sandbox/tls";

// Through the real driver, as the exporter reads.
process.env.DATABRICKS_TELEMETRY_DISABLED = "true";

const TOKEN = `dapi${randomBytes(16).toString("hex")}`;
const NO_GRANT_TOKEN = `dapi${randomBytes(16).toString("hex")}`;

let tls: LocalTls;
let warehouse: SqlWarehouse;
let port: number;
let client: DBSQLClient;
let session: IDBSQLSession;

beforeAll(async () => {
  tls = await ensureLocalTls();
  warehouse = await startSqlWarehouse({ tls: { cert: tls.cert, key: tls.key }, token: TOKEN, noGrantToken: NO_GRANT_TOKEN, port: 0 });
  port = Number(warehouse.serverHostname.split(":")[1]);
  client = new DBSQLClient({ logger: { log: () => undefined } });
  client.on("error", () => undefined);
  await client.connect({
    host: "127.0.0.1",
    port,
    path: warehouse.httpPath,
    authType: "access-token",
    token: TOKEN,
    telemetryEnabled: false,
    customCaCert: Buffer.from(tls.cert),
  });
  session = await client.openSession();
});

afterAll(async () => {
  await session?.close().catch(() => undefined);
  await client?.close().catch(() => undefined);
  await warehouse?.close();
});

async function query(sql: string): Promise<Record<string, unknown>[]> {
  const operation = await session.executeStatement(sql);
  try {
    return (await operation.fetchAll()) as Record<string, unknown>[];
  } finally {
    await operation.close().catch(() => undefined);
  }
}

function post(body: string): Promise<{ status: number; body: { appended?: number; error?: string } }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/admin/events", method: "POST", ca: tls.cert, headers: { "Content-Length": String(Buffer.byteLength(body)) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as { appended?: number; error?: string } }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const jsonl = (rows: object[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const byId = async (): Promise<Map<string, Record<string, unknown>>> =>
  new Map((await query("SELECT * FROM system.access.audit ORDER BY event_id")).map((r) => [r.event_id as string, r]));

describe("inferring a new column's type", () => {
  it("types JSON values as Databricks would declare them", () => {
    const cases: [unknown, string][] = [
      ["text", "string"],
      [42, "bigint"],
      [4.5, "double"],
      [2 ** 60, "double"],
      [true, "boolean"],
      [{ kind: "job", id: 5, tags: ["a"], owner: null }, "struct<kind:string,id:bigint,tags:array<string>,owner:string>"],
      [[{ a: 1 }], "array<struct<a:bigint>>"],
      [[], "array<string>"],
    ];
    for (const [value, spark] of cases) expect(sparkTypeOf(inferType(value, "c")!)).toBe(spark);
    expect(inferType(null, "c")).toBeUndefined();
    expect(() => inferType({}, "c")).toThrow(AuditRowError);
  });

  it("describes today's columns as the documented Databricks types", () => {
    expect(BASE_SCHEMA.columns.map((c) => sparkTypeOf(c.duckType))).toEqual(AUDIT_COLUMNS.map((c) => c.sparkType));
  });
});

describe("a table that gains columns and struct fields", () => {
  it("adds a new top-level column and new struct fields from POST /admin/events; earlier rows read NULL", async () => {
    expect(
      await post(jsonl([{ event_time: "2024-08-01T00:00:00Z", event_id: "ev-0", user_identity: { email: "old@example.com", subject_name: null } }])),
    ).toEqual({
      status: 200,
      body: { appended: 1 },
    });
    const added = {
      event_time: "2024-08-01T00:00:01Z",
      event_id: "ev-1",
      user_identity: { email: "a@example.com", subject_name: null, display_name: "Ann" },
      response: { status_code: 403, error_message: "no", result: null, error_class: "PERMISSION_DENIED" },
      identity_metadata: { run_by: "x", run_as: "y", acting_resource: { kind: "job", id: 5 } },
      workspace_tier: "premium",
      risk_score: 7,
      confidence: 0.25,
      is_internal: true,
      tags: ["a", "b"],
      client_info: { os: "linux", build: 123 },
      not_yet_typed: null,
    };
    expect(await post(jsonl([added]))).toEqual({ status: 200, body: { appended: 1 } });

    const rows = await byId();
    const row = rows.get("ev-1")!;
    expect(Object.keys(row)).toEqual([...AUDIT_COLUMNS.map((c) => c.name), "workspace_tier", "risk_score", "confidence", "is_internal", "tags", "client_info"]);
    // What the driver returns for each type through the stand-in's Arrow results.
    expect(row).toMatchObject({
      user_identity: { email: "a@example.com", subject_name: null, display_name: "Ann" },
      response: { status_code: 403, error_message: "no", result: null, error_class: "PERMISSION_DENIED" },
      identity_metadata: { run_by: "x", run_as: "y", acting_resource: { kind: "job", id: 5 } },
      workspace_tier: "premium",
      risk_score: 7,
      confidence: 0.25,
      is_internal: true,
      tags: ["a", "b"],
      client_info: { os: "linux", build: 123 },
    });
    expect(rows.get("ev-0")).toMatchObject({
      user_identity: { email: "old@example.com", subject_name: null, display_name: null },
      response: null,
      workspace_tier: null,
      client_info: null,
    });

    const describe = await query("DESCRIBE TABLE system.access.audit");
    expect(describe.find((c) => c.col_name === "user_identity")?.data_type).toBe("struct<email:string,subject_name:string,display_name:string>");
    expect(describe.find((c) => c.col_name === "response")?.data_type).toBe("struct<status_code:int,error_message:string,result:string,error_class:string>");
    expect(describe.slice(AUDIT_COLUMNS.length).map((c) => [c.col_name, c.data_type])).toEqual([
      ["workspace_tier", "string"],
      ["risk_score", "bigint"],
      ["confidence", "double"],
      ["is_internal", "boolean"],
      ["tags", "array<string>"],
      ["client_info", "struct<os:string,build:bigint>"],
    ]);
    const probe = await session.executeStatement("SELECT * FROM system.access.audit LIMIT 0");
    const schema = await probe.getSchema();
    await probe.close();
    expect(schema?.columns.map((c) => c.columnName).slice(AUDIT_COLUMNS.length)).toEqual([
      "workspace_tier",
      "risk_score",
      "confidence",
      "is_internal",
      "tags",
      "client_info",
    ]);

    // The export's query reads them all.
    const [exported] = await query("SELECT *, unix_micros(event_time) AS event_time_us FROM system.access.audit WHERE event_id = 'ev-1'");
    expect(Object.keys(exported!).slice(-2)).toEqual(["client_info", "event_time_us"]);
  });

  it("refuses a value of another type, or a name differing only in case, naming the line and the column; nothing of the body is kept", async () => {
    const before = await warehouse.rowCount();
    const good = { event_time: "2024-08-01T00:00:02Z", event_id: "ev-2", risk_score: 1 };
    const wrongType = await post(jsonl([good, { event_time: "2024-08-01T00:00:03Z", event_id: "ev-3", risk_score: "high" }]));
    expect(wrongType.status).toBe(400);
    expect(wrongType.body.error).toMatch(/^line 2: risk_score: expected an integer or null \(the column is BIGINT\), got string "high"/);
    const wrongField = await post(jsonl([{ event_time: "2024-08-01T00:00:03Z", event_id: "ev-3", client_info: { os: 1 } }]));
    expect(wrongField.body.error).toMatch(/^line 1: client_info\.os: expected a string/);
    const caseClash = await post(`\n${jsonl([good, { event_time: "2024-08-01T00:00:03Z", event_id: "ev-3", Risk_Score: 2, brand_new: "x" }])}`);
    expect(caseClash.body.error).toBe("line 3: column 'Risk_Score' differs from the existing 'risk_score' only in case");
    expect(await warehouse.rowCount()).toBe(before);
    // The refused body's other new column was not added either.
    expect((await query("DESCRIBE TABLE system.access.audit")).map((c) => c.col_name)).not.toContain("brand_new");
  });

  it("loads an --events file with new columns and fields, and synthetic rows after them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dbx-audit-evolution-"));
    const file = join(dir, "events.jsonl");
    writeFileSync(
      file,
      jsonl([
        {
          event_time: "2024-08-02T00:00:00Z",
          event_id: "file-1",
          user_identity: { email: "f@example.com", subject_name: null, auth_method: "oauth" },
          region: "westeurope",
        },
        { event_time: "2024-08-02T00:00:01Z", event_id: "file-2", risk_score: 3 },
      ]),
    );
    expect(await loadEventsFile(warehouse, file)).toBe(2);
    expect(await warehouse.appendSynthetic(20, { seed: 3, start: new Date("2024-08-03T00:00:00Z"), end: new Date("2024-08-04T00:00:00Z") })).toBe(20);
    const rows = await byId();
    expect(rows.get("file-1")).toMatchObject({
      user_identity: { email: "f@example.com", subject_name: null, display_name: null, auth_method: "oauth" },
      region: "westeurope",
    });
    expect(rows.get("file-2")).toMatchObject({ risk_score: 3, region: null });
    expect(rows.get("ev-1")).toMatchObject({ region: null, user_identity: { auth_method: null } });
    expect(await warehouse.rowCount()).toBe(2 + 2 + 20);

    writeFileSync(file, jsonl([{ event_time: "2024-08-02T00:00:02Z", event_id: "file-3", region: 5 }]));
    await expect(loadEventsFile(warehouse, file)).rejects.toThrow(/row 1: region: expected a string/);
  });
});
