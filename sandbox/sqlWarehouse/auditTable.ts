import {
  DATE,
  DuckDBDataChunk,
  DuckDBDateValue,
  DuckDBInstance,
  DuckDBTimestampValue,
  DuckDBTypeId,
  INTEGER,
  MAP,
  STRUCT,
  TIMESTAMP,
  VARCHAR,
  mapValue,
  structValue,
  type DuckDBConnection,
  type DuckDBType,
  type DuckDBValue,
} from "@duckdb/node-api";
import { AuditRowError, TableSchema, alterStatement, duckValueOf, rowsForSchema, sparkTypeOf } from "./schemaEvolution";
import { auditWithoutSqlTextSetup } from "./sqlText";

export { AuditRowError } from "./schemaEvolution";

/**
 * `system.access.audit` held in DuckDB, plus the bridge between the Databricks SQL dialect the
 * project writes and DuckDB: a token-level SQL rewrite (catalog name, named parameters, string
 * literals, a few Spark functions and operators) and macros for the Spark functions DuckDB lacks.
 *
 * `system` is a reserved catalog name in DuckDB, so the table lives in an attached in-memory
 * catalog called {@link DUCK_CATALOG}; incoming SQL has its `system.` references renamed.
 */

/** The DuckDB catalog that stands for Databricks' `system` catalog. */
export const DUCK_CATALOG = "dbx_system";
export const SPARK_TABLE = "system.access.audit";
export const DUCK_TABLE = `${DUCK_CATALOG}.access.audit`;

export interface AuditColumn {
  name: string;
  /** The type as Databricks' DESCRIBE TABLE prints it. */
  sparkType: string;
  duckType: DuckDBType;
}

const USER_IDENTITY = STRUCT({ email: VARCHAR, subject_name: VARCHAR });
const REQUEST_PARAMS = MAP(VARCHAR, VARCHAR);
const RESPONSE = STRUCT({ status_code: INTEGER, error_message: VARCHAR, result: VARCHAR });
const IDENTITY_METADATA = STRUCT({ run_by: VARCHAR, run_as: VARCHAR });

/** The table's columns, in the table's order, with their Databricks and DuckDB types. */
export const AUDIT_COLUMNS: readonly AuditColumn[] = [
  { name: "account_id", sparkType: "string", duckType: VARCHAR },
  { name: "workspace_id", sparkType: "string", duckType: VARCHAR },
  { name: "version", sparkType: "string", duckType: VARCHAR },
  { name: "event_time", sparkType: "timestamp", duckType: TIMESTAMP },
  { name: "event_date", sparkType: "date", duckType: DATE },
  { name: "source_ip_address", sparkType: "string", duckType: VARCHAR },
  { name: "user_agent", sparkType: "string", duckType: VARCHAR },
  { name: "session_id", sparkType: "string", duckType: VARCHAR },
  { name: "user_identity", sparkType: "struct<email:string,subject_name:string>", duckType: USER_IDENTITY },
  { name: "service_name", sparkType: "string", duckType: VARCHAR },
  { name: "action_name", sparkType: "string", duckType: VARCHAR },
  { name: "request_id", sparkType: "string", duckType: VARCHAR },
  { name: "request_params", sparkType: "map<string,string>", duckType: REQUEST_PARAMS },
  { name: "response", sparkType: "struct<status_code:int,error_message:string,result:string>", duckType: RESPONSE },
  { name: "audit_level", sparkType: "string", duckType: VARCHAR },
  { name: "event_id", sparkType: "string", duckType: VARCHAR },
  { name: "identity_metadata", sparkType: "struct<run_by:string,run_as:string>", duckType: IDENTITY_METADATA },
];

/** The table as Databricks documents it today; rows with more columns or struct fields grow it (schemaEvolution). */
export const BASE_SCHEMA = TableSchema.of(AUDIT_COLUMNS);

export interface AuditUserIdentity {
  email?: string | null;
  subject_name?: string | null;
}
export interface AuditResponse {
  status_code?: number | null;
  error_message?: string | null;
  result?: string | null;
}
export interface AuditIdentityMetadata {
  run_by?: string | null;
  run_as?: string | null;
}

/**
 * One audit row as JSON, in the table's column names. `event_time` is an ISO-8601 string (it may
 * carry microseconds and a `Z` or an offset; without one it is read as UTC); `event_date`
 * (`YYYY-MM-DD`) is derived from `event_time` in UTC when absent. `event_time` and `event_id` are
 * required; every other column may be missing or null.
 */
export interface AuditRowInput {
  account_id?: string | null;
  workspace_id?: string | null;
  version?: string | null;
  event_time: string;
  event_date?: string | null;
  source_ip_address?: string | null;
  user_agent?: string | null;
  session_id?: string | null;
  user_identity?: AuditUserIdentity | null;
  service_name?: string | null;
  action_name?: string | null;
  request_id?: string | null;
  request_params?: Record<string, string | null> | null;
  response?: AuditResponse | null;
  audit_level?: string | null;
  event_id: string;
  identity_metadata?: AuditIdentityMetadata | null;
}

/** A validated row, ready for the appender. */
export interface NormalizedAuditRow {
  values: DuckDBValue[];
  eventTimeUs: number;
}

const STRING_COLUMNS = new Set([
  "account_id",
  "workspace_id",
  "version",
  "source_ip_address",
  "user_agent",
  "session_id",
  "service_name",
  "action_name",
  "request_id",
  "audit_level",
  "event_id",
]);

