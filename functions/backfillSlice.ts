import { app, type InvocationContext } from "@azure/functions";
import { DEFAULTS, loadConfig } from "../shared/config";
import { ConfigError, describeError } from "../shared/errors";
import { backfillClients } from "../shared/backfill/control";
import { deliverSlice } from "../shared/backfill/deliver";
import { readHostFunctionTimeout, readHostMaxDequeueCount } from "../shared/hostSettings";
import { DEFAULT_BACKFILL_QUEUE } from "../shared/storageQueue";

/**
 * One backfill slice (a source's UTC day) per message of the BACKFILL_QUEUE queue, on the
 * Functions host's storage (identity-based AzureWebJobsStorage). A slice stopped by its time
 * budget enqueues the rest; a failure is retried by the host and, after maxDequeueCount
 * attempts, goes to the poison queue, recorded in the slice's state for the status and the
 * health check. Scale-out is the host's: one slice per instance (host.json batchSize 1).
 */
export async function backfillSlice(message: unknown, context: InvocationContext): Promise<void> {
  const dequeueCount = Number(context.triggerMetadata?.dequeueCount ?? 1);
  let config;
  try {
    config = loadConfig(process.env, { storage: true, functionTimeout: readHostFunctionTimeout() ?? DEFAULTS.functionTimeoutHost });
  } catch (error) {
    context.error(`backfillSlice cannot start: ${error instanceof ConfigError ? error.message : describeError(error)}`);
    throw error;
  }
  const clients = backfillClients(config, process.env);
  try {
    await deliverSlice(message, dequeueCount, {
      config,
      log: { info: (m) => context.log(m), warn: (m) => context.warn(m) },
      queue: clients.queue,
      backfill: clients.store,
      credential: clients.credential,
      maxDequeueCount: readHostMaxDequeueCount(),
    });
  } catch (error) {
    context.error(`backfillSlice failed (attempt ${dequeueCount}): ${describeError(error)}`);
    throw error;
  }
}

app.storageQueue("backfillSlice", {
  // Read, not validated, at load (as the export's schedule): a bad value is reported by the handler.
  queueName: process.env.BACKFILL_QUEUE?.trim() || DEFAULT_BACKFILL_QUEUE,
  connection: "AzureWebJobsStorage",
  handler: backfillSlice,
});
