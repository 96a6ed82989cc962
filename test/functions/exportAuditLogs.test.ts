import { InvocationContext, type Timer } from "@azure/functions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { exportAuditLogs } from "../../functions/exportAuditLogs";
import { ConfigError } from "../../shared/errors";
import { auditRow, isoMicros } from "../support/auditRows";
import { archivedEvents, containerFor, expectExactlyOnce, ingestedRecords, startStack } from "../support/exportHarness";

/** The timer function as the Functions host calls it, with the app settings of the sandbox. */
let stack: SandboxStack;
const savedEnv = { ...process.env };
const timer: Timer = { isPastDue: false, schedule: { adjustForDST: false }, scheduleStatus: { last: "", next: "", lastUpdated: "" } };

function invocation() {
  const lines: { level: string; text: string }[] = [];
  const context = new InvocationContext({
    functionName: "exportAuditLogs",
    logHandler: (level, ...args) => lines.push({ level, text: args.map(String).join(" ") }),
  });
  return { context, lines };
}

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  process.env = savedEnv;
  await stack?.close();
});

describe("exportAuditLogs (timer)", () => {
  it("exports new rows to Blob and Log Analytics and logs one summary line", async () => {
    const start = Date.now() - 3 * 3600_000;
    const rows = Array.from({ length: 25 }, (_, i) => auditRow(isoMicros((start + i * 60_000) * 1000), { service_name: "jobs" }));
    await stack.warehouse.appendRows(rows);
    Object.assign(process.env, stack.contract.env, { EXPORT_START: new Date(start).toISOString(), EXPORT_CONTAINER: "timer-test" });
    stack.logsIngestion.reset();

    const { context, lines } = invocation();
    await exportAuditLogs(timer, context);
    const summaries = lines.filter((l) => l.text.startsWith("export "));
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.text).toMatch(/delivered 25 .*ingested 25 records/);
    const ids = rows.map((r) => r.event_id as string);
    expectExactlyOnce(
      (await archivedEvents(containerFor(stack, "timer-test"))).map((e) => e.event_id),
      ids,
      "blob",
    );
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      ids,
      "Log Analytics",
    );
    for (const line of lines) {
      expect(line.text).not.toContain(stack.contract.databricks.token);
      expect(line.text).not.toContain("AccountKey");
    }
  });

  it("writes to Blob Storage by account URL with the managed identity (no key)", async () => {
    const start = Date.now() - 2 * 3600_000;
    const rows = [auditRow(isoMicros(start * 1000 + 3)), auditRow(isoMicros(start * 1000 + 4))];
    await stack.warehouse.appendRows(rows);
    const env: Record<string, string | undefined> = { ...stack.contract.env, EXPORT_START: new Date(start).toISOString(), EXPORT_CONTAINER: "timer-identity" };
    delete env.EXPORT_STORAGE_CONNECTION_STRING;
    env.EXPORT_STORAGE_ACCOUNT_URL = stack.blob.accountUrl;
    Object.assign(process.env, env);
    delete process.env.EXPORT_STORAGE_CONNECTION_STRING;
    const { context } = invocation();
    try {
      await exportAuditLogs(timer, context);
    } finally {
      delete process.env.EXPORT_STORAGE_ACCOUNT_URL;
    }
    const archived = (await archivedEvents(containerFor(stack, "timer-identity"))).map((e) => e.event_id);
    expect(archived.sort()).toEqual(rows.map((r) => r.event_id as string).sort());
    expect(stack.identity.requests().some((r) => r.resource.startsWith("https://storage.azure.com"))).toBe(true);
  });

  it("archives anyway, then fails the invocation when Log Analytics refuses, with a summary line saying how far behind and why", async () => {
    const start = Date.now() - 2 * 3600_000;
    await stack.warehouse.appendRows([auditRow(isoMicros(start * 1000))]);
    Object.assign(process.env, stack.contract.env, { EXPORT_START: new Date(start).toISOString(), EXPORT_CONTAINER: "timer-forbidden" });
    stack.logsIngestion.setFaults({ forbidden: true });
    const { context, lines } = invocation();
    await expect(exportAuditLogs(timer, context)).rejects.toThrow(
      /archive is complete up to .* but Log Analytics is 1 batch\(es\) \(1 events\) behind it: .*HTTP 403/,
    );
    stack.logsIngestion.setFaults({});
    expect(lines.some((l) => l.level === "error" && l.text.includes("exportAuditLogs failed"))).toBe(true);
    const summary = lines.find((l) => l.text.startsWith("export "));
    expect(summary?.text).toMatch(
      /delivered 1 .*Log Analytics 1 batch\(es\) \/ 1 events behind the archive since .*Fix: Give the app's identity the Monitoring Metrics Publisher role/,
    );
  });

  it("fails with every invalid setting named, before any I/O", async () => {
    process.env = { ...savedEnv, DATABRICKS_SERVER_HOSTNAME: "", EXPORT_SETTLE_DELAY: "soon" };
    const { context } = invocation();
    const error = await exportAuditLogs(timer, context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.join("\n")).toMatch(
      /DATABRICKS_SERVER_HOSTNAME[\s\S]*DATABRICKS_HTTP_PATH[\s\S]*EXPORT_STORAGE_ACCOUNT_URL[\s\S]*EXPORT_SETTLE_DELAY/,
    );
  });
});