function optString(row: Record<string, unknown>, key: string, where = key): string | null {
  const v = row[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw new AuditRowError(`${where}: expected a string or null, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "an array";
  if (v === null) return "null";
  const text = typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function optObject(row: Record<string, unknown>, key: string): Record<string, unknown> | null {
  const v = row[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v)) throw new AuditRowError(`${key}: expected an object or null, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

/** One of the table's structs: its documented `fields` as ever, then any field the table has gained (`type`, see schemaEvolution). */
function structOf(row: Record<string, unknown>, key: string, type: DuckDBType, fields: readonly string[], intFields: readonly string[] = []): DuckDBValue {
  const obj = optObject(row, key);
  if (!obj) return null;
  const struct = type.typeId === DuckDBTypeId.STRUCT ? type : undefined;
  const all = struct ? struct.entryNames : fields;
  for (const k of Object.keys(obj)) {
    if (!all.includes(k) && obj[k] !== null && obj[k] !== undefined) throw new AuditRowError(`${key}: unknown field '${k}' (expected ${all.join(", ")})`);
  }
  const out: Record<string, DuckDBValue> = {};
  for (const f of all) {
    if (struct && !fields.includes(f)) {
      out[f] = duckValueOf(obj[f], struct.typeForEntry(f), `${key}.${f}`);
    } else if (intFields.includes(f)) {
      const v = obj[f];
      if (v === undefined || v === null) out[f] = null;
      else if (typeof v === "number" && Number.isInteger(v) && v >= -2147483648 && v <= 2147483647) out[f] = v;
      else if (typeof v === "string" && /^-?\d{1,10}$/.test(v) && Math.abs(Number(v)) <= 2147483647) out[f] = Number(v);
      else throw new AuditRowError(`${key}.${f}: expected an int or null, got ${describe(v)}`);
    } else {
      out[f] = optString(obj, f, `${key}.${f}`);
    }
  }
  return structValue(out);
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/** Microseconds since the epoch for an ISO-8601 timestamp (UTC when it carries no zone); throws on anything else. */
export function parseIsoMicros(text: string): number {
  const m = ISO_RE.exec(text.trim());
  if (!m) throw new AuditRowError(`not an ISO-8601 timestamp: ${JSON.stringify(text.slice(0, 60))}`);
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "", zone] = m;
  const year = Number(y),
    month = Number(mo),
    day = Number(d),
    hour = Number(h),
    minute = Number(mi),
    second = Number(s);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  if (
    Number.isNaN(ms) ||
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    throw new AuditRowError(`not a valid date/time: ${JSON.stringify(text.slice(0, 60))}`);
  }
  let offsetMinutes = 0;
  if (zone && zone !== "Z" && zone !== "z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || "0"));
  }
  const micros = Number((frac + "000000").slice(0, 6));
  return ms * 1000 + micros - offsetMinutes * 60_000_000;
}

/** `2024-05-01T12:00:00.123456Z` for a count of microseconds since the epoch. */
export function formatIsoMicros(us: number | bigint): string {
  const big = BigInt(us);
  const msPart = big / 1000n - (big % 1000n < 0n ? 1n : 0n);
  const subMs = Number(big - msPart * 1000n);
  const iso = new Date(Number(msPart)).toISOString();
  return `${iso.slice(0, 23)}${String(subMs).padStart(3, "0")}Z`;
}

const DAY_US = 86_400_000_000;

function parseDateDays(text: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
  if (!m) throw new AuditRowError(`event_date: expected YYYY-MM-DD, got ${JSON.stringify(text.slice(0, 40))}`);
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  const check = new Date(ms);
  if (check.getUTCDate() !== Number(m[3]) || check.getUTCMonth() !== Number(m[2]) - 1) {
    throw new AuditRowError(`event_date: not a valid date: ${JSON.stringify(text)}`);
  }
  return ms / 86_400_000;
}

/**
 * Checks one row (the JSON shape of {@link AuditRowInput}) and converts it to DuckDB values, in
 * the order of the table's columns as `schema` has them. Columns the schema lacks are refused
 * (AuditDatabase.appendRows first grows the schema with what its rows bring).
 */
export function normalizeAuditRow(input: unknown, schema: TableSchema = BASE_SCHEMA): NormalizedAuditRow {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new AuditRowError(`expected a JSON object (one audit row), got ${describe(input)}`);
  }
  const row = input as Record<string, unknown>;
  for (const key of Object.keys(row)) {
    if (!schema.column(key) && row[key] !== null && row[key] !== undefined) {
      throw new AuditRowError(`unknown column '${key}' (system.access.audit has ${schema.columns.map((c) => c.name).join(", ")})`);
    }
  }
  const eventTime = row.event_time;
  if (typeof eventTime !== "string") throw new AuditRowError(`event_time: required, an ISO-8601 string; got ${describe(eventTime)}`);
  let eventTimeUs: number;
  try {
    eventTimeUs = parseIsoMicros(eventTime);
  } catch (error) {
    throw new AuditRowError(`event_time: ${(error as Error).message}`);
  }
  const eventId = row.event_id;
  if (typeof eventId !== "string" || eventId === "") throw new AuditRowError(`event_id: required, a non-empty string; got ${describe(eventId)}`);
  const eventDate = optString(row, "event_date");
  const eventDays = eventDate === null ? Math.floor(eventTimeUs / DAY_US) : parseDateDays(eventDate);

  const params = optObject(row, "request_params");
  let requestParams: DuckDBValue = null;
  if (params) {
    const entries: { key: DuckDBValue; value: DuckDBValue }[] = [];
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && typeof v !== "string") throw new AuditRowError(`request_params.${k}: expected a string or null, got ${describe(v)}`);
      entries.push({ key: k, value: v });
    }
    requestParams = mapValue(entries);
  }

  const values: DuckDBValue[] = [];
  for (const column of schema.columns) {
    switch (column.name) {
      case "event_time":
        values.push(new DuckDBTimestampValue(BigInt(eventTimeUs)));
        break;
      case "event_date":
        values.push(new DuckDBDateValue(eventDays));
        break;
      case "user_identity":
        values.push(structOf(row, "user_identity", column.duckType, ["email", "subject_name"]));
        break;
      case "request_params":
        values.push(requestParams);
        break;
      case "response":
        values.push(structOf(row, "response", column.duckType, ["status_code", "error_message", "result"], ["status_code"]));
        break;
      case "identity_metadata":
        values.push(structOf(row, "identity_metadata", column.duckType, ["run_by", "run_as"]));
        break;
      default:
        // A column the table gained (schemaEvolution) takes any type; a documented one is a string.
        values.push(STRING_COLUMNS.has(column.name) ? optString(row, column.name) : duckValueOf(row[column.name], column.duckType, column.name));
    }
  }
  return { values, eventTimeUs };
}

// ---------------------------------------------------------------------------------------------
// The database

