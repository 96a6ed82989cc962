import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { loadConfig } from "../../shared/config";
import { backfillClients, startBackfill } from "../../shared/backfill/control";
import { workQueue } from "../../shared/backfill/deliver";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { archivedEvents, containerFor, expectExactlyOnce, ingestedRecords } from "../support/exportHarness";

/**
 * Two regions (a SQL warehouse stand-in each): every region's table holds the account-level events,
 * with the same event_id, and its own workspaces' events. A backfill of both sources, to both sinks,
 * archives and ingests each event once: the account-level ones from the first source only.
 */
let stack: SandboxStack;
const DAY0 = Date.UTC(2026, 10, 20);
const workspace: AuditRow[][] = [[], []];
const account: AuditRow[] = [];

beforeAll(async () => {
  stack = await startSandboxStack({ synthetic: 0, regions: 2 });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
  for (let i = 0; i < 60; i++) {
    const us = (DAY0 + i * 40 * 60_000) * 1000;
    workspace[0]!.push(auditRow(isoMicros(us + 1), { workspace_id: "1111111111111111" }));
    workspace[1]!.push(auditRow(isoMicros(us + 2), { workspace_id: "2222222222222222" }));
    if (i % 3 === 0) account.push(auditRow(isoMicros(us + 3), { workspace_id: "0", audit_level: "ACCOUNT_LEVEL", service_name: "accounts" }));
  }
  await stack.warehouses[0]!.appendRows([...workspace[0]!, ...account]);
  await stack.warehouses[1]!.appendRows([...workspace[1]!, ...account]);
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

describe("a backfill of several regions", () => {
  it("archives and ingests the account-level events once, from the first source, and each region's own events once", async () => {
    const settings = { ...stack.contract.env, EXPORT_CONTAINER: "backfill-regions", EXPORT_START: new Date(DAY0 + 2 * 86_400_000).toISOString() };
    const config = loadConfig(settings);
    expect(config.sources.map((s) => s.name)).toEqual(["region1", "region2"]);
    const clients = backfillClients(config, settings);
    const started = await startBackfill(config, clients, { from: "2026-11-20", sinks: "both" }, Date.now());
    expect(started.manifest.slices.map((s) => `${s.source}/${s.day}:${s.accountLevel}`)).toEqual([
      "region1/2026-11-20:true",
      "region1/2026-11-21:true",
      "region2/2026-11-20:false",
      "region2/2026-11-21:false",
    ]);
    const result = await workQueue(
      {
        config,
        log: { info: () => undefined, warn: () => undefined },
        queue: clients.queue,
        backfill: clients.store,
        credential: clients.credential,
        maxDequeueCount: 5,
      },
      { idlePollMs: 200 },
    );
    expect(result).toMatchObject({ done: 4, failures: 0 });
    const expected = [...workspace[0]!, ...workspace[1]!, ...account].map((r) => String(r.event_id));
    expectExactlyOnce(
      (await archivedEvents(containerFor(stack, "backfill-regions"))).map((e) => e.event_id),
      expected,
      "archive",
    );
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      expected,
      "Log Analytics",
    );
  }, 120_000);
});
