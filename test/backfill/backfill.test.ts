import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { loadConfig, type AppConfig } from "../../shared/config";
import { ConfigError } from "../../shared/errors";
import { runExportCycle } from "../../shared/export/cycle";
import type { ExportStore } from "../../shared/export/ports";
import { backfillClients, cancelBackfill, startBackfill, type BackfillClients } from "../../shared/backfill/control";
import { deliverSlice, workQueue, type DeliveryContext } from "../../shared/backfill/deliver";
import { readBackfillStatus } from "../../shared/backfill/status";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import {
  CrashSwitch,
  SimulatedCrash,
  archivedEvents,
  containerFor,
  crashingStore,
  expectExactlyOnce,
  ingestedRecords,
  overriding,
  startStack,
} from "../support/exportHarness";

/**
 * A backfill against the local stack: Azurite's queue and blobs, the SQL warehouse stand-in
 * through the real driver, the Logs Ingestion stand-in through the real client. Days of events
 * before the live export's start are backfilled to both sinks while deliveries crash mid-slice
 * and one message is delivered twice; then the live export runs from its start. Every event is
 * in each sink exactly once, and a backfill can never reach into the live export's range.
 */
let stack: SandboxStack;
const DAY = 86_400_000;
const DAY0 = Date.UTC(2026, 10, 1); // 2026-11-01: inside the table's 365 days
const LIVE_START = DAY0 + 3 * DAY + 6 * 3600_000; // the live export began on the fourth day at 06:00
const CONTAINER = "backfill-test";
const LOCK_TTL_MS = 1500;
const quiet = { info: () => undefined, warn: () => undefined };

const backfillIds: string[] = [];
const liveIds: string[] = [];
const accountIds: string[] = [];

function rowsOfDay(dayStartMs: number, endMs: number, count: number): AuditRow[] {
  return Array.from({ length: count }, (_, i) => {
    const us = (dayStartMs + Math.floor(((endMs - dayStartMs) * i) / count)) * 1000 + (i % 5);
    // Every 13th event is account-level: every region's table holds those.
    return auditRow(
      isoMicros(us),
      i % 13 === 0 ? { workspace_id: "0", audit_level: "ACCOUNT_LEVEL", service_name: "accounts" } : { request_params: { i: String(i), pad: "x".repeat(400) } },
    );
  });
}