/** The in-memory DuckDB that holds the table, with the Spark bridge macros installed. */
export class AuditDatabase {
  private loadQueue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** The table's columns as they are now: the documented ones, plus what rows have added. */
  private schema = BASE_SCHEMA;

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly loader: DuckDBConnection,
  ) {}

  static async create(): Promise<AuditDatabase> {
    const instance = await DuckDBInstance.create(":memory:", {
      // Never fetch extensions (that would go to the internet), and order NULLs like Spark.
      autoinstall_known_extensions: "false",
      autoload_known_extensions: "false",
      default_null_order: "nulls_first_on_asc_last_on_desc",
    });
    const setup = await instance.connect();
    // TIMESTAMP columns hold UTC; TIMESTAMPTZ arithmetic (offsets in parameters) must agree.
    await setup.run("SET GLOBAL TimeZone = 'UTC'");
    await setup.run(`ATTACH ':memory:' AS ${DUCK_CATALOG}`);
    await setup.run(`CREATE SCHEMA ${DUCK_CATALOG}.access`);
    const columns = AUDIT_COLUMNS.map((c) => `${c.name} ${c.duckType.toString()}`).join(", ");
    await setup.run(`CREATE TABLE ${DUCK_TABLE} (${columns})`);
    for (const macro of BRIDGE_MACROS) await setup.run(macro);
    for (const statement of auditWithoutSqlTextSetup(DUCK_TABLE)) await setup.run(statement);
    // From here on, queries can touch neither files nor the network, nor change that.
    await setup.run("SET enable_external_access = false");
    await setup.run("SET lock_configuration = true");
    setup.closeSync();
    const loader = await instance.connect();
    return new AuditDatabase(instance, loader);
  }

  /** A new connection (one per running statement: a DuckDB connection streams one result at a time). */
  connect(): Promise<DuckDBConnection> {
    if (this.closed) throw new Error("the audit database is closed");
    return this.instance.connect();
  }

  /** The table's columns now, with their Databricks types: the documented ones, then those rows have added. */
  columns(): { name: string; sparkType: string }[] {
    return this.schema.columns.map((c) => ({ name: c.name, sparkType: sparkTypeOf(c.duckType) }));
  }

  /**
   * Validates and appends rows; a bad row throws {@link AuditRowError} naming its 1-based
   * position (`row N: ...`, or what `positionOf` calls it) and nothing of that call is
   * appended. Rows may carry columns and struct fields the table lacks: they are added first,
   * as Databricks adds them (schemaEvolution). Returns the number appended.
   */
  appendRows(rows: Iterable<unknown> | AsyncIterable<unknown>, positionOf: (index: number) => string = (index) => `row ${index}`): Promise<number> {
    return this.serialized(async () => {
      const inputs: unknown[] = [];
      for await (const row of rows as AsyncIterable<unknown>) inputs.push(row);
      const { schema, changes, values } = rowsForSchema(inputs, this.schema, positionOf, (input, target) => normalizeAuditRow(input, target).values);
      for (const change of changes) await this.loader.run(alterStatement(DUCK_TABLE, change));
      this.schema = schema;
      await this.appendValues(values);
      return values.length;
    });
  }

  /** Appends rows already checked by {@link normalizeAuditRow} against the table's current schema. */
  appendValidated(rows: readonly NormalizedAuditRow[]): Promise<number> {
    return this.serialized(async () => {
      await this.appendValues(rows.map((r) => r.values));
      return rows.length;
    });
  }

  /**
   * Bulk load for rows we generate ourselves (synthetic data): each row becomes one line of
   * control-character-delimited text, lines are staged in a temporary table (5,000 at a time),
   * and DuckDB parses and inserts them in one INSERT ... SELECT per window. About twice as fast as
   * validating rows and appending them, and much lighter on the JS heap. The text of these rows must not contain the delimiters
   * (U+0015, U+001D..U+001F); a row that does is refused.
   */
  appendBulk(records: Iterable<{ eventTimeUs: number; row: AuditRowInput }>): Promise<number> {
    // The text format has the documented columns only: once rows have added others, rows go the validated way.
    if (!this.schema.original) {
      return this.appendRows(
        (function* () {
          for (const record of records) yield { ...record.row, event_time: formatIsoMicros(record.eventTimeUs) };
        })(),
      );
    }
    return this.serialized(async () => {
      const staging = "dbx_staging_lines";
      await this.loader.run(`CREATE OR REPLACE TEMP TABLE ${staging} (line VARCHAR)`);
      const insert = `INSERT INTO ${DUCK_TABLE} ${BULK_SELECT} FROM (SELECT string_split(line, chr(31)) AS f FROM ${staging})`;
      let lines: string[] = [];
      let staged = 0;
      let total = 0;
      const stage = async () => {
        if (lines.length === 0) return;
        await this.loader.run(`INSERT INTO ${staging} SELECT unnest(string_split($blob, chr(30)))`, { blob: lines.join(RS) });
        staged += lines.length;
        lines = [];
      };
      const flush = async () => {
        await stage();
        if (staged === 0) return;
        await this.loader.run(insert);
        await this.loader.run(`DELETE FROM ${staging}`);
        total += staged;
        staged = 0;
      };
      try {
        for (const record of records) {
          try {
            lines.push(bulkLine(record.eventTimeUs, record.row));
          } catch (error) {
            if (error instanceof AuditRowError) throw new AuditRowError(`row ${total + staged + lines.length + 1}: ${error.message}`);
            throw error;
          }
          if (lines.length >= 5_000) {
            await stage();
            if (staged >= 250_000) await flush();
          }
        }
        await flush();
      } finally {
        await this.loader.run(`DROP TABLE IF EXISTS ${staging}`);
      }
      return total;
    });
  }

  private async appendValues(rows: DuckDBValue[][]): Promise<void> {
    if (rows.length === 0) return;
    const appender = await this.loader.createAppender("audit", "access", DUCK_CATALOG);
    try {
      const types = this.schema.columns.map((c) => c.duckType);
      const size = 2048;
      for (let start = 0; start < rows.length; start += size) {
        const slice = rows.slice(start, start + size);
        const chunk = DuckDBDataChunk.create(types, slice.length);
        chunk.setRows(slice);
        appender.appendDataChunk(chunk);
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
  }

  async rowCount(): Promise<number> {
    const row = await this.queryOne(`SELECT count(*) FROM ${DUCK_TABLE}`);
    return Number(row?.[0] ?? 0);
  }

  /** The oldest and newest event_time, ISO with microseconds; null for an empty table. */
  async eventTimeRange(): Promise<{ min: string; max: string } | null> {
    const row = await this.queryOne(`SELECT epoch_us(min(event_time)), epoch_us(max(event_time)) FROM ${DUCK_TABLE}`);
    if (!row || row[0] === null || row[1] === null) return null;
    return { min: formatIsoMicros(row[0] as bigint), max: formatIsoMicros(row[1] as bigint) };
  }

  /** First row of a query, on a connection of its own (the loader's may be busy with a load). */
  private async queryOne(sql: string): Promise<DuckDBValue[] | undefined> {
    const connection = await this.connect();
    try {
      return (await connection.runAndReadAll(sql)).getRows()[0];
    } finally {
      connection.closeSync();
    }
  }

  /** Resolves when no load is running. */
  drain(): Promise<void> {
    return this.loadQueue.then(() => undefined);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.loader.closeSync();
    } finally {
      this.instance.closeSync();
    }
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.loadQueue.then(task, task);
    this.loadQueue = run.catch(() => undefined);
    return run;
  }
}

// ---------------------------------------------------------------------------------------------
// Bulk text format (appendBulk): fields separated by U+001F, rows by U+001E, map entries by
// U+001D, NULL written as U+0015.

const FS = "\x1f";
const RS = "\x1e";
const LS = "\x1d";
const NUL_MARK = "\x15";
/** Whether a value holds one of the characters the bulk text format reserves. */
function hasReserved(v: string): boolean {
  return v.includes(NUL_MARK) || v.includes(LS) || v.includes(RS) || v.includes(FS);
}

function txt(v: string | null | undefined): string {
  if (v === null || v === undefined) return NUL_MARK;
  if (hasReserved(v)) throw new AuditRowError(`value ${JSON.stringify(v.slice(0, 40))} contains a control character the bulk loader reserves`);
  return v;
}

