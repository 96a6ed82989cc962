import * as functions from "@azure/functions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEVSTORE_KEY } from "../../sandbox/azurite";
import type { SandboxStack } from "../../sandbox/stack";
import { backfill } from "../../functions/backfill";
import { backfillSlice } from "../../functions/backfillSlice";
import { SliceQueue, loadQueueSettings } from "../../shared/storageQueue";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { processEnvOverrides } from "../support/checkHelpers";
import { runCli } from "../support/cli";
import { archivedEvents, containerFor, expectExactlyOnce, startStack } from "../support/exportHarness";

// The entry points as a user meets them: the HTTP function (function key) and the queue-triggered
// function through @azure/functions' own HttpRequest and InvocationContext, and the CLI's
// `backfill start|work|status|cancel` in a process of its own with the sandbox's env.
const { HttpRequest, InvocationContext } = functions;

let stack: SandboxStack;
const env = processEnvOverrides();
const DAY = 86_400_000;
const DAY0 = Date.UTC(2026, 10, 10);
const LIVE_START = new Date(DAY0 + 2 * DAY).toISOString(); // events on 2026-11-10 and -11, the live export from the 12th
const ids: string[] = [];
const logged: string[] = [];

beforeAll(async () => {
  stack = await startStack();
  const rows: AuditRow[] = Array.from({ length: 90 }, (_, i) => auditRow(isoMicros((DAY0 + Math.floor((2 * DAY * i) / 90)) * 1000)));
  ids.push(...rows.map((r) => String(r.event_id)));
  await stack.warehouse.appendRows(rows);
}, 120_000);
afterAll(async () => {
  await stack?.close();
  env.restore();
});

function context(name: string, dequeueCount = 1): functions.InvocationContext {
  return new InvocationContext({
    functionName: name,
    invocationId: "test-invocation",
    triggerMetadata: { dequeueCount },
    logHandler: (level, ...args) => logged.push(`${level}: ${args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`),
  });
}

async function call(method: string, body?: unknown, query = ""): Promise<{ status: number; body: Record<string, unknown> }> {
  const request = new HttpRequest({
    method,
    url: `http://localhost:7071/api/backfill?code=function-key-value${query}`,
    ...(body === undefined ? {} : { body: { string: typeof body === "string" ? body : JSON.stringify(body) } }),
  });
  const response = await backfill(request, context("backfill"));
  return { status: response.status ?? 200, body: response.jsonBody as Record<string, unknown> };
}

describe("the backfill functions", () => {
  it("POST starts, the queue trigger exports each day, GET reports it; bad input is a 400 naming the field, with nothing written", async () => {
    env.set({ ...stack.contract.env, EXPORT_CONTAINER: "backfill-http", EXPORT_START: LIVE_START, BACKFILL_QUEUE: "backfill-http" });
    const refused = await call("POST", { from: "2026-11-10T06:00:00Z", sinks: "everything", extra: "1" });
    expect(refused.status).toBe(400);
    expect(refused.body.problems).toEqual(["Unknown field 'extra': the body takes from, to, sinks and source."]);
    const badValues = await call("POST", { from: "2026-11-10T06:00:00Z", sinks: "everything" });
    expect(badValues.body.problems).toEqual([
      "sinks must be archive (the Blob archive only) or both (archive and Log Analytics); got 'everything'.",
      "from must be a UTC midnight (backfill slices are UTC days), e.g. 2026-11-10; got '2026-11-10T06:00:00Z'.",
    ]);
    expect((await call("POST", "not json")).status).toBe(400);
    expect(await containerFor(stack, "backfill-http").exists()).toBe(false);

    const started = await call("POST", { from: "2026-11-10", sinks: "both" });
    expect(started).toMatchObject({ status: 202, body: { enqueued: 2, skipped: 0, sinks: "both", to: "2026-11-12T00:00:00.000000Z" } });

    // The host hands each message to the trigger as the JSON it decoded.
    const queue = new SliceQueue(loadQueueSettings(process.env), () => {
      throw new Error("the sandbox's queue takes a connection string");
    });
    for (let message = await queue.receive(30); message; message = await queue.receive(30)) {
      await backfillSlice(message.body, context("backfillSlice", message.dequeueCount));
      await queue.delete(message);
    }
    expectExactlyOnce(
      (await archivedEvents(containerFor(stack, "backfill-http"))).map((e) => e.event_id),
      ids,
      "archive",
    );
    const status = await call("GET");
    expect(status.body).toMatchObject({ finished: true, eventsArchived: 90, eventsIngested: 90, slices: { done: 2, total: 2 } });
    expect(logged.some((line) => line.includes("Backfill slice default/2026-11-10 done"))).toBe(true);

    // A message that is not a slice fails by name (the host retries it, then poisons it).
    await expect(backfillSlice({ hello: "world" }, context("backfillSlice"))).rejects.toThrow(/Not a backfill slice message/);

    const cancelled = await call("DELETE");
    expect(cancelled).toMatchObject({ status: 200, body: { id: started.body.id } });
    const text = JSON.stringify([refused, badValues, started, status, cancelled]) + logged.join("\n");
    for (const secret of [DEVSTORE_KEY, stack.contract.storage.connectionString, "function-key-value"]) expect(text).not.toContain(secret);
  }, 120_000);
});

