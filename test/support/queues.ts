import type { QueueServiceClient } from "@azure/storage-queue";
import { expect } from "vitest";

/**
 * What the backfill does with its queue, against any queue service: create the queue if missing,
 * send a message, receive it (hidden from other readers meanwhile), delete it, and find the queue
 * empty (the queue stays). The body is base64 JSON, the Functions queue trigger's default encoding.
 */
export async function queueRoundTrip(service: QueueServiceClient, queueName: string): Promise<void> {
  const queue = service.getQueueClient(queueName);
  await queue.createIfNotExists();
  expect(await queue.exists()).toBe(true);

  const body = Buffer.from(JSON.stringify({ slice: { from: "2025-01-01T00:00:00Z", until: "2025-01-01T06:00:00Z" } }), "utf8").toString("base64");
  const sent = await queue.sendMessage(body);
  expect(sent.messageId).toBeTruthy();

  const [received, ...more] = (await queue.receiveMessages({ numberOfMessages: 2, visibilityTimeout: 30 })).receivedMessageItems;
  expect(more).toEqual([]);
  expect(received).toMatchObject({ messageId: sent.messageId, messageText: body, dequeueCount: 1 });
  // Taken: invisible to the next reader until its visibility timeout passes.
  expect((await queue.receiveMessages()).receivedMessageItems).toEqual([]);

  await queue.deleteMessage(received!.messageId, received!.popReceipt);
  expect((await queue.getProperties()).approximateMessagesCount).toBe(0);
  expect((await queue.peekMessages()).peekedMessageItems).toEqual([]);
}