function bulkLine(us: number, r: AuditRowInput): string {
  const ui = r.user_identity;
  const rp = r.request_params;
  const rs = r.response;
  const im = r.identity_metadata;
  let keys = "";
  let values = "";
  let count = "N";
  if (rp) {
    const entries = Object.entries(rp);
    count = String(entries.length);
    keys = entries.map((e) => txt(e[0])).join(LS);
    values = entries.map((e) => txt(e[1])).join(LS);
  }
  const days = r.event_date ? String(Math.round(Date.parse(`${r.event_date}T00:00:00Z`) / 86_400_000)) : String(Math.floor(us / 86_400_000_000));
  return [
    txt(r.account_id),
    txt(r.workspace_id),
    txt(r.version),
    String(us),
    days,
    txt(r.source_ip_address),
    txt(r.user_agent),
    txt(r.session_id),
    ui ? "1" : "0",
    txt(ui?.email),
    txt(ui?.subject_name),
    txt(r.service_name),
    txt(r.action_name),
    txt(r.request_id),
    count,
    keys,
    values,
    rs ? "1" : "0",
    rs?.status_code === null || rs?.status_code === undefined ? NUL_MARK : String(rs.status_code),
    txt(rs?.error_message),
    txt(rs?.result),
    txt(r.audit_level),
    txt(r.event_id),
    im ? "1" : "0",
    txt(im?.run_by),
    txt(im?.run_as),
  ].join(FS);
}

const f = (i: number) => `nullif(f[${i}], chr(21))`;
const BULK_SELECT = `SELECT ${f(1)}, ${f(2)}, ${f(3)}, make_timestamp(CAST(f[4] AS BIGINT)), CAST(DATE '1970-01-01' + CAST(f[5] AS INTEGER) AS DATE),
  ${f(6)}, ${f(7)}, ${f(8)},
  CASE WHEN f[9] = '1' THEN struct_pack(email := ${f(10)}, subject_name := ${f(11)}) END,
  ${f(12)}, ${f(13)}, ${f(14)},
  CASE WHEN f[15] = 'N' THEN NULL
       WHEN f[15] = '0' THEN CAST(MAP {} AS MAP(VARCHAR, VARCHAR))
       ELSE MAP(string_split(f[16], chr(29)), list_transform(string_split(f[17], chr(29)), x -> nullif(x, chr(21)))) END,
  CASE WHEN f[18] = '1' THEN struct_pack(status_code := CAST(${f(19)} AS INTEGER), error_message := ${f(20)}, result := ${f(21)}) END,
  ${f(22)}, ${f(23)},
  CASE WHEN f[24] = '1' THEN struct_pack(run_by := ${f(25)}, run_as := ${f(26)}) END`;

// ---------------------------------------------------------------------------------------------
// The dialect bridge: macros

/**
 * Spark functions DuckDB lacks (or has with other semantics), as DuckDB macros. Macros with a
 * builtin's name shadow the builtin. Functions whose Spark and DuckDB forms clash in a way a
 * macro cannot express are renamed by {@link translateSparkSql} to a `spark_` macro.
 */
export const BRIDGE_MACROS: readonly string[] = [
  // Microseconds since the epoch <-> TIMESTAMP (UTC).
  "CREATE MACRO unix_micros(ts) AS epoch_us(ts)",
  "CREATE MACRO unix_millis(ts) AS epoch_ms(ts)",
  "CREATE MACRO unix_seconds(ts) AS CAST(floor(epoch_us(ts) / 1000000) AS BIGINT)",
  "CREATE MACRO unix_date(d) AS CAST(CAST(d AS DATE) - DATE '1970-01-01' AS INTEGER)",
  "CREATE MACRO timestamp_micros(us) AS make_timestamp(CAST(us AS BIGINT))",
  "CREATE MACRO timestamp_millis(ms) AS make_timestamp(CAST(ms AS BIGINT) * 1000)",
  "CREATE MACRO timestamp_seconds(s) AS make_timestamp(CAST(round(s * 1000000) AS BIGINT))",
  "CREATE MACRO unix_timestamp() AS CAST(floor(epoch_us(now()) / 1000000) AS BIGINT)",
  "CREATE MACRO from_unixtime(s) AS strftime(make_timestamp(CAST(s AS BIGINT) * 1000000), '%Y-%m-%d %H:%M:%S')",
  // element_at(map, key) returns the value (DuckDB's returns a list); element_at(array, i) is 1-based in both.
  "CREATE MACRO element_at(c, k) AS c[k]",
  // date_format(ts, 'java pattern'): the rewrite converts a literal pattern to strftime and calls
  // spark_date_format; a pattern that is not a literal must already be a strftime pattern.
  "CREATE MACRO spark_date_format(ts, fmt) AS strftime(CAST(ts AS TIMESTAMP), fmt)",
  "CREATE MACRO date_format(ts, fmt) AS strftime(CAST(ts AS TIMESTAMP), fmt)",
  "CREATE MACRO spark_now() AS CAST(now() AS TIMESTAMP)",
  "CREATE MACRO to_date(x) AS CAST(x AS DATE)",
  "CREATE MACRO spark_to_timestamp(x) AS CAST(CAST(x AS TIMESTAMPTZ) AS TIMESTAMP)",
  "CREATE MACRO spark_date_add(d, n) AS CAST(CAST(d AS DATE) + CAST(n AS INTEGER) AS DATE)",
  "CREATE MACRO spark_date_sub(d, n) AS CAST(CAST(d AS DATE) - CAST(n AS INTEGER) AS DATE)",
  "CREATE MACRO spark_datediff(a, b) AS CAST(CAST(a AS DATE) - CAST(b AS DATE) AS INTEGER)",
  "CREATE MACRO nvl(a, b) AS coalesce(a, b)",
  // collect_list / collect_set skip NULLs in Spark (DuckDB's list() keeps them): a group whose
  // values are all NULL gives an empty array in both.
  "CREATE MACRO collect_list(x) AS list_filter(list(x), v -> v IS NOT NULL)",
  "CREATE MACRO collect_set(x) AS list_filter(list(DISTINCT x), v -> v IS NOT NULL)",
  // Arrays as the detections use them: slice(a, start, length) with a 1-based start, array_size,
  // and array_except (the distinct elements of a that are not in b).
  "CREATE MACRO slice(a, s, n) AS list_slice(a, s, s + n - 1)",
  "CREATE MACRO array_size(a) AS CAST(len(a) AS INTEGER)",
  "CREATE MACRO array_except(a, b) AS list_distinct(list_filter(a, x -> NOT list_contains(b, x)))",
  // size(): on maps (the only collection in the table); DuckDB has no one function for maps and lists.
  "CREATE MACRO spark_size(c) AS coalesce(CAST(len(map_keys(c)) AS INTEGER), -1)",
  // timestampadd(UNIT, n, ts) / timestampdiff(UNIT, a, b): the rewrite passes UNIT as a string.
  `CREATE MACRO spark_timestampadd(unit, n, ts) AS CAST(ts AS TIMESTAMP) + CASE upper(unit)
     WHEN 'MICROSECOND' THEN to_microseconds(CAST(n AS BIGINT))
     WHEN 'MILLISECOND' THEN to_milliseconds(CAST(n AS BIGINT))
     WHEN 'SECOND' THEN to_seconds(CAST(n AS BIGINT))
     WHEN 'MINUTE' THEN to_minutes(CAST(n AS BIGINT))
     WHEN 'HOUR' THEN to_hours(CAST(n AS BIGINT))
     WHEN 'DAY' THEN to_days(CAST(n AS INTEGER))
     WHEN 'WEEK' THEN to_days(CAST(n AS INTEGER) * 7)
     WHEN 'MONTH' THEN to_months(CAST(n AS INTEGER))
     WHEN 'QUARTER' THEN to_months(CAST(n AS INTEGER) * 3)
     WHEN 'YEAR' THEN to_years(CAST(n AS INTEGER)) END`,
  `CREATE MACRO spark_timestampdiff(unit, a, b) AS CASE upper(unit)
     WHEN 'MICROSECOND' THEN epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))
     WHEN 'MILLISECOND' THEN CAST(trunc((epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))) / 1000) AS BIGINT)
     WHEN 'SECOND' THEN CAST(trunc((epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))) / 1000000) AS BIGINT)
     WHEN 'MINUTE' THEN CAST(trunc((epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))) / 60000000) AS BIGINT)
     WHEN 'HOUR' THEN CAST(trunc((epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))) / 3600000000) AS BIGINT)
     WHEN 'DAY' THEN CAST(trunc((epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))) / 86400000000) AS BIGINT)
     WHEN 'WEEK' THEN CAST(trunc((epoch_us(CAST(b AS TIMESTAMP)) - epoch_us(CAST(a AS TIMESTAMP))) / 604800000000) AS BIGINT)
     WHEN 'MONTH' THEN date_sub('month', CAST(a AS TIMESTAMP), CAST(b AS TIMESTAMP))
     WHEN 'QUARTER' THEN date_sub('quarter', CAST(a AS TIMESTAMP), CAST(b AS TIMESTAMP))
     WHEN 'YEAR' THEN date_sub('year', CAST(a AS TIMESTAMP), CAST(b AS TIMESTAMP)) END`,
];

