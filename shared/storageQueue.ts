import { ManagedIdentityCredential, type TokenCredential } from "@azure/identity";
import { QueueServiceClient, type QueueClient } from "@azure/storage-queue";
import type { Settings } from "./config";
import { ConfigError, statusOf } from "./errors";

/**
 * The backfill's Storage queue, in the Functions host's own storage account (AzureWebJobsStorage),
 * found the way the host finds it: a connection string (local runs, Azurite), or, identity-based,
 * `AzureWebJobsStorage__queueServiceUri` (or `__accountName`) with the identity that
 * `AzureWebJobsStorage__clientId` names. Messages are base64-encoded JSON: the queue trigger's
 * default `messageEncoding`, so the Functions host and `dbx-audit backfill work` read the same
 * messages. Failed messages end in `<queue>-poison`, as the host moves them.
 */

export const DEFAULT_BACKFILL_QUEUE = "dbx-audit-backfill";
/** Queue names: 3-63 characters, lowercase letters, digits and single hyphens, starting with a letter or digit. */
const QUEUE_NAME = /^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;

export interface QueueSettings {
  queueName: string;
  /** Connection string, or endpoint with the identity. */
  connection: { kind: "connectionString"; connectionString: string } | { kind: "endpoint"; queueServiceUri: string; clientId?: string };
}

/** Reads the queue's settings; every problem is named with its setting. */
export function readQueueSettings(settings: Settings, problems: string[]): QueueSettings | undefined {
  const read = (name: string): string | undefined => settings[name]?.trim() || undefined;
  const queueName = read("BACKFILL_QUEUE") ?? DEFAULT_BACKFILL_QUEUE;
  if (!QUEUE_NAME.test(queueName) || queueName.length > 63 - "-poison".length) {
    problems.push(
      `BACKFILL_QUEUE must be a Storage queue name of 3 to 56 characters (lowercase letters, digits, single hyphens; '-poison' is added for failed slices), e.g. '${DEFAULT_BACKFILL_QUEUE}'; got '${queueName}'.`,
    );
  }
  const connectionString = read("AzureWebJobsStorage");
  const serviceUri = read("AzureWebJobsStorage__queueServiceUri");
  const accountName = read("AzureWebJobsStorage__accountName");
  const clientId = read("AzureWebJobsStorage__clientId");
  let connection: QueueSettings["connection"] | undefined;
  if (connectionString) connection = { kind: "connectionString", connectionString };
  else if (serviceUri) {
    if (!/^https:\/\/[^/\s]+\/?/i.test(serviceUri)) {
      problems.push(
        `AzureWebJobsStorage__queueServiceUri must be the storage account's queue endpoint, e.g. 'https://<account>.queue.core.windows.net'; got '${serviceUri}'.`,
      );
    } else connection = { kind: "endpoint", queueServiceUri: serviceUri, ...(clientId ? { clientId } : {}) };
  } else if (accountName) {
    if (!/^[a-z0-9]{3,24}$/.test(accountName))
      problems.push(`AzureWebJobsStorage__accountName must be a storage account name (3-24 lowercase letters and digits); got '${accountName}'.`);
    else connection = { kind: "endpoint", queueServiceUri: `https://${accountName}.queue.core.windows.net`, ...(clientId ? { clientId } : {}) };
  } else {
    problems.push(
      "The backfill queue needs the Functions host's storage: AzureWebJobsStorage (a connection string, for local runs and Azurite) or AzureWebJobsStorage__queueServiceUri (https://<account>.queue.core.windows.net, with the identity; the templates set it). Copy them from the Function App's settings.",
    );
  }
  return connection && QUEUE_NAME.test(queueName) ? { queueName, connection } : undefined;
}

export function loadQueueSettings(settings: Settings): QueueSettings {
  const problems: string[] = [];
  const queue = readQueueSettings(settings, problems);
  if (!queue || problems.length > 0) throw new ConfigError(problems);
  return queue;
}

/** One message taken from the queue: hidden from other readers until `visibilityTimeout` passes. */
export interface ReceivedMessage {
  body: unknown;
  dequeueCount: number;
  messageId: string;
  popReceipt: string;
}

