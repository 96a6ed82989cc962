import { randomBytes } from "node:crypto";
import { request } from "node:https";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { DBSQLClient } from "@databricks/sql";
import type IDBSQLSession from "@databricks/sql/dist/contracts/IDBSQLSession";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSqlWarehouse, type SqlWarehouse } from "../../sandbox/sqlWarehouse/server";
import { syntheticRows } from "../../sandbox/sqlWarehouse/synthetic";
import { ensureLocalTls, type LocalTls } from "../../sandbox/tls";
import { AUDIENCE, issueToken } from "../../sandbox/tokens";

// Every test goes through the real driver (@databricks/sql), as the exporter does.
process.env.DATABRICKS_TELEMETRY_DISABLED = "true";

const TOKEN = `dapi${randomBytes(16).toString("hex")}`;
const NO_GRANT_TOKEN = `dapi${randomBytes(16).toString("hex")}`;
const SEED = 20240501;
const START = new Date("2024-05-01T00:00:00Z");
const END = new Date("2024-05-02T00:00:00Z");
const SYNTHETIC = 2_000;

const silentLogger = { log: () => undefined };

let tls: LocalTls;
let warehouse: SqlWarehouse;
let port: number;

type ConnectOptions = Partial<Parameters<DBSQLClient["connect"]>[0]>;

async function connect(options: ConnectOptions = {}): Promise<{ client: DBSQLClient; session: IDBSQLSession; close: () => Promise<void> }> {
  const client = new DBSQLClient({ logger: silentLogger });
  client.on("error", () => undefined);
  await client.connect({
    host: "127.0.0.1",
    port,
    path: warehouse.httpPath,
    authType: "access-token",
    token: TOKEN,
    telemetryEnabled: false,
    ...options,
  } as Parameters<DBSQLClient["connect"]>[0]);
  try {
    const session = await client.openSession();
    return {
      client,
      session,
      close: async () => {
        await session.close().catch(() => undefined);
        await client.close().catch(() => undefined);
      },
    };
  } catch (error) {
    await client.close().catch(() => undefined);
    throw error;
  }
}

type Parameter = string | number | boolean | Date;

async function query(session: IDBSQLSession, sql: string, namedParameters?: Record<string, Parameter>): Promise<Record<string, unknown>[]> {
  const operation = await session.executeStatement(sql, namedParameters ? { namedParameters } : {});
  try {
    return (await operation.fetchAll()) as Record<string, unknown>[];
  } finally {
    await operation.close().catch(() => undefined);
  }
}