// ---------------------------------------------------------------------------------------------
// The dialect bridge: rewriting Databricks SQL into DuckDB SQL

/** A query parameter as the driver sends it (TSparkParameter), reduced to what binding needs. */
export interface SparkParameter {
  name?: string | null;
  ordinal?: number | null;
  /** Spark type name (STRING, INT, BIGINT, DOUBLE, BOOLEAN, DATE, TIMESTAMP, DECIMAL(p,s), ...); absent for NULL. */
  type?: string | null;
  value?: string | null;
}

/** A statement ready for DuckDB. */
export interface TranslatedStatement {
  sql: string;
  /** Values for `$name` (named) or `$1..$n` (ordinal) parameters, all bound as VARCHAR. */
  values: Record<string, string> | string[];
  /** Whether the statement reads or writes Databricks' `system` catalog. */
  touchesSystem: boolean;
}

/** A statement the bridge refuses before DuckDB sees it (sqlState as Databricks reports it). */
export class SqlBridgeError extends Error {
  constructor(
    message: string,
    readonly sqlState: string,
    readonly errorClass: string,
  ) {
    super(message);
    this.name = "SqlBridgeError";
  }
}

type Token =
  | { kind: "ws" | "comment" | "punct" | "num" | "other"; text: string }
  | { kind: "str"; text: string; value: string }
  | { kind: "ident"; text: string; value: string; quoted: boolean }
  | { kind: "param"; text: string; name: string }
  | { kind: "qmark"; text: string };

const IDENT_START = /[A-Za-z_]/;
const IDENT_PART = /[A-Za-z0-9_$]/;
const MULTI_PUNCT = ["<=>", "::", ":=", "<=", ">=", "<>", "!=", "==", "||", "->", "=>", "//"];

function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (/\s/.test(c)) {
      let j = i + 1;
      while (j < n && /\s/.test(sql[j]!)) j++;
      tokens.push({ kind: "ws", text: sql.slice(i, j) });
      i = j;
    } else if (c === "-" && next === "-") {
      let j = sql.indexOf("\n", i);
      if (j < 0) j = n;
      tokens.push({ kind: "comment", text: sql.slice(i, j) });
      i = j;
    } else if (c === "/" && next === "*") {
      let depth = 0;
      let j = i;
      while (j < n) {
        if (sql[j] === "/" && sql[j + 1] === "*") {
          depth++;
          j += 2;
        } else if (sql[j] === "*" && sql[j + 1] === "/") {
          depth--;
          j += 2;
          if (depth === 0) break;
        } else j++;
      }
      if (depth !== 0) throw new SqlBridgeError("[PARSE_SYNTAX_ERROR] Syntax error: unclosed bracketed comment.", "42601", "PARSE_SYNTAX_ERROR");
      tokens.push({ kind: "comment", text: sql.slice(i, j) });
      i = j;
    } else if (c === "'" || c === '"') {
      const { value, end } = readSparkString(sql, i);
      tokens.push({ kind: "str", text: sql.slice(i, end), value });
      i = end;
    } else if (c === "`") {
      let j = i + 1;
      let value = "";
      for (;;) {
        if (j >= n) throw new SqlBridgeError("[PARSE_SYNTAX_ERROR] Syntax error: unclosed quoted identifier.", "42601", "PARSE_SYNTAX_ERROR");
        if (sql[j] === "`") {
          if (sql[j + 1] === "`") {
            value += "`";
            j += 2;
            continue;
          }
          j++;
          break;
        }
        value += sql[j];
        j++;
      }
      tokens.push({ kind: "ident", text: sql.slice(i, j), value, quoted: true });
      i = j;
    } else if (IDENT_START.test(c)) {
      let j = i + 1;
      while (j < n && IDENT_PART.test(sql[j]!)) j++;
      const text = sql.slice(i, j);
      tokens.push({ kind: "ident", text, value: text, quoted: false });
      i = j;
    } else if (/[0-9]/.test(c) || (c === "." && next !== undefined && /[0-9]/.test(next))) {
      let j = i;
      while (j < n && /[0-9.]/.test(sql[j]!)) j++;
      if (j < n && /[eE]/.test(sql[j]!) && /[-+0-9]/.test(sql[j + 1] ?? "")) {
        j += 2;
        while (j < n && /[0-9]/.test(sql[j]!)) j++;
      }
      let text = sql.slice(i, j);
      // Spark's typed numeric literals: 10L, 10S, 10Y, 1.5D, 1.5F, 1.5BD.
      const suffix = /^(BD|L|S|Y|D|F)(?![A-Za-z0-9_])/i.exec(sql.slice(j, j + 3));
      if (suffix) {
        const type = { BD: "DECIMAL(38,18)", L: "BIGINT", S: "SMALLINT", Y: "TINYINT", D: "DOUBLE", F: "FLOAT" }[suffix[1]!.toUpperCase() as "BD"];
        text = `CAST(${text} AS ${type})`;
        j += suffix[1]!.length;
      }
      tokens.push({ kind: "num", text });
      i = j;
    } else if (c === ":" && next !== undefined && IDENT_START.test(next) && sql[i - 1] !== ":") {
      let j = i + 2;
      while (j < n && IDENT_PART.test(sql[j]!) && sql[j] !== "$") j++;
      tokens.push({ kind: "param", text: sql.slice(i, j), name: sql.slice(i + 1, j) });
      i = j;
    } else if (c === "?") {
      tokens.push({ kind: "qmark", text: "?" });
      i++;
    } else {
      const multi = MULTI_PUNCT.find((p) => sql.startsWith(p, i));
      const text = multi ?? c;
      tokens.push({ kind: "punct", text });
      i += text.length;
    }
  }
  return tokens;
}