export class SliceQueue {
  readonly queue: QueueClient;
  readonly poison: QueueClient;

  constructor(settings: QueueSettings, fallbackCredential: () => TokenCredential) {
    const service =
      settings.connection.kind === "connectionString"
        ? QueueServiceClient.fromConnectionString(settings.connection.connectionString)
        : new QueueServiceClient(
            settings.connection.queueServiceUri,
            settings.connection.clientId ? new ManagedIdentityCredential({ clientId: settings.connection.clientId }) : fallbackCredential(),
          );
    this.queue = service.getQueueClient(settings.queueName);
    this.poison = service.getQueueClient(`${settings.queueName}-poison`);
  }

  get name(): string {
    return this.queue.name;
  }

  async ensureQueues(): Promise<void> {
    await this.queue.createIfNotExists();
    await this.poison.createIfNotExists();
  }

  /** Puts a message on the queue, visible after `delaySeconds`; it lives as long as the queue does. */
  async send(body: unknown, delaySeconds = 0): Promise<void> {
    await this.queue.sendMessage(encode(body), { visibilityTimeout: Math.max(0, Math.round(delaySeconds)), messageTimeToLive: -1 });
  }

  async receive(visibilityTimeoutSeconds: number): Promise<ReceivedMessage | undefined> {
    const response = await this.queue.receiveMessages({ numberOfMessages: 1, visibilityTimeout: Math.max(1, Math.round(visibilityTimeoutSeconds)) });
    const item = response.receivedMessageItems[0];
    if (!item) return undefined;
    return { body: decode(item.messageText), dequeueCount: item.dequeueCount, messageId: item.messageId, popReceipt: item.popReceipt };
  }

  /** Done with: gone from the queue. A message whose receipt is stale (taken again by another reader) is left to it. */
  async delete(message: ReceivedMessage): Promise<void> {
    try {
      await this.queue.deleteMessage(message.messageId, message.popReceipt);
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
  }

  /** Failed: visible again after `delaySeconds`, for another attempt (as the host does with its visibilityTimeout). */
  async release(message: ReceivedMessage, delaySeconds: number): Promise<void> {
    try {
      await this.queue.updateMessage(message.messageId, message.popReceipt, undefined, Math.max(0, Math.round(delaySeconds)));
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
  }

  /** Still working on it: hidden for another `visibilityTimeoutSeconds` (the host renews a running message the same way). The receipt changes. */
  async renew(message: ReceivedMessage, visibilityTimeoutSeconds: number): Promise<void> {
    const response = await this.queue.updateMessage(message.messageId, message.popReceipt, undefined, Math.max(1, Math.round(visibilityTimeoutSeconds)));
    if (response.popReceipt) message.popReceipt = response.popReceipt;
  }

  /** Failed too often: to `<queue>-poison`, as the Functions host moves a message past maxDequeueCount. */
  async moveToPoison(message: ReceivedMessage): Promise<void> {
    await this.poison.createIfNotExists();
    await this.poison.sendMessage(encode(message.body), { messageTimeToLive: -1 });
    await this.delete(message);
  }

  /** Messages waiting or in flight (the service's approximate count includes hidden ones). */
  approximateCount(): Promise<number> {
    return countOf(this.queue);
  }

  approximatePoisonCount(): Promise<number> {
    return countOf(this.poison);
  }
}

/** A queue's approximate message count; 0 for a queue that does not exist yet. */
async function countOf(queue: QueueClient): Promise<number> {
  try {
    return (await queue.getProperties()).approximateMessagesCount ?? 0;
  } catch (error) {
    if (statusOf(error) === 404) return 0;
    throw error;
  }
}

function encode(body: unknown): string {
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64");
}

/** The body as JSON; a message that is not base64 JSON comes back as its text (the slice handler refuses it by name). */
function decode(text: string): unknown {
  const decoded = Buffer.from(text, "base64").toString("utf8");
  try {
    return JSON.parse(decoded);
  } catch {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
}
