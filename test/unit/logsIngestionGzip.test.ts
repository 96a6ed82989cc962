import { gunzipSync } from "node:zlib";
import { LogsIngestionClient } from "@azure/monitor-ingestion";
import { describe, expect, it } from "vitest";
import { FAST_GZIP_POLICY_NAME, SDK_GZIP_POLICY_NAME, fastGzipPolicy, useFastGzip } from "../../shared/logsIngestion";

const credential = { getToken: () => Promise.resolve({ token: "t", expiresOnTimestamp: Date.now() + 3_600_000 }) };
const policyNames = (client: LogsIngestionClient): string[] => client.pipeline.getOrderedPolicies().map((p) => p.name);

describe("Logs Ingestion gzip policy", () => {
  it("replaces the client's own gzip policy, so each body is gzipped once", () => {
    const client = new LogsIngestionClient("https://127.0.0.1:1", credential);
    const position = policyNames(client).indexOf(SDK_GZIP_POLICY_NAME);
    expect(position).toBeGreaterThanOrEqual(0);
    expect(useFastGzip(client.pipeline)).toBe(true);
    // In the same place: after authentication, before the retry policy (a retried call is not gzipped again).
    expect(policyNames(client).indexOf(FAST_GZIP_POLICY_NAME)).toBe(position);
    expect(policyNames(client)).not.toContain(SDK_GZIP_POLICY_NAME);
  });

  it("leaves a pipeline without the client's policy as it is (a renamed policy is never doubled)", () => {
    const client = new LogsIngestionClient("https://127.0.0.1:1", credential);
    client.pipeline.removePolicy({ name: SDK_GZIP_POLICY_NAME });
    const before = policyNames(client);
    expect(useFastGzip(client.pipeline)).toBe(false);
    expect(policyNames(client)).toEqual(before);
  });

  it("gzips the JSON body at the fastest level, and it decompresses to the same text", async () => {
    const text = JSON.stringify([{ TimeGenerated: "2024-09-01T00:00:00.000001Z", EventId: "e-1", ActionName: "login" }]);
    const request = { body: text } as Parameters<typeof fastGzipPolicy.sendRequest>[0];
    let sent: Buffer | undefined;
    await fastGzipPolicy.sendRequest(request, (r) => {
      sent = r.body as Buffer;
      return Promise.resolve({ status: 204, headers: {} as never, request: r });
    });
    expect(gunzipSync(sent!).toString("utf8")).toBe(text);
    // RFC 1952: XFL (byte 8) is 4 when the compressor used its fastest algorithm.
    expect(sent![8]).toBe(4);
  });
});