/** Reads a Spark string literal ('...' or "...", backslash escapes, doubled quotes) starting at `start`. */
function readSparkString(sql: string, start: number): { value: string; end: number } {
  const quote = sql[start]!;
  let i = start + 1;
  let value = "";
  for (;;) {
    if (i >= sql.length) throw new SqlBridgeError("[PARSE_SYNTAX_ERROR] Syntax error: unclosed string literal.", "42601", "PARSE_SYNTAX_ERROR");
    const c = sql[i]!;
    if (c === quote) {
      if (sql[i + 1] === quote) {
        value += quote;
        i += 2;
        continue;
      }
      return { value, end: i + 1 };
    }
    if (c === "\\" && i + 1 < sql.length) {
      const e = sql[i + 1]!;
      const simple: Record<string, string> = { n: "\n", t: "\t", r: "\r", b: "\b", "0": "\0", Z: "\x1a", "'": "'", '"': '"', "\\": "\\" };
      if (e === "u" && /^[0-9a-fA-F]{4}$/.test(sql.slice(i + 2, i + 6))) {
        value += String.fromCharCode(parseInt(sql.slice(i + 2, i + 6), 16));
        i += 6;
      } else if (e === "%" || e === "_") {
        value += `\\${e}`; // kept for LIKE, as Spark does
        i += 2;
      } else {
        value += simple[e] ?? e;
        i += 2;
      }
      continue;
    }
    value += c;
    i++;
  }
}

/** A DuckDB string literal for any JS string (NUL characters included). */
export function duckStringLiteral(value: string): string {
  const parts = value.split("\0").map((p) => `'${p.replace(/'/g, "''")}'`);
  return parts.length === 1 ? parts[0]! : `(${parts.join(" || chr(0) || ")})`;
}

function duckIdent(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}

/** Spark parameter type name -> the DuckDB cast target (`null` = bind as a plain, untyped string). */
function parameterCast(type: string | null | undefined, value: string): string | null {
  const t = (type ?? "STRING").trim().toUpperCase();
  const decimal = /^(?:DECIMAL|DEC|NUMERIC)(?:\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$/.exec(t);
  if (decimal) {
    if (decimal[1]) return `DECIMAL(${decimal[1]},${decimal[2] ?? "0"})`;
    const scale = /\.(\d+)/.exec(value)?.[1]?.length ?? 0;
    return `DECIMAL(38,${Math.min(scale, 37)})`;
  }
  switch (t) {
    case "STRING":
    case "VARCHAR":
    case "CHAR":
      return null;
    case "INT":
    case "INTEGER":
      return "INTEGER";
    case "BIGINT":
    case "LONG":
      return "BIGINT";
    case "SMALLINT":
    case "SHORT":
      return "SMALLINT";
    case "TINYINT":
    case "BYTE":
      return "TINYINT";
    case "DOUBLE":
      return "DOUBLE";
    case "FLOAT":
    case "REAL":
      return "FLOAT";
    case "BOOLEAN":
      return "BOOLEAN";
    case "DATE":
      return "DATE";
    case "TIMESTAMP":
    case "TIMESTAMP_LTZ":
      return "TIMESTAMP_LTZ";
    case "TIMESTAMP_NTZ":
      return "TIMESTAMP";
    case "BINARY":
      return "BLOB";
    default:
      if (t.startsWith("INTERVAL")) return "INTERVAL";
      return null;
  }
}

function castParameter(placeholder: string, cast: string | null): string {
  if (cast === null) return placeholder;
  // A Spark TIMESTAMP literal is an instant: honour its offset, keep UTC.
  if (cast === "TIMESTAMP_LTZ") return `CAST(CAST(${placeholder} AS TIMESTAMPTZ) AS TIMESTAMP)`;
  return `CAST(${placeholder} AS ${cast})`;
}

/** Java (Spark) datetime pattern -> strftime pattern. */
export function javaPatternToStrftime(pattern: string): string {
  let out = "";
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === "'") {
      const end = pattern.indexOf("'", i + 1);
      if (end === i + 1) {
        out += "'";
        i += 2;
        continue;
      }
      const lit = pattern.slice(i + 1, end < 0 ? pattern.length : end);
      out += lit.replace(/%/g, "%%");
      i = end < 0 ? pattern.length : end + 1;
      continue;
    }
    let j = i;
    while (j < pattern.length && pattern[j] === c) j++;
    const run = j - i;
    const map: Record<string, (n: number) => string> = {
      y: (k) => (k === 2 ? "%y" : "%Y"),
      M: (k) => (k >= 4 ? "%B" : k === 3 ? "%b" : k === 2 ? "%m" : "%-m"),
      L: (k) => (k >= 4 ? "%B" : k === 3 ? "%b" : k === 2 ? "%m" : "%-m"),
      d: (k) => (k === 2 ? "%d" : "%-d"),
      D: () => "%j",
      H: (k) => (k === 2 ? "%H" : "%-H"),
      h: (k) => (k === 2 ? "%I" : "%-I"),
      m: (k) => (k === 2 ? "%M" : "%-M"),
      s: (k) => (k === 2 ? "%S" : "%-S"),
      S: (k) => (k >= 6 ? "%f" : k === 3 ? "%g" : "%g"),
      a: () => "%p",
      E: (k) => (k >= 4 ? "%A" : "%a"),
      X: () => "Z",
      Z: () => "+0000",
      x: () => "+00",
    };
    const f = map[c];
    out += f ? f(run) : c === "%" ? "%%".repeat(run) : c.repeat(run);
    i = j;
  }
  return out;
}

/** Splits the tokens between an open paren at `open` and its match into top-level arguments. */
function callArgs(tokens: Token[], open: number): { args: Token[][]; close: number } | null {
  let depth = 0;
  const args: Token[][] = [[]];
  for (let k = open; k < tokens.length; k++) {
    const t = tokens[k]!;
    if (t.kind === "punct" && (t.text === "(" || t.text === "[")) {
      depth++;
      if (depth === 1) continue;
    } else if (t.kind === "punct" && (t.text === ")" || t.text === "]")) {
      depth--;
      if (depth === 0) return { args: args.length === 1 && args[0]!.every((x) => x.kind === "ws" || x.kind === "comment") ? [] : args, close: k };
    } else if (depth === 1 && t.kind === "punct" && t.text === ",") {
      args.push([]);
      continue;
    }
    args[args.length - 1]!.push(t);
  }
  return null;
}

