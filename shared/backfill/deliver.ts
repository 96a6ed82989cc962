import type { TokenCredential } from "@azure/identity";
import type { AppConfig } from "../config";
import { describeError } from "../errors";
import type { ExportLog } from "../export/ports";
import type { ReceivedMessage, SliceQueue } from "../storageQueue";
import { recordSliceFailure, runSlice, type SliceOutcome, type SliceRunOptions } from "./slice";
import type { BackfillStore } from "./store";

/**
 * A slice message, delivered: what the queue-triggered function and `dbx-audit backfill work`
 * both do with it. The slice runs; the rest of a slice whose time budget ran out is enqueued
 * again, and a slice another instance holds comes back after its lock would expire. A failure
 * is thrown (the message is retried); on its last attempt the slice's state records it first,
 * so the status and the health check report it while the message sits in the poison queue.
 */
export interface DeliveryContext {
  config: AppConfig;
  log: ExportLog;
  queue: SliceQueue;
  backfill: BackfillStore;
  /** The identity the slices read and send with, one for every delivery. */
  credential: TokenCredential;
  /** Attempts before the poison queue (host.json's maxDequeueCount). */
  maxDequeueCount: number;
  options?: SliceRunOptions;
}

export async function deliverSlice(body: unknown, dequeueCount: number, context: DeliveryContext): Promise<SliceOutcome> {
  try {
    const outcome = await runSlice(body, context.config, { store: context.backfill, credential: context.credential }, context.log, context.options);
    if (outcome.status === "continue") await context.queue.send(outcome.message);
    if (outcome.status === "busy") await context.queue.send(outcome.message, outcome.retryAfterSeconds ?? 60);
    context.log.info(describeOutcome(outcome));
    return outcome;
  } catch (error) {
    if (dequeueCount >= context.maxDequeueCount) {
      await recordSliceFailure(context.backfill, body, error, dequeueCount, (context.options?.now ?? Date.now)());
      context.log.warn(
        `Backfill slice failed on its last attempt (${dequeueCount} of ${context.maxDequeueCount}); it goes to ${context.queue.name}-poison: ${describeError(error)}`,
      );
    }
    throw error;
  }
}

export function describeOutcome(outcome: SliceOutcome): string {
  const slice = `Backfill slice ${outcome.message.source}/${outcome.message.day}`;
  const read =
    outcome.replayed !== undefined
      ? ` (${outcome.replayed} archived events sent to Log Analytics in this invocation)`
      : outcome.summary
        ? ` (${outcome.summary.eventsDelivered} events archived, ${outcome.summary.recordsIngested} ingested in this invocation)`
        : "";
  switch (outcome.status) {
    case "done":
      return `${slice} done${read}.`;
    case "already-done":
      return `${slice} was already done: nothing read.`;
    case "continue":
      return `${slice} stopped at its time budget${read}; the rest is enqueued again.`;
    case "busy":
      return `${slice} is being exported by another instance; enqueued again in ${outcome.retryAfterSeconds} s.`;
    case "cancelled":
      return `${slice} dropped: backfill ${outcome.message.backfill} was cancelled.`;
  }
}

export interface WorkOptions {
  /** How long a taken message stays hidden; renewed while its slice runs (a crashed worker's message comes back after it). */
  visibilityTimeoutSeconds?: number;
  /** A failed message is visible again after this (host.json's visibilityTimeout). */
  retryDelaySeconds?: number;
  /** While messages are hidden (other workers' slices, delayed retries), look again after this. */
  idlePollMs?: number;
  onSlice?: (outcome: SliceOutcome | undefined) => void;
}

export interface WorkResult {
  deliveries: number;
  done: number;
  failures: number;
  poisoned: number;
}

/**
 * The queue trigger, from a shell: takes one message at a time until the queue is empty (no
 * message waiting, none hidden: a slice another worker runs may still enqueue its rest, and
 * then this loop is still there or that worker picks it up). Poison handling as the host's.
 */
export async function workQueue(context: DeliveryContext, options: WorkOptions = {}): Promise<WorkResult> {
  const visibility = options.visibilityTimeoutSeconds ?? 60;
  const result: WorkResult = { deliveries: 0, done: 0, failures: 0, poisoned: 0 };
  for (;;) {
    const message = await context.queue.receive(visibility);
    if (!message) {
      if ((await context.queue.approximateCount()) === 0) return result;
      await sleep(options.idlePollMs ?? 1000);
      continue;
    }
    if (message.dequeueCount > context.maxDequeueCount) {
      await context.queue.moveToPoison(message);
      result.poisoned += 1;
      continue;
    }
    result.deliveries += 1;
    const renewing = keepHidden(context.queue, message, visibility, context.log);
    try {
      const outcome = await deliverSlice(message.body, message.dequeueCount, context);
      renewing.stop();
      await renewing.idle;
      await context.queue.delete(message);
      if (outcome.status === "done" || outcome.status === "already-done") result.done += 1;
      options.onSlice?.(outcome);
    } catch (error) {
      renewing.stop();
      await renewing.idle;
      result.failures += 1;
      context.log.warn(`Backfill delivery failed (attempt ${message.dequeueCount} of ${context.maxDequeueCount}): ${describeError(error)}`);
      if (message.dequeueCount >= context.maxDequeueCount) {
        await context.queue.moveToPoison(message);
        result.poisoned += 1;
      } else await context.queue.release(message, options.retryDelaySeconds ?? 30);
      options.onSlice?.(undefined);
    }
  }
}

/** Renews a message's invisibility every third of its timeout while its slice runs. */
function keepHidden(queue: SliceQueue, message: ReceivedMessage, seconds: number, log: ExportLog): { stop: () => void; idle: Promise<void> } {
  let current: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      current = current
        .then(() => queue.renew(message, seconds))
        .catch((error: unknown) =>
          log.warn(`Could not keep the slice's message hidden (another worker may take it; the slice's lock keeps it exactly once): ${describeError(error)}`),
        );
    },
    Math.max(1000, (seconds * 1000) / 3),
  );
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    get idle() {
      return current;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
