import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_COLUMNS } from "../../shared/auditEvent";
import { SOLUTION_ONLY_COLUMNS } from "../../shared/sentinelRecord";
import { OMITTED_KEY_COUNT_PARAM, TRUNCATED_KEYS_PARAM } from "../../shared/sentinelRecord";
import { loadEventsFile, type SandboxStack } from "../../sandbox/stack";
import { auditRow, isoMicros } from "../support/auditRows";
import { ALL_ROWS, archivedEvents, containerFor, exportOnce, ingestedRecords, startStack } from "../support/exportHarness";

/**
 * Full fidelity, through the real driver and the stand-in: columns and struct fields Databricks
 * adds after this code shipped reach every archived line unchanged, while Log Analytics keeps
 * its declared columns (the stand-in refuses any other), with the added struct fields inside
 * its dynamic columns.
 */
let stack: SandboxStack;
const HOUR = 3600_000;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

const DECLARED = (
  JSON.parse(readFileSync(join(__dirname, "..", "..", "infra", "tables.json"), "utf8")) as {
    tables: Record<string, { columns: { name: string }[] }>;
  }
).tables
  .DatabricksAudit_CL!.columns.map((c) => c.name)
  .filter((name) => !SOLUTION_ONLY_COLUMNS.includes(name));

async function postEvents(rows: object[]): Promise<void> {
  const response = await fetch(`${stack.contract.databricks.adminUrl}/events`, { method: "POST", body: rows.map((r) => JSON.stringify(r)).join("\n") });
  expect(response.status, await response.clone().text()).toBe(200);
}

describe("columns and fields Databricks adds", () => {
  it("reach every archived line unchanged; Log Analytics gets its declared columns, the added struct fields inside its dynamic ones", async () => {
    const t0 = Date.parse("2026-09-01T00:00:00Z");
    const container = containerFor(stack, "fidelity");
    const plain = auditRow(isoMicros(t0 * 1000 + 1));
    await postEvents([plain]);

    // POST {adminUrl}/events: a new top-level column of each kind and new fields in each struct.
    const posted = auditRow(isoMicros(t0 * 1000 + 2), {
      user_identity: { email: "ann@example.com", subject_name: null, display_name: "Ann Ö", groups: ["admins", "users"] },
      response: { status_code: 403, error_message: "denied", result: null, error_class: "PERMISSION_DENIED" },
      identity_metadata: { run_by: "sp-1", run_as: "ann@example.com", acting_resource: { kind: "job", id: 42 } },
      workspace_tier: "premium",
      risk_score: 7,
      confidence: 0.5,
      is_internal: false,
      labels: ["a", 'b\n"c"'],
      client_info: { os: "linux", build: 1234, nested: { ok: true } },
    });
    await postEvents([posted]);

    // --events: another column and another field, loaded as the sandbox command loads a file.
    const dir = mkdtempSync(join(tmpdir(), "dbx-audit-fidelity-"));
    const file = join(dir, "events.jsonl");
    const fromFile = auditRow(isoMicros(t0 * 1000 + 3), {
      user_identity: { email: "bob@example.com", subject_name: "bob", display_name: null, auth_method: "oauth-m2m" },
      region: "westeurope",
      risk_score: 2,
    });
    // A large new field: archived whole, capped in its dynamic column.
    const large = auditRow(isoMicros(t0 * 1000 + 4), {
      user_identity: { email: "eve@example.com", subject_name: null, auth_method: "x".repeat(100_000) },
    });
    writeFileSync(file, `${JSON.stringify(fromFile)}\n${JSON.stringify(large)}\n`);
    expect(await loadEventsFile(stack.warehouse, file)).toBe(2);

    stack.logsIngestion.reset();
    const summary = await exportOnce({
      stack,
      container,
      options: {
        filter: ALL_ROWS,
        redaction: [],
        start: { kind: "at", us: t0 * 1000 },
        settleDelayMs: 600_000,
        lateHorizonMs: 24 * HOUR,
        timeBudgetMs: HOUR,
        batchEvents: 50,
        lockTtlMs: 60_000,
      },
      now: () => t0 + HOUR,
    });
    expect(summary.eventsDelivered).toBe(4);

    const archived = new Map((await archivedEvents(container)).map((e) => [e.event_id, e as unknown as Record<string, unknown>]));
    const added = ["workspace_tier", "risk_score", "confidence", "is_internal", "labels", "client_info", "region"];
    for (const line of archived.values()) {
      // Every line: the known columns in their order, then the added ones in the table's order; never the query's helper column.
      expect(Object.keys(line)).toEqual([...AUDIT_COLUMNS, ...added]);
      expect(Object.keys(line.user_identity as object)).toEqual(["email", "subject_name", "display_name", "groups", "auth_method"]);
    }
    const postedLine = archived.get(posted.event_id as string)!;
    for (const column of added.slice(0, -1)) expect(postedLine[column], column).toEqual(posted[column]);
    expect(postedLine.region).toBeNull();
    expect(postedLine.user_identity).toEqual({ ...(posted.user_identity as object), auth_method: null });
    expect(postedLine.response).toEqual(posted.response);
    expect(postedLine.identity_metadata).toEqual(posted.identity_metadata);
    const fileLine = archived.get(fromFile.event_id as string)!;
    expect(fileLine).toMatchObject({ region: "westeurope", risk_score: 2, workspace_tier: null, client_info: null });
    expect(fileLine.user_identity).toEqual({ ...(fromFile.user_identity as object), groups: null });
    // Rows written before the table grew read NULL in what was added.
    const plainLine = archived.get(plain.event_id as string)!;
    expect(added.map((c) => plainLine[c])).toEqual(added.map(() => null));
    expect(plainLine.identity_metadata).toBeNull();
    expect((archived.get(large.event_id as string)!.user_identity as { auth_method: string }).auth_method).toBe("x".repeat(100_000));

    const records = new Map(ingestedRecords(stack).map((r) => [r.EventId, r]));
    expect(records.size).toBe(4);
    for (const record of records.values()) expect(Object.keys(record)).toEqual(DECLARED);
    const postedRecord = records.get(posted.event_id as string)!;
    expect(postedRecord.UserIdentity).toEqual({ ...(posted.user_identity as object), auth_method: null });
    expect(postedRecord.IdentityMetadata).toEqual(posted.identity_metadata);
    expect(postedRecord).toMatchObject({ ResponseStatusCode: 403, ResponseErrorMessage: "denied", UserEmail: "ann@example.com" });
    expect(records.get(fromFile.event_id as string)!.UserIdentity).toMatchObject({ auth_method: "oauth-m2m" });
    const largeIdentity = records.get(large.event_id as string)!.UserIdentity!;
    expect(largeIdentity).toMatchObject({ email: "eve@example.com", [TRUNCATED_KEYS_PARAM]: "auth_method" });
    expect(largeIdentity).not.toHaveProperty(OMITTED_KEY_COUNT_PARAM);
    expect(JSON.stringify(largeIdentity).length).toBeLessThan(64 * 1024);
  });
});
