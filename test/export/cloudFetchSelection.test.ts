import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { loadConfig } from "../../shared/config";
import { runExportCycle } from "../../shared/export/cycle";
import { rowsBetween } from "../support/auditRows";
import { archivedEvents, containerFor, startStack } from "../support/exportHarness";

/**
 * DATABRICKS_CLOUD_FETCH through the whole export cycle (settings, reader thread, real driver):
 * with true the warehouse stand-in answers through CloudFetch links and serves the result files,
 * with false it sends inline pages and issues no link; either way every event is archived.
 */
let stack: SandboxStack;
const HOUR = 3600_000;
const EVENTS = 3_000;
const t0 = Date.now() - 4 * HOUR;

beforeAll(async () => {
  stack = await startStack();
  // Small result files, so one export reads several.
  stack.warehouse.setCloudFetch({ fileBytes: 64 * 1024 });
  await stack.warehouse.appendRows(rowsBetween(t0, 2 * HOUR, EVENTS));
});
afterAll(async () => {
  await stack?.close();
});

async function exportWith(cloudFetch: "true" | "false", container: string): Promise<{ links: number; files: number; archived: number }> {
  const settings = { ...stack.contract.env, EXPORT_CONTAINER: container, EXPORT_START: new Date(t0).toISOString(), DATABRICKS_CLOUD_FETCH: cloudFetch };
  const before = stack.warehouse.stats();
  const summary = await runExportCycle(loadConfig(settings), settings, { info: () => undefined, warn: () => undefined });
  const after = stack.warehouse.stats();
  expect(summary.eventsDelivered).toBe(EVENTS);
  return {
    links: after.linksIssued - before.linksIssued,
    files: after.filesServed - before.filesServed,
    archived: (await archivedEvents(containerFor(stack, container))).length,
  };
}

describe("DATABRICKS_CLOUD_FETCH", () => {
  it("true: the export reads through the warehouse's CloudFetch links", async () => {
    const { links, files, archived } = await exportWith("true", "cloudfetch-on");
    expect(links).toBeGreaterThanOrEqual(3);
    expect(files).toBe(links);
    expect(archived).toBe(EVENTS);
  });

  it("false: the export reads inline pages and asks for no link", async () => {
    const { links, files, archived } = await exportWith("false", "cloudfetch-off");
    expect(links).toBe(0);
    expect(files).toBe(0);
    expect(archived).toBe(EVENTS);
  });
});