describe("dbx-audit backfill", () => {
  it("start, work with two processes, status and cancel, with the sandbox's env", async () => {
    const cliEnv = { ...process.env, ...stack.contract.env, EXPORT_CONTAINER: "backfill-cli", EXPORT_START: LIVE_START, BACKFILL_QUEUE: "backfill-cli" };
    const none = await runCli(["backfill", "status"], cliEnv);
    expect(none).toMatchObject({ code: 0, stdout: expect.stringContaining("No backfill has been started") });

    const refused = await runCli(["backfill", "start", "--from", "2026-11-10", "--to", "2026-11-13"], cliEnv);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--to 2026-11-13 is after where the live export of source 'default' began (2026-11-12T00:00:00.000000Z)");
    expect(refused.stderr).toContain("Nothing was read or written.");

    const started = await runCli(["backfill", "start", "--from", "2026-11-10", "--json"], cliEnv);
    expect(started.code).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ enqueued: 2, skipped: 0, sinks: "archive", queue: "backfill-cli" });

    const waiting = await runCli(["backfill", "status"], cliEnv);
    expect(waiting.stdout).toContain("Slices: 0 done, 0 running, 2 waiting, 0 failed (of 2;");
    expect(waiting.stdout).toContain("Queue: 2 message(s) waiting or in flight, 0 in the poison queue.");

    const worked = await runCli(["backfill", "work", "--workers", "2", "--json"], cliEnv);
    expect(worked.code).toBe(0);
    const workers = worked.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { deliveries: number; done: number; maxRssBytes: number });
    expect(workers).toHaveLength(2);
    expect(workers.reduce((n, w) => n + w.done, 0)).toBe(2);

    const done = await runCli(["backfill", "status", "--json"], cliEnv);
    expect(JSON.parse(done.stdout)).toMatchObject({ finished: true, eventsArchived: 90, slices: { done: 2 }, queue: { waiting: 0, poison: 0 } });
    expect((await archivedEvents(containerFor(stack, "backfill-cli"))).length).toBe(90);

    const cancelled = await runCli(["backfill", "cancel"], cliEnv);
    expect(cancelled.stdout).toMatch(
      /Backfill \S+ cancelled at .*: 0 waiting slice\(s\) will not run, 0 running slice\(s\) stop at the end of their invocation, 2 done stay done\./,
    );
    const again = await runCli(["backfill", "start", "--from", "2026-11-10"], cliEnv);
    expect(again.stdout).toContain("0 slice(s) enqueued on backfill-cli, 2 day(s) already done skipped.");
  }, 180_000);
});