beforeAll(async () => {
  stack = await startStack();
  const rows: AuditRow[] = [];
  for (let day = 0; day < 3; day++) rows.push(...rowsOfDay(DAY0 + day * DAY, DAY0 + (day + 1) * DAY, 120));
  rows.push(...rowsOfDay(DAY0 + 3 * DAY, LIVE_START, 60));
  rows.push(...rowsOfDay(LIVE_START, LIVE_START + 2 * 3600_000, 50));
  for (const row of rows) {
    const us = Date.parse(String(row.event_time)) * 1000;
    (us < LIVE_START * 1000 ? backfillIds : liveIds).push(String(row.event_id));
    if (row.workspace_id === "0") accountIds.push(String(row.event_id));
  }
  await stack.warehouse.appendRows(rows);
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { ...stack.contract.env, EXPORT_CONTAINER: CONTAINER, EXPORT_START: new Date(LIVE_START).toISOString(), ...extra };
}

function open(extra: Record<string, string> = {}): { config: AppConfig; clients: BackfillClients; settings: Record<string, string> } {
  const settings = env(extra);
  const config = loadConfig(settings);
  return { config, clients: backfillClients(config, settings), settings };
}

function delivery(config: AppConfig, clients: BackfillClients, extra: Partial<DeliveryContext> = {}): DeliveryContext {
  return {
    config,
    log: quiet,
    queue: clients.queue,
    backfill: clients.store,
    credential: clients.credential,
    maxDequeueCount: 5,
    options: { tuning: { lockTtlMs: LOCK_TTL_MS, batchEvents: 40 } },
    ...extra,
  };
}

describe("backfill", () => {
  it("archives and ingests every day once despite crashes mid-slice and a duplicated message, and meets the live export without overlap", async () => {
    const { config, clients, settings } = open();
    await containerFor(stack, CONTAINER).createIfNotExists();

    // The backfill cannot reach into the live export's range.
    await expect(startBackfill(config, clients, { from: "2026-11-01", to: "2026-11-05", sinks: "both" }, Date.now())).rejects.toThrow(ConfigError);

    const started = await startBackfill(config, clients, { from: "2026-11-01", sinks: "both" }, Date.now());
    expect(started.enqueued).toBe(4);
    expect(started.manifest.slices.at(-1)).toMatchObject({ day: "2026-11-04", to: "2026-11-04T06:00:00.000000Z" });

    // One message delivered twice: a copy sits on the queue.
    const first = await clients.queue.receive(30);
    expect(first).toBeDefined();
    await clients.queue.send(first!.body);

    // Two deliveries die mid-slice (the first after its second archive blob, the next at its first journal write).
    for (const crashAt of [
      { step: "after writeArchive", occurrence: 2 },
      { step: "before writeJournal", occurrence: 1 },
    ]) {
      const sw = new CrashSwitch(crashAt);
      const context = delivery(config, clients, {
        options: { tuning: { lockTtlMs: LOCK_TTL_MS, batchEvents: 40 }, wrapStore: (store: ExportStore) => crashingStore(store, sw) },
      });
      await expect(deliverSlice(first!.body, first!.dequeueCount, context)).rejects.toThrow(SimulatedCrash);
      // The process "died" holding the slice's lock: it expires after LOCK_TTL_MS.
      await new Promise((resolve) => setTimeout(resolve, LOCK_TTL_MS + 100));
    }
    await clients.queue.release(first!, 0);

    const result = await workQueue(delivery(config, clients), { retryDelaySeconds: 1, idlePollMs: 200 });
    expect(result.poisoned).toBe(0);

    const status = await readBackfillStatus(clients.store, Date.now());
    expect(status).toMatchObject({
      finished: true,
      slices: { done: 4, failed: 0, waiting: 0, running: 0 },
      eventsArchived: backfillIds.length,
      eventsIngested: backfillIds.length,
    });

    // Then the live export, from where it began.
    await runExportCycle(config, settings, quiet, { tuning: { batchEvents: 40 } });
    const archived = (await archivedEvents(containerFor(stack, CONTAINER))).map((e) => e.event_id);
    expectExactlyOnce(archived, [...backfillIds, ...liveIds], "archive");
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      [...backfillIds, ...liveIds],
      "Log Analytics",
    );

    // A second backfill over the same days finds them done: nothing is enqueued, nothing read.
    const again = await startBackfill(config, clients, { from: "2026-11-01", sinks: "both" }, Date.now());
    expect({ enqueued: again.enqueued, skipped: again.skipped.length }).toEqual({ enqueued: 0, skipped: 4 });
  }, 180_000);

  it("two instances given the same message: one exports the day, the other is told it is busy and enqueues it for later", async () => {
    const { config, clients } = open({ EXPORT_CONTAINER: "backfill-twice", BACKFILL_QUEUE: "backfill-twice" });
    await startBackfill(config, clients, { from: "2026-11-03", to: "2026-11-04" }, Date.now());
    const message = await clients.queue.receive(60);
    const outcomes = await Promise.all([0, 1].map(() => deliverSlice(message!.body, 1, delivery(config, clients))));
    expect(outcomes.map((o) => o.status).sort()).toEqual(["busy", "done"]);
    expect(outcomes.find((o) => o.status === "busy")?.retryAfterSeconds).toBe(Math.ceil(LOCK_TTL_MS / 1000));
    await clients.queue.delete(message!);
    // The busy one's copy comes back and finds the day done.
    await new Promise((resolve) => setTimeout(resolve, LOCK_TTL_MS + 500));
    const again = await workQueue(delivery(config, clients), { idlePollMs: 200 });
    expect(again).toMatchObject({ deliveries: 1, done: 1 });
    expect((await archivedEvents(containerFor(stack, "backfill-twice"))).length).toBe(120);
  }, 120_000);

  it("a slice whose time budget runs out enqueues its rest, and the next delivery resumes where it stopped", async () => {
    const { config, clients } = open({ EXPORT_CONTAINER: "backfill-budget", BACKFILL_QUEUE: "backfill-budget", BACKFILL_TIME_BUDGET: "PT10S" });
    await startBackfill(config, clients, { from: "2026-11-02", to: "2026-11-03" }, Date.now());
    // A clock that moves 1 s per look: the budget runs out after a few batches.
    let clock = Date.now();
    const fast = delivery(config, clients, { options: { now: () => (clock += 1000), tuning: { lockTtlMs: 3_600_000, batchEvents: 20 } } });
    const first = await clients.queue.receive(60);
    const outcome = await deliverSlice(first!.body, 1, fast);
    await clients.queue.delete(first!);
    expect(outcome.status).toBe("continue");
    expect(outcome.summary!.eventsDelivered).toBeGreaterThan(0);
    expect(outcome.summary!.eventsDelivered).toBeLessThan(120);
    expect(await clients.queue.approximateCount()).toBe(1);
    const rest = await workQueue(delivery(config, clients), { idlePollMs: 200 });
    expect(rest.done).toBe(1);
    const day = backfillIds.filter((_, i) => i >= 120 && i < 240);
    expectExactlyOnce(
      (await archivedEvents(containerFor(stack, "backfill-budget"))).map((e) => e.event_id),
      day,
      "archive",
    );
  }, 120_000);

  it("cancel drops the waiting slices: none of their events is read", async () => {
    const { config, clients } = open({ EXPORT_CONTAINER: "backfill-cancel" });
    await containerFor(stack, "backfill-cancel").createIfNotExists();
    const started = await startBackfill(config, clients, { from: "2026-11-01", to: "2026-11-03" }, Date.now());
    expect(started.enqueued).toBe(2);
    const cancelled = await cancelBackfill(clients.store, Date.now());
    expect(cancelled.cancelledAt).toBeDefined();
    const result = await workQueue(delivery(config, clients), { idlePollMs: 200 });
    expect(result).toMatchObject({ deliveries: 2, done: 0, failures: 0 });
    expect(await archivedEvents(containerFor(stack, "backfill-cancel"))).toEqual([]);
    expect((await readBackfillStatus(clients.store, Date.now()))?.slices).toMatchObject({ cancelled: 2, done: 0, total: 2 });
    // A new backfill runs them after all.
    expect((await startBackfill(config, clients, { from: "2026-11-01", to: "2026-11-03" }, Date.now())).enqueued).toBe(2);
    await workQueue(delivery(config, clients), { idlePollMs: 200 });
    expect((await archivedEvents(containerFor(stack, "backfill-cancel"))).length).toBe(240);
    // Reconciliation knows these days are in the archive only, by choice.
    expect(await clients.store.daysOf(DAY0, DAY0 + 3 * DAY)).toEqual(
      new Map([
        ["2026-11-01", "archive_only"],
        ["2026-11-02", "archive_only"],
      ]),
    );

    // The cheap path's second half: the same days with both sinks are sent from the archive, once,
    // though the first delivery fails half-way (its second call).
    const before = ingestedRecords(stack).length;
    const replay = await startBackfill(config, clients, { from: "2026-11-01", to: "2026-11-03", sinks: "both" }, Date.now());
    expect(replay.enqueued).toBe(2);
    expect(replay.notes.join(" ")).toContain("are sent to Log Analytics from the archive, once; the warehouse is not read again");
    let calls = 0;
    const failing = delivery(config, clients, {
      options: {
        tuning: { lockTtlMs: LOCK_TTL_MS },
        wrapSink: (sink) => ({
          send: (records) => (++calls === 2 ? Promise.reject(new Error("socket hang up")) : sink.send(records)),
          probe: () => sink.probe(),
        }),
      },
    });
    const first = await clients.queue.receive(30);
    await expect(deliverSlice(first!.body, first!.dequeueCount, failing)).rejects.toThrow("socket hang up");
    await clients.queue.release(first!, 0);
    await workQueue(delivery(config, clients), { idlePollMs: 200 });
    expectExactlyOnce(
      ingestedRecords(stack)
        .slice(before)
        .map((r) => r.EventId),
      backfillIds.slice(0, 240),
      "Log Analytics, replayed",
    );
    expect(await readBackfillStatus(clients.store, Date.now())).toMatchObject({ finished: true, eventsIngested: 240, slices: { done: 2 } });
    expect(await clients.store.daysOf(DAY0, DAY0 + 3 * DAY)).toEqual(new Map());
  }, 120_000);

  it("a slice that keeps failing ends in the poison queue and is reported, never skipped", async () => {
    const { config, clients } = open({ EXPORT_CONTAINER: "backfill-poison", BACKFILL_QUEUE: "backfill-poison-test" });
    await containerFor(stack, "backfill-poison").createIfNotExists();
    await startBackfill(config, clients, { from: "2026-11-02", to: "2026-11-03" }, Date.now());
    const failing = (store: ExportStore): ExportStore =>
      overriding(store, {
        writeArchive: () => Promise.reject(Object.assign(new Error("This request is not authorized to perform this operation."), { statusCode: 403 })),
      });
    const context = delivery(config, clients, { maxDequeueCount: 2, options: { tuning: { lockTtlMs: LOCK_TTL_MS }, wrapStore: failing } });
    const result = await workQueue(context, { retryDelaySeconds: 0, idlePollMs: 200 });
    expect(result).toMatchObject({ failures: 2, poisoned: 1, done: 0 });
    expect(await clients.queue.approximatePoisonCount()).toBe(1);
    const status = await readBackfillStatus(clients.store, Date.now());
    expect(status?.slices).toMatchObject({ failed: 1, done: 0 });
    expect(status?.failed[0]).toMatchObject({ source: "default", day: "2026-11-02", attempts: 2, error: expect.stringContaining("not authorized") });
    expect(status?.finished).toBe(true);
  }, 120_000);
});