function significant(tokens: Token[]): Token[] {
  return tokens.filter((t) => t.kind !== "ws" && t.kind !== "comment");
}

function nextSignificant(tokens: Token[], from: number): number {
  let k = from;
  while (k < tokens.length && (tokens[k]!.kind === "ws" || tokens[k]!.kind === "comment")) k++;
  return k;
}

function prevSignificant(tokens: Token[], from: number): number {
  let k = from;
  while (k >= 0 && (tokens[k]!.kind === "ws" || tokens[k]!.kind === "comment")) k--;
  return k;
}

function isPunct(t: Token | undefined, text: string): boolean {
  return !!t && t.kind === "punct" && t.text === text;
}

/** End (exclusive) of the operand starting at `start`: a literal, parameter, (qualified) name, call or parenthesised group. */
function operandEnd(tokens: Token[], start: number): number {
  const t = tokens[start];
  if (!t) return start;
  if (isPunct(t, "(")) return (callArgs(tokens, start)?.close ?? tokens.length - 1) + 1;
  if (t.kind === "ident") {
    let k = start + 1;
    for (;;) {
      const dot = nextSignificant(tokens, k);
      if (isPunct(tokens[dot], ".") && tokens[nextSignificant(tokens, dot + 1)]?.kind === "ident") {
        k = nextSignificant(tokens, dot + 1) + 1;
        continue;
      }
      break;
    }
    const paren = nextSignificant(tokens, k);
    if (isPunct(tokens[paren], "(")) return (callArgs(tokens, paren)?.close ?? tokens.length - 1) + 1;
    return k;
  }
  return start + 1;
}

const DESCRIBE_RE = /^\s*DESC(?:RIBE)?\s+(?:TABLE\s+)?(?:EXTENDED\s+|FORMATTED\s+)?([`"\w.]+)\s*;?\s*$/i;

/**
 * Rewrites one Databricks SQL statement for DuckDB and binds its parameters:
 * - `system.` (the catalog) becomes {@link DUCK_CATALOG}`.` (or `systemCatalog`: the reader's view of it, see sqlText.ts);
 * - `:name` named parameters become `$name` (STRING parameters untyped, so DuckDB coerces them
 *   as Spark coerces string literals; other types wrapped in a CAST to their Spark type), `?`
 *   ordinal parameters become `$1..$n`; values are always bound, never spliced into the text;
 * - Spark string literals (backslash escapes, double quotes) and backquoted identifiers become
 *   DuckDB literals and double-quoted identifiers;
 * - `a RLIKE b` / `a REGEXP b` become a regular-expression partial match; `<=>` becomes
 *   `IS NOT DISTINCT FROM`; `a DIV b` becomes integer division; `10L`-style literals are cast;
 * - date_format's Java pattern (when a literal) becomes a strftime pattern, timestampadd /
 *   timestampdiff / datediff / date_add / date_sub / to_timestamp / size / named_struct / map /
 *   array / regexp_replace / get_json_object / split / current_timestamp() get their DuckDB form;
 * - DESCRIBE [TABLE] system.access.audit answers col_name, data_type, comment as Databricks does,
 *   for the table's `columns` (AuditDatabase.columns(): those rows have added included).
 */
export function translateSparkSql(
  sparkSql: string,
  parameters: readonly SparkParameter[] = [],
  columns: readonly { name: string; sparkType: string }[] = AUDIT_COLUMNS,
  systemCatalog: string = DUCK_CATALOG,
): TranslatedStatement {
  const describe = DESCRIBE_RE.exec(sparkSql);
  if (describe) {
    const name = describe[1]!.replace(/[`"]/g, "").toLowerCase();
    if (name === SPARK_TABLE || name === DUCK_TABLE) {
      const rows = columns.map((c) => `(${duckStringLiteral(c.name)}, ${duckStringLiteral(c.sparkType)}, CAST(NULL AS VARCHAR))`);
      return {
        sql: `SELECT * FROM (VALUES ${rows.join(", ")}) AS t(col_name, data_type, comment)`,
        values: {},
        touchesSystem: true,
      };
    }
  }

  const tokens = tokenize(sparkSql.replace(/[\s;]+$/, ""));
  const named = new Map<string, SparkParameter>();
  const ordinal: SparkParameter[] = [];
  for (const p of parameters) {
    if (p.name) named.set(p.name, p);
    else ordinal.push(p);
  }
  ordinal.sort((a, b) => (a.ordinal ?? 0) - (b.ordinal ?? 0));
  const namedValues: Record<string, string> = {};
  const ordinalValues: string[] = [];
  let touchesSystem = false;
  let qmarks = 0;

  const out: string[] = [];
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k]!;
    switch (t.kind) {
      case "str":
        out.push(duckStringLiteral(t.value));
        break;
      case "param": {
        const p = named.get(t.name);
        if (!p) {
          throw new SqlBridgeError(
            `[UNBOUND_SQL_PARAMETER] Found the unbound parameter: ${t.name}. Please, fix \`args\` and provide a mapping of the parameter to either a SQL literal or collection constructor functions such as \`map()\`, \`array()\`, \`struct()\`.`,
            "42P02",
            "UNBOUND_SQL_PARAMETER",
          );
        }
        if (p.value === undefined || p.value === null) {
          out.push("NULL");
        } else {
          namedValues[t.name] = p.value;
          out.push(castParameter(`$${t.name}`, parameterCast(p.type, p.value)));
        }
        break;
      }
      case "qmark": {
        const p = ordinal[qmarks];
        qmarks++;
        if (!p) throw new SqlBridgeError(`[UNBOUND_SQL_PARAMETER] Found the unbound parameter: _${qmarks}.`, "42P02", "UNBOUND_SQL_PARAMETER");
        if (p.value === undefined || p.value === null) {
          out.push("NULL");
        } else {
          ordinalValues.push(p.value);
          out.push(castParameter(`$${ordinalValues.length}`, parameterCast(p.type, p.value)));
        }
        break;
      }
      case "punct":
        out.push(t.text === "<=>" ? " IS NOT DISTINCT FROM " : t.text);
        break;
      case "ident": {
        const lower = t.value.toLowerCase();
        const after = nextSignificant(tokens, k + 1);
        const before = prevSignificant(tokens, k - 1);
        const qualified = isPunct(tokens[before], ".");
        const followedByDot = isPunct(tokens[after], ".");
        const isCall = isPunct(tokens[after], "(") && !t.quoted;
        if (!qualified && followedByDot && (lower === "system" || lower === DUCK_CATALOG)) {
          touchesSystem = true;
          out.push(t.quoted ? duckIdent(systemCatalog) : systemCatalog);
          break;
        }
        if (t.quoted) {
          out.push(duckIdent(t.value));
          break;
        }
        if ((lower === "rlike" || lower === "regexp") && !isCall) {
          // a RLIKE b: a partial regular-expression match (DuckDB's SIMILAR TO matches the whole string).
          const start = after;
          const end = operandEnd(tokens, start);
          const operand = translateSparkSql(
            tokens
              .slice(start, end)
              .map((x) => x.text)
              .join(""),
            parameters,
            columns,
            systemCatalog,
          );
          mergeValues(operand);
          out.push(` SIMILAR TO ('(?s).*(?:' || (${operand.sql}) || ').*')`);
          k = end - 1;
          break;
        }
        if (lower === "div" && !isCall && isOperandEnd(tokens[before]) && isOperandStart(tokens[after])) {
          out.push("//");
          break;
        }
        if (isCall) {
          const rewritten = rewriteCall(lower, tokens, after);
          if (rewritten) {
            const inner = translateSparkSql(rewritten.text, parameters, columns, systemCatalog);
            mergeValues(inner);
            out.push(inner.sql);
            k = rewritten.end - 1;
            break;
          }
        }
        out.push(t.text);
        break;
      }
      default:
        out.push(t.text);
    }
  }

  function mergeValues(inner: TranslatedStatement): void {
    if (inner.touchesSystem) touchesSystem = true;
    if (Array.isArray(inner.values)) {
      if (inner.values.length > 0) {
        throw new SqlBridgeError(
          "[UNSUPPORTED_FEATURE] Ordinal parameters inside rewritten functions are not supported by the local warehouse.",
          "0A000",
          "UNSUPPORTED_FEATURE",
        );
      }
    } else {
      Object.assign(namedValues, inner.values);
    }
  }

  if (Object.keys(namedValues).length > 0 && ordinalValues.length > 0) {
    throw new SqlBridgeError(
      "[INVALID_QUERY_MIXED_QUERY_PARAMETERS] Parameterized query must either use positional, or named parameters, but not both.",
      "42613",
      "INVALID_QUERY_MIXED_QUERY_PARAMETERS",
    );
  }
  return { sql: out.join(""), values: ordinalValues.length > 0 ? ordinalValues : namedValues, touchesSystem };
}