/** A raw HTTPS request to the stand-in (admin endpoints, or Thrift without the driver). */
function raw(method: string, path: string, body = "", headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method, ca: tls.cert, headers: { "Content-Length": String(Buffer.byteLength(body)), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A forced GC (exposed at runtime, so no extra node flag is needed). */
function gcFunction(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

beforeAll(async () => {
  tls = await ensureLocalTls();
  warehouse = await startSqlWarehouse({ tls: { cert: tls.cert, key: tls.key }, token: TOKEN, noGrantToken: NO_GRANT_TOKEN, port: 0 });
  port = Number(warehouse.serverHostname.split(":")[1]);
  expect(warehouse.serverHostname).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(warehouse.httpPath).toMatch(/^\/sql\/1\.0\/warehouses\/[0-9a-f]{16}$/);
  expect(await warehouse.appendSynthetic(SYNTHETIC, { seed: SEED, start: START, end: END })).toBe(SYNTHETIC);
});

afterAll(async () => {
  await warehouse?.close();
});

describe("SQL warehouse stand-in through the real driver", () => {
  it("runs a query with named parameters, the exporter's way", async () => {
    const expected = [...syntheticRows(SYNTHETIC, { seed: SEED, start: START, end: END })];
    const services = ["accounts", "secrets"];
    const fromUs = Date.parse("2024-05-01T06:00:00Z") * 1000;
    const toUs = Date.parse("2024-05-01T18:00:00Z") * 1000;
    const us = (iso: string) => Date.parse(iso) * 1000 + Number(iso.slice(23, 26));
    const want = expected
      .filter((r) => services.includes(r.service_name ?? "") && us(r.event_time) >= fromUs && us(r.event_time) < toUs)
      .sort((a, b) => us(a.event_time) - us(b.event_time) || (a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0));
    expect(want.length).toBeGreaterThan(50);

    const { session, close } = await connect();
    try {
      const rows = await query(
        session,
        `SELECT account_id, workspace_id, version, event_time, unix_micros(event_time) AS event_time_us, event_date,
                source_ip_address, user_agent, session_id, user_identity, service_name, action_name, request_id,
                request_params, response, audit_level, event_id, identity_metadata
         FROM system.access.audit
         WHERE event_date >= CAST(:start_date AS DATE) AND event_date <= CAST(:end_date AS DATE)
           AND event_time >= timestamp_micros(CAST(:start_us AS BIGINT)) AND event_time < timestamp_micros(CAST(:end_us AS BIGINT))
           AND (event_time > timestamp_micros(CAST(:after_us AS BIGINT)) OR (event_time = timestamp_micros(CAST(:after_us AS BIGINT)) AND event_id > :after_id))
           AND service_name IN (:svc_0, :svc_1) AND (workspace_id IN (:ws_0, :ws_1, :ws_2, :ws_3) OR workspace_id = '0')
         ORDER BY event_time, event_id`,
        {
          start_date: "2024-05-01",
          end_date: "2024-05-01",
          start_us: String(fromUs),
          end_us: String(toUs),
          after_us: String(fromUs),
          after_id: "",
          svc_0: services[0]!,
          svc_1: services[1]!,
          ws_0: "1234567890123456",
          ws_1: "2345678901234567",
          ws_2: "3456789012345678",
          ws_3: "4567890123456789",
        },
      );
      expect(rows.map((r) => r.event_id)).toEqual(want.map((r) => r.event_id));
      expect(rows.map((r) => r.event_time_us)).toEqual(want.map((r) => us(r.event_time)));

      // Paging after a key in the middle of a tie: strictly after (time, id).
      const tieIndex = want.findIndex((r, i) => i > 0 && want[i - 1]!.event_time === r.event_time);
      expect(tieIndex).toBeGreaterThan(0);
      const key = want[tieIndex]!;
      const after = await query(
        session,
        `SELECT event_id FROM system.access.audit
         WHERE (event_time > timestamp_micros(CAST(:after_us AS BIGINT)) OR (event_time = timestamp_micros(CAST(:after_us AS BIGINT)) AND event_id > :after_id))
           AND event_time < timestamp_micros(CAST(:end_us AS BIGINT)) AND service_name IN (:svc_0, :svc_1)
         ORDER BY event_time, event_id`,
        { after_us: String(us(key.event_time)), after_id: key.event_id, end_us: String(toUs), svc_0: services[0]!, svc_1: services[1]! },
      );
      expect(after.map((r) => r.event_id)).toEqual(want.slice(tieIndex + 1).map((r) => r.event_id));

      // Typed parameters (INTEGER, BIGINT, DOUBLE, BOOLEAN, TIMESTAMP) bind as their types.
      const [typed] = await query(session, "SELECT :i + 1 AS i, :b * 2 AS b, :d / 2 AS d, NOT :t AS t, unix_micros(:ts) AS ts", {
        i: 41,
        b: 4_000_000_000,
        d: 1.5,
        t: true,
        ts: new Date("2024-05-01T12:00:00.123Z"),
      });
      expect(typed).toEqual({ i: 42, b: 8_000_000_000, d: 0.75, t: false, ts: Date.parse("2024-05-01T12:00:00.123Z") * 1000 });

      // A parameter the statement uses but the caller did not bind.
      const operation = await session.executeStatement("SELECT :missing AS m");
      const unbound = (await operation.fetchAll().catch((e: unknown) => e)) as { response?: { sqlState?: string } };
      await operation.close().catch(() => undefined);
      expect(unbound.response?.sqlState).toBe("42P02");
    } finally {
      await close();
    }
  });

  it("keeps an injection attempt in a parameter a literal", async () => {
    const before = await warehouse.rowCount();
    const { session, close } = await connect();
    try {
      for (const attack of ["x' OR '1'='1", "'; DROP TABLE system.access.audit; --", "x\\' OR 1=1 --", '" OR ""="']) {
        const rows = await query(session, "SELECT count(*) AS n FROM system.access.audit WHERE event_id = :id OR service_name = :id", { id: attack });
        expect(rows).toEqual([{ n: 0 }]);
        const echoed = await query(session, "SELECT :id AS v", { id: attack });
        expect(echoed).toEqual([{ v: attack }]);
      }
      // Nobody writes to a system table, with or without parameters.
      const op = await session.executeStatement("DELETE FROM system.access.audit WHERE event_id = :id", { namedParameters: { id: "x" } });
      const error = await op.fetchAll().catch((e: unknown) => e);
      await op.close();
      expect((error as { response?: { sqlState?: string } }).response?.sqlState).toBe("42501");
    } finally {
      await close();
    }
    expect(await warehouse.rowCount()).toBe(before);
  });

  // Inline Arrow pages (useCloudFetch: false); cloudFetch.test.ts covers the same through result links.
  it("streams 100k rows in chunks without the heap growing with the result", async () => {
    const start = new Date("2024-06-01T00:00:00Z");
    const end = new Date("2024-06-02T00:00:00Z");
    expect(await warehouse.appendSynthetic(100_000, { seed: 7, start, end })).toBe(100_000);
    const gc = gcFunction();
    const fetchesBefore = warehouse.stats().fetches;
    const { session, close } = await connect();
    try {
      const operation = await session.executeStatement(
        `SELECT *, unix_micros(event_time) AS event_time_us FROM system.access.audit
         WHERE event_time >= timestamp_micros(CAST(:from AS BIGINT)) AND event_time < timestamp_micros(CAST(:to AS BIGINT))
         ORDER BY event_time, event_id`,
        { namedParameters: { from: String(start.getTime() * 1000), to: String(end.getTime() * 1000) }, useCloudFetch: false },
      );
      let total = 0;
      let chunks = 0;
      let lastKey = "";
      const heap: number[] = [];
      do {
        const chunk = (await operation.fetchChunk({ maxRows: 10_000 })) as Record<string, unknown>[];
        expect(chunk.length).toBeLessThanOrEqual(10_000);
        for (const row of chunk) {
          const key = `${String(row.event_time_us).padStart(20, "0")}|${String(row.event_id)}`;
          expect(key > lastKey).toBe(true);
          lastKey = key;
        }
        total += chunk.length;
        chunks += 1;
        if (chunks % 2 === 0) {
          gc();
          heap.push(process.memoryUsage().heapUsed);
        }
      } while (await operation.hasMoreRows());
      await operation.close();
      expect(total).toBe(100_000);
      expect(chunks).toBeGreaterThanOrEqual(10);
      expect(warehouse.stats().fetches - fetchesBefore).toBeGreaterThanOrEqual(10);
      // 100k materialised rows would hold well over 100 MB; streaming keeps the heap flat.
      const growth = Math.max(...heap.slice(1)) - heap[0]!;
      expect(growth).toBeLessThan(48 * 1024 * 1024);
    } finally {
      await close();
    }
  });

  it("refuses a wrong token with 403 and a missing one with 401", async () => {
    const error = await connect({ token: `dapi${"0".repeat(32)}` }).catch((e: unknown) => e);
    expect((error as { statusCode?: number }).statusCode).toBe(403);

    const noHeader = await raw("POST", warehouse.httpPath, "x", { "Content-Type": "application/x-thrift" });
    expect(noHeader.status).toBe(401);
    const expired = await raw("POST", warehouse.httpPath, "x", { Authorization: `Bearer ${issueToken(AUDIENCE.databricks, -60).token}` });
    expect(expired.status).toBe(403);
    const wrongAudience = await raw("POST", warehouse.httpPath, "x", { Authorization: `Bearer ${issueToken(AUDIENCE.storage, 3600).token}` });
    expect(wrongAudience.status).toBe(403);
    expect((await raw("POST", "/sql/1.0/warehouses/0000000000000000", "x", { Authorization: `Bearer ${TOKEN}` })).status).toBe(404);
    expect((await raw("POST", warehouse.httpPath, "not thrift", { Authorization: `Bearer ${TOKEN}` })).status).toBe(400);
  });

  it("gives the no-grant token a session but INSUFFICIENT_PERMISSIONS on system.access.audit", async () => {
    const { session, close } = await connect({ token: NO_GRANT_TOKEN });
    try {
      expect(await query(session, "SELECT 1 AS one")).toEqual([{ one: 1 }]);
      const operation = await session.executeStatement("SELECT event_id FROM system.access.audit LIMIT 1");
      const error = (await operation.fetchAll().catch((e: unknown) => e)) as Error & { response?: { sqlState?: string; errorMessage?: string } };
      await operation.close().catch(() => undefined);
      // The driver's error classes do not set `name`; the class is OperationStateError.
      expect(error.constructor.name).toBe("OperationStateError");
      expect(error.response?.sqlState).toBe("42501");
      expect(error.message).toMatch(/^\[INSUFFICIENT_PERMISSIONS\] Insufficient privileges: User does not have USE SCHEMA on Schema 'system\.access'\./);
    } finally {
      await close();
    }
  });

  it("reports a SQL error as ERROR_STATE with a sqlState", async () => {
    const { session, close } = await connect();
    try {
      const operation = await session.executeStatement("SELECT no_such_column FROM system.access.audit");
      const error = (await operation.fetchAll().catch((e: unknown) => e)) as Error & { response?: { sqlState?: string } };
      await operation.close().catch(() => undefined);
      // The driver's error classes do not set `name`; the class is OperationStateError.
      expect(error.constructor.name).toBe("OperationStateError");
      expect(error.response?.sqlState).toBe("42703");
      expect(error.message).toMatch(/UNRESOLVED_COLUMN/);
    } finally {
      await close();
    }
  });

  it("surfaces a socket dropped mid-fetch as ECONNRESET", async () => {
    const { session, close } = await connect();
    try {
      // Inline pages: a FetchResults call per chunk (with CloudFetch one call covers a whole file).
      const operation = await session.executeStatement("SELECT * FROM system.access.audit", { useCloudFetch: false });
      await operation.fetchChunk({ maxRows: 1_000 });
      warehouse.setFaults({ dropSocketOnFetch: 1 });
      let error: unknown;
      try {
        for (let i = 0; i < 10 && (await operation.hasMoreRows()); i++) await operation.fetchChunk({ maxRows: 1_000 });
      } catch (e) {
        error = e;
      }
      const e = error as { code?: string; message?: string };
      expect(e.code === "ECONNRESET" || /ECONNRESET|socket hang up/.test(e.message ?? "")).toBe(true);
      await operation.close().catch(() => undefined);
    } finally {
      warehouse.setFaults({});
      await close();
    }
  });

  it("retries 503s on status polls and still answers", async () => {
    const { session, close } = await connect({ retryDelayMin: 10, retryDelayMax: 50 });
    try {
      const polls = warehouse.stats().statusPolls;
      warehouse.setFaults({ statusPoll503: 2 });
      expect(await query(session, "SELECT count(*) AS n FROM system.access.audit WHERE workspace_id = '0'")).toEqual([{ n: expect.any(Number) as number }]);
      expect(warehouse.stats().statusPolls - polls).toBeGreaterThanOrEqual(3);
    } finally {
      warehouse.setFaults({});
      await close();
    }
  });

  it("keeps statements PENDING while the warehouse starts", async () => {
    const { session, close } = await connect();
    try {
      warehouse.setFaults({ coldStartMs: 1_500 });
      const operation = await session.executeStatement("SELECT 42 AS answer");
      const first = await operation.status();
      expect(first.operationState).toBe(7); // PENDING_STATE
      expect(await operation.fetchAll()).toEqual([{ answer: 42 }]);
      await operation.close();
    } finally {
      warehouse.setFaults({});
      await close();
    }
  });

  it("round-trips values exactly", async () => {
    const big = "x".repeat(2 * 1024 * 1024 - 3) + "end";
    const tricky = "José Müller 🚀 中文 'single' \"double\" `back` \\ new\nline\r\ttab \u0000 nul";
    const rows = [
      {
        event_time: "2024-07-01T10:00:00.123456Z",
        event_id: "rt-1",
        account_id: "acc",
        workspace_id: "0",
        user_identity: { email: tricky, subject_name: null },
        service_name: "accounts",
        action_name: "login",
        request_params: { big, empty: "", nothing: null, [tricky]: tricky },
        response: { status_code: 401, error_message: "Invalid credentials", result: null },
        audit_level: "ACCOUNT_LEVEL",
        identity_metadata: { run_by: "a@example.com", run_as: "b@example.com" },
      },
      { event_time: "2024-07-01T12:00:00.000001+02:00", event_id: "rt-2", user_identity: null, request_params: null, response: null, identity_metadata: null },
      { event_time: "2024-07-01T23:59:59.999999Z", event_id: "rt-3", event_date: "2024-07-01", request_params: {}, source_ip_address: "10.0.0.1:51234" },
    ];
    expect(await warehouse.appendRows(rows)).toBe(3);
    const { session, close } = await connect();
    try {
      const result = await query(
        session,
        "SELECT event_id, event_time, unix_micros(event_time) AS us, event_date, user_identity, request_params, response, identity_metadata, source_ip_address, workspace_id FROM system.access.audit WHERE event_id LIKE 'rt-%' ORDER BY event_id",
      );
      expect(result).toHaveLength(3);
      const [a, b, c] = result as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
      expect(a.us).toBe(Date.parse("2024-07-01T10:00:00.123Z") * 1000 + 456);
      expect(a.event_time).toEqual(new Date("2024-07-01T10:00:00.123Z"));
      expect(a.event_date).toEqual(new Date("2024-07-01T00:00:00Z"));
      expect(a.user_identity).toEqual({ email: tricky, subject_name: null });
      expect(a.request_params).toEqual({ big, empty: "", nothing: null, [tricky]: tricky });
      expect(a.response).toEqual({ status_code: 401, error_message: "Invalid credentials", result: null });
      expect(a.identity_metadata).toEqual({ run_by: "a@example.com", run_as: "b@example.com" });
      expect(b.us).toBe(Date.parse("2024-07-01T10:00:00.000Z") * 1000 + 1);
      expect(b.event_date).toEqual(new Date("2024-07-01T00:00:00Z"));
      expect([b.user_identity, b.request_params, b.response, b.identity_metadata, b.workspace_id]).toEqual([null, null, null, null, null]);
      expect(c.us).toBe(Date.parse("2024-07-01T23:59:59.999Z") * 1000 + 999);
      expect(c.request_params).toEqual({});
      expect(c.source_ip_address).toBe("10.0.0.1:51234");

      // Functions bridged from Spark, and element_at on the map.
      const [f] = await query(
        session,
        `SELECT element_at(request_params, 'empty') AS e, request_params['big'] = :big AS same,
                date_format(event_time, 'yyyy-MM-dd HH:mm:ss.SSSSSS') AS formatted,
                action_name RLIKE '^log' AS matches, timestampadd(HOUR, 2, event_time) AS later
         FROM system.access.audit WHERE event_id = 'rt-1'`,
        { big },
      );
      expect(f).toEqual({ e: "", same: true, formatted: "2024-07-01 10:00:00.123456", matches: true, later: new Date("2024-07-01T12:00:00.123Z") });
    } finally {
      await close();
    }
  });

  it("answers with the types Databricks sends, as Arrow or as columns, as the client asks", async () => {
    const sql = `SELECT CAST(1.25 AS DECIMAL(10,2)) AS dec, true AS flag, array(1, 2) AS arr, CAST('ab' AS BINARY) AS bin, 2.5D AS dbl,
                        named_struct('at', event_time, 'code', response.status_code) AS nested, event_time, event_date, request_params
                 FROM system.access.audit WHERE event_id = 'rt-1'`;
    const expectedNative = {
      dec: 1.25,
      flag: true,
      arr: [1, 2],
      bin: Buffer.from("ab"),
      dbl: 2.5,
      nested: { at: new Date("2024-07-01T10:00:00.123Z"), code: 401 },
      event_time: new Date("2024-07-01T10:00:00.123Z"),
      event_date: new Date("2024-07-01T00:00:00Z"),
    };
    const arrow = await connect();
    try {
      const [row] = await query(arrow.session, sql);
      expect({ ...row, request_params: undefined }).toEqual({ ...expectedNative, request_params: undefined });
      expect(Object.keys(row!.request_params as object).sort()).toEqual(["big", "empty", "nothing", expect.any(String) as string].sort());
    } finally {
      await arrow.close();
    }

    // Arrow without native types: timestamps and decimals as strings, complex types as JSON (the driver parses them back).
    const strings = await connect();
    try {
      strings.client.getConfig().useArrowNativeTypes = false;
      const [row] = await query(strings.session, sql);
      expect(row).toMatchObject({
        dec: 1.25,
        flag: true,
        arr: [1, 2],
        event_time: "2024-07-01 10:00:00.123456",
        nested: { at: "2024-07-01 10:00:00.123456", code: 401 },
      });
    } finally {
      await strings.close();
    }

    // No Arrow at all (canReadArrowResult = false): column-based results.
    const columns = await connect();
    try {
      columns.client.getConfig().arrowEnabled = false;
      const [row] = await query(columns.session, sql);
      expect(row).toMatchObject({ dec: 1.25, flag: true, arr: [1, 2], dbl: 2.5, event_time: "2024-07-01 10:00:00.123456", nested: { code: 401 } });
      const many = await query(
        columns.session,
        "SELECT event_id FROM system.access.audit WHERE event_time >= timestamp_micros(CAST(:f AS BIGINT)) AND event_time < timestamp_micros(CAST(:t AS BIGINT))",
        {
          f: String(START.getTime() * 1000),
          t: String(END.getTime() * 1000),
        },
      );
      expect(many).toHaveLength(SYNTHETIC);
    } finally {
      await columns.close();
    }
  });

  it("answers the exporter's other queries: hourly counts, SELECT 1, LIMIT 0 schema, DESCRIBE", async () => {
    const { session, close } = await connect();
    try {
      const hours = await query(
        session,
        `SELECT CAST(floor(unix_micros(event_time) / 3600000000) AS BIGINT) AS hour_index, count(*) AS event_count
         FROM system.access.audit WHERE event_date >= CAST(:d AS DATE) AND event_date <= CAST(:d AS DATE) GROUP BY 1`,
        { d: "2024-05-01" },
      );
      const expected = new Map<number, number>();
      for (const r of syntheticRows(SYNTHETIC, { seed: SEED, start: START, end: END })) {
        const h = Math.floor(Date.parse(r.event_time) / 3_600_000);
        expected.set(h, (expected.get(h) ?? 0) + 1);
      }
      expect(new Map(hours.map((r) => [r.hour_index as number, r.event_count as number]))).toEqual(expected);

      expect(await query(session, "SELECT 1")).toEqual([{ 1: 1 }]);
      const ids = await query(session, "SELECT event_id FROM system.access.audit WHERE event_id IN (:id_0, :id_1, :id_2) ORDER BY event_id", {
        id_0: "rt-1",
        id_1: "rt-3",
        id_2: "nope",
      });
      expect(ids).toEqual([{ event_id: "rt-1" }, { event_id: "rt-3" }]);

      const operation = await session.executeStatement("SELECT * FROM system.access.audit LIMIT 0");
      const schema = await operation.getSchema();
      expect(await operation.fetchAll()).toEqual([]);
      await operation.close();
      expect(schema?.columns.map((c) => c.columnName)).toEqual([
        "account_id",
        "workspace_id",
        "version",
        "event_time",
        "event_date",
        "source_ip_address",
        "user_agent",
        "session_id",
        "user_identity",
        "service_name",
        "action_name",
        "request_id",
        "request_params",
        "response",
        "audit_level",
        "event_id",
        "identity_metadata",
      ]);
      // TTypeId: STRING 7, TIMESTAMP 8, DATE 17, STRUCT 12, MAP 11
      expect(schema?.columns.map((c) => c.typeDesc.types[0]?.primitiveEntry?.type)).toEqual([7, 7, 7, 8, 17, 7, 7, 7, 12, 7, 7, 7, 11, 12, 7, 7, 12]);

      const describe = await query(session, "DESCRIBE TABLE system.access.audit");
      expect(describe[3]).toEqual({ col_name: "event_time", data_type: "timestamp", comment: null });
      expect(describe[12]).toEqual({ col_name: "request_params", data_type: "map<string,string>", comment: null });
    } finally {
      await close();
    }
  });

  it("shows rows appended through POST /admin/events; a bad line is refused whole", async () => {
    const lines = [
      JSON.stringify({ event_time: "2024-08-01T00:00:00.000001Z", event_id: "adm-1", service_name: "workspace", action_name: "workspaceConfEdit" }),
      "",
      JSON.stringify({
        event_time: "2024-08-01T00:00:00.000001Z",
        event_id: "adm-2",
        service_name: "secrets",
        action_name: "getSecret",
        request_params: { scope: "s", key: "k" },
      }),
    ];
    const ok = await raw("POST", "/admin/events", lines.join("\n") + "\n");
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toEqual({ appended: 2 });

    const before = await warehouse.rowCount();
    const bad = await raw("POST", "/admin/events", [lines[0], JSON.stringify({ event_id: "adm-3" })].join("\n"));
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).error).toMatch(/^line 2: event_time/);
    const notJson = await raw("POST", "/admin/events", "{nope");
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.text).error).toMatch(/^line 1: not valid JSON/);
    expect(await warehouse.rowCount()).toBe(before);

    const { session, close } = await connect();
    try {
      const rows = await query(
        session,
        "SELECT event_id, unix_micros(event_time) AS us FROM system.access.audit WHERE event_id LIKE 'adm-%' ORDER BY event_id",
      );
      expect(rows).toEqual([
        { event_id: "adm-1", us: Date.parse("2024-08-01T00:00:00Z") * 1000 + 1 },
        { event_id: "adm-2", us: Date.parse("2024-08-01T00:00:00Z") * 1000 + 1 },
      ]);
    } finally {
      await close();
    }

    const faults = await raw("POST", "/admin/faults", JSON.stringify({ fetchDelayMs: 1 }));
    expect(JSON.parse(faults.text)).toEqual({ faults: { fetchDelayMs: 1 } });
    expect((await raw("POST", "/admin/faults", JSON.stringify({ nope: 1 }))).status).toBe(400);
    warehouse.setFaults({});
    const stats = JSON.parse((await raw("GET", "/admin/stats")).text) as Record<string, number>;
    expect(stats.sessionsOpened).toBeGreaterThan(0);
    expect(stats.rowCount).toBe(await warehouse.rowCount());
  });

  it("accepts an Entra ID token via external-token and checks it on every request", async () => {
    let audience: string = AUDIENCE.databricks;
    let calls = 0;
    const { session, close } = await connect({
      authType: "external-token",
      getToken: () => {
        calls += 1;
        // Short-lived: the driver re-asks for a token on every request.
        return Promise.resolve(issueToken(audience, 120).token);
      },
    });
    try {
      expect(await query(session, "SELECT count(*) AS n FROM system.access.audit WHERE event_id = 'rt-1'")).toEqual([{ n: 1 }]);
      expect(calls).toBeGreaterThan(1);
      audience = AUDIENCE.storage; // the token the driver now gets is no longer for Databricks
      const error = await query(session, "SELECT 1").catch((e: unknown) => e);
      expect((error as { statusCode?: number }).statusCode).toBe(403);
    } finally {
      await close();
    }
  });
});
