import type { ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { STATE_BLOB } from "../../shared/blobStore";
import { loadConfig } from "../../shared/config";
import { runExportCycle } from "../../shared/export/cycle";
import { runChecks } from "../../shared/prerequisites";
import { rowsBetween } from "../support/auditRows";
import { containerFor, startStack } from "../support/exportHarness";

/**
 * EXPORT_STATE_CONTAINER through the export cycle and the prerequisite check, against Azurite: the
 * archive's container receives the audit/ blobs and nothing else (it can be write-once), the state
 * container everything the export rewrites; a second run over the same events, from a state rolled
 * back to before the first, rewrites no archive blob and fails nothing (retries are harmless).
 */
let stack: SandboxStack;
const HOUR = 3600_000;
const EVENTS = 500;
const t0 = Date.now() - 4 * HOUR;
const ARCHIVE = "worm-archive";
const STATE = "worm-state";

beforeAll(async () => {
  stack = await startStack();
  await stack.warehouse.appendRows(rowsBetween(t0, 2 * HOUR, EVENTS));
});
afterAll(async () => {
  await stack?.close();
});

const settings = { EXPORT_CONTAINER: ARCHIVE, EXPORT_STATE_CONTAINER: STATE, EXPORT_START: new Date(t0).toISOString() };
const env = (): Record<string, string | undefined> => ({ ...stack.contract.env, ...settings });

async function blobs(container: ContainerClient): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for await (const blob of container.listBlobsFlat()) found.set(blob.name, blob.properties.etag);
  return found;
}

describe("EXPORT_STATE_CONTAINER", () => {
  it("keeps the archive's container to audit/ blobs, written once, and the rest in the state container", async () => {
    const run = () => runExportCycle(loadConfig(env()), env(), { info: () => undefined, warn: () => undefined });
    expect((await run()).eventsDelivered).toBe(EVENTS);
    const archive = containerFor(stack, ARCHIVE);
    const state = containerFor(stack, STATE);
    const archived = await blobs(archive);
    expect(archived.size).toBeGreaterThan(0);
    expect([...archived.keys()].filter((name) => !name.startsWith("audit/"))).toEqual([]);
    const stateNames = [...(await blobs(state)).keys()];
    expect(stateNames).toContain(STATE_BLOB);
    expect(stateNames.filter((name) => name.startsWith("audit/"))).toEqual([]);

    // A run that starts again from the first run's start (its state lost) writes the same names:
    // each already holds these lines, so nothing is rewritten and nothing fails.
    await state.deleteBlob(STATE_BLOB);
    const again = await run();
    expect(again.eventsDelivered).toBe(EVENTS);
    expect(await blobs(archive)).toEqual(archived);
  });

  it("is checked by the prerequisite check without writing to the archive's container", async () => {
    const archive = containerFor(stack, ARCHIVE);
    const before = await blobs(archive);
    const report = await runChecks(env(), env(), { needs: { storage: true }, budgetMs: 30_000, maxRetries: 0 });
    const blob = report.checks.find((c) => c.name === "blob_container")!;
    expect(blob.status).toBe("PASS");
    expect(blob.detail).toMatch(
      new RegExp(
        `container '${STATE}' .* a probe blob under _state/ was written and deleted\\. The archive's container '${ARCHIVE}' .* is reachable \\(not written to: it is write-once\\)`,
      ),
    );
    expect(await blobs(archive)).toEqual(before);
    expect(report.checks.find((c) => c.name === "configuration")?.detail).toContain(`container ${ARCHIVE} (state in ${STATE})`);
  });
});