const KEYWORDS = new Set([
  "select",
  "by",
  "where",
  "and",
  "or",
  "on",
  "from",
  "as",
  "when",
  "then",
  "else",
  "not",
  "distinct",
  "case",
  "having",
  "in",
  "is",
  "like",
  "between",
  "all",
]);

function isOperandEnd(t: Token | undefined): boolean {
  if (!t) return false;
  if (t.kind === "num" || t.kind === "str" || t.kind === "param" || t.kind === "qmark") return true;
  if (t.kind === "punct") return t.text === ")" || t.text === "]";
  return t.kind === "ident" && (t.quoted || !KEYWORDS.has(t.value.toLowerCase()));
}

function isOperandStart(t: Token | undefined): boolean {
  if (!t) return false;
  if (t.kind === "num" || t.kind === "str" || t.kind === "param" || t.kind === "qmark" || t.kind === "ident") return true;
  return t.kind === "punct" && (t.text === "(" || t.text === "-");
}

function argText(arg: Token[]): string {
  return arg
    .map((t) => t.text)
    .join("")
    .trim();
}

/**
 * Spark function calls with no same-named DuckDB macro: returns replacement Spark-ish text for
 * the call whose argument list opens at `openAt` (the caller translates it again, so the
 * replacement must not be rewritten a second time), or null to leave the call alone.
 */
function rewriteCall(lower: string, tokens: Token[], openAt: number): { text: string; end: number } | null {
  const call = callArgs(tokens, openAt);
  if (!call) return null;
  const args = call.args;
  const end = call.close + 1;
  const joined = args.map(argText);
  switch (lower) {
    case "date_format": {
      const fmt = args[1] && significant(args[1]);
      if (args.length === 2 && fmt && fmt.length === 1 && fmt[0]!.kind === "str") {
        const converted = javaPatternToStrftime((fmt[0] as { value: string }).value);
        return { text: `spark_date_format(${joined[0]}, ${sparkLiteral(converted)})`, end };
      }
      return null;
    }
    case "timestampadd":
    case "dateadd":
    case "timestampdiff":
    case "datediff": {
      if (args.length === 3) {
        const unit = significant(args[0]!);
        if (unit.length === 1 && (unit[0]!.kind === "ident" || unit[0]!.kind === "str")) {
          const name = unit[0]!.kind === "ident" ? (unit[0] as { value: string }).value : (unit[0] as { value: string }).value;
          const fn = lower === "timestampadd" || lower === "dateadd" ? "spark_timestampadd" : "spark_timestampdiff";
          return { text: `${fn}(${sparkLiteral(name.toUpperCase())}, ${joined[1]}, ${joined[2]})`, end };
        }
      }
      if (lower === "datediff" && args.length === 2) return { text: `spark_datediff(${joined[0]}, ${joined[1]})`, end };
      return null;
    }
    case "date_add":
    case "date_sub":
      return args.length === 2 ? { text: `spark_${lower}(${joined[0]}, ${joined[1]})`, end } : null;
    case "to_timestamp":
      return args.length === 1 ? { text: `spark_to_timestamp(${joined[0]})`, end } : null;
    case "size":
    case "cardinality":
      return args.length === 1 ? { text: `spark_size(${joined[0]})`, end } : null;
    case "regexp_replace":
      return args.length === 3 ? { text: `regexp_replace(${joined[0]}, ${joined[1]}, ${joined[2]}, 'g')`, end } : null;
    case "get_json_object":
      return args.length === 2 ? { text: `json_extract_string(${joined[0]}, ${joined[1]})`, end } : null;
    case "split":
      return args.length === 2 ? { text: `regexp_split_to_array(${joined[0]}, ${joined[1]})`, end } : null;
    case "array":
      return { text: `list_value(${joined.join(", ")})`, end };
    case "named_struct": {
      if (args.length === 0 || args.length % 2 !== 0) return null;
      const parts: string[] = [];
      for (let a = 0; a < args.length; a += 2) {
        const key = significant(args[a]!);
        if (key.length !== 1 || key[0]!.kind !== "str") return null;
        parts.push(`\`${(key[0] as { value: string }).value.replace(/`/g, "``")}\` := ${joined[a + 1]}`);
      }
      return { text: `struct_pack(${parts.join(", ")})`, end };
    }
    case "map": {
      if (args.length % 2 !== 0) return null;
      const parts: string[] = [];
      for (let a = 0; a < args.length; a += 2) parts.push(`${joined[a]}: ${joined[a + 1]}`);
      return { text: `MAP {${parts.join(", ")}}`, end };
    }
    case "current_timestamp":
    case "current_date":
      return args.length === 0 ? { text: lower === "current_date" ? "current_date" : "spark_now()", end } : null;
    case "now":
      return args.length === 0 ? { text: "spark_now()", end } : null;
    case "regexp":
    case "rlike":
      return args.length === 2 ? { text: `regexp_matches(${joined[0]}, ${joined[1]})`, end } : null;
    default:
      return null;
  }
}

/** A Spark string literal (re-read by the tokenizer) for a JS string. */
function sparkLiteral(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}
