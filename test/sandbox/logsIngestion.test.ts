import { gzipSync } from "node:zlib";
import { ManagedIdentityCredential } from "@azure/identity";
import { AggregateLogsUploadError, LogsIngestionClient, type LogsUploadFailure } from "@azure/monitor-ingestion";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startIdentityEndpoint, type IdentityEndpoint } from "../../sandbox/identityEndpoint";
import { DATABRICKS_AUDIT_STREAM_COLUMNS, DEFAULT_STREAM_NAME, startLogsIngestion, type LogsIngestion } from "../../sandbox/logsIngestion";
import { ensureLocalTls } from "../../sandbox/tls";

// One identity endpoint per process (msal-node keeps the first one it sees), announced before
// the first credential asks for a token.
let identity: IdentityEndpoint;
let ingestion: LogsIngestion;
let credential: ManagedIdentityCredential;

beforeAll(async () => {
  const tls = await ensureLocalTls();
  identity = await startIdentityEndpoint();
  process.env.IDENTITY_ENDPOINT = identity.endpoint;
  process.env.IDENTITY_HEADER = identity.header;
  credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
  ingestion = await startLogsIngestion({ tls });
});

afterAll(async () => {
  await ingestion?.close();
  await identity?.close();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

beforeEach(() => ingestion.reset());

/** Short retry delays: the failure tests must not wait out the SDK's default back-off. */
function client(options: { audience?: string } = {}): LogsIngestionClient {
  return new LogsIngestionClient(ingestion.endpoint, credential, {
    ...options,
    retryOptions: { maxRetries: 3, retryDelayInMs: 20, maxRetryDelayInMs: 100 },
  });
}

function auditRecord(i: number): Record<string, unknown> {
  const time = new Date(Date.UTC(2025, 0, 1, 0, 0, 0) + i * 1000).toISOString();
  return {
    TimeGenerated: time,
    EventTime: time,
    SchemaVersion: "2.0",
    AuditLevel: "WORKSPACE_LEVEL",
    AccountId: "acc-1",
    WorkspaceId: "1234567890",
    ServiceName: "clusters",
    ActionName: "create",
    RequestId: `req-${i}`,
    SessionId: null,
    SourceIPAddress: "10.0.0.1",
    UserAgent: "curl/8.0",
    UserEmail: "someone@example.com",
    UserSubjectName: null,
    UserIdentity: { email: "someone@example.com", subject_name: null },
    RequestParams: { cluster_name: `c-${i}`, spark_version: "15.4.x-scala2.12" },
    ResponseStatusCode: 200,
    ResponseErrorMessage: null,
    ResponseResult: null,
    EventId: `event-${String(i).padStart(6, "0")}`,
    IdentityMetadata: { run_by: null, run_as: null },
  };
}

async function uploadExpectingFailure(
  c: LogsIngestionClient,
  records: Record<string, unknown>[],
  stream = ingestion.streamName,
  ruleId = ingestion.ruleId,
): Promise<{ failures: LogsUploadFailure[]; error: unknown }> {
  const failures: LogsUploadFailure[] = [];
  const error = await c.upload(ruleId, stream, records, { onError: (f) => failures.push(f) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AggregateLogsUploadError);
  return { failures, error };
}

function statusOf(failure: LogsUploadFailure | undefined): number | undefined {
  return (failure?.cause as { statusCode?: number } | undefined)?.statusCode;
}

async function bearer(scope = "https://monitor.azure.com/.default"): Promise<string> {
  return `Bearer ${(await credential.getToken(scope)).token}`;
}

async function rawPost(body: Buffer | string, headers: Record<string, string>, stream = ingestion.streamName): Promise<Response> {
  return fetch(`${ingestion.endpoint}/dataCollectionRules/${ingestion.ruleId}/streams/${stream}?api-version=2023-01-01`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body,
  });
}

describe("Logs Ingestion stand-in with the real LogsIngestionClient", () => {
  it("declares the DatabricksAudit_CL columns and a dcr immutable id", () => {
    expect(ingestion.streamName).toBe(DEFAULT_STREAM_NAME);
    expect(ingestion.ruleId).toMatch(/^dcr-[0-9a-f]{32}$/);
    expect(ingestion.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(DATABRICKS_AUDIT_STREAM_COLUMNS.map((c) => c.name)).toContain("IdentityMetadata");
  });

  it("receives 10,000 gzipped records exactly once, in calls of at most 1 MB", async () => {
    const c = client();
    const encodings: (string | undefined)[] = [];
    c.pipeline.addPolicy({
      name: "recordEncoding",
      sendRequest: (request, next) => {
        encodings.push(request.headers.get("content-encoding"));
        return next(request);
      },
    });
    const records = Array.from({ length: 10_000 }, (_, i) => auditRecord(i));
    await c.upload(ingestion.ruleId, ingestion.streamName, records);

    const got = ingestion.received();
    expect(got).toHaveLength(10_000);
    const ids = got.map((r) => r.EventId as string);
    expect(new Set(ids).size).toBe(10_000);
    expect([...ids].sort()).toEqual(records.map((r) => r.EventId as string));
    expect(got.find((r) => r.EventId === "event-000042")).toEqual(auditRecord(42));

    const stats = ingestion.stats();
    expect(stats.acceptedCalls).toBeGreaterThan(1);
    expect(stats.records).toBe(10_000);
    expect(stats.rejected).toEqual([]);
    for (const size of stats.bytes) expect(size).toBeLessThanOrEqual(1_048_576);
    expect(encodings.length).toBe(stats.calls);
    expect(encodings.every((e) => e === "gzip")).toBe(true);

    // The same records, as JSONL, from the loopback /received route.
    const text = await (await fetch(ingestion.receivedUrl)).text();
    const lines = text.trim().split("\n");
    expect(lines).toHaveLength(10_000);
    expect(JSON.parse(lines[0] ?? "{}")).toHaveProperty("EventId");
  });

  it("answers 413 for a single record over 1 MB, surfaced through onError and AggregateLogsUploadError", async () => {
    const big = { ...auditRecord(1), ResponseErrorMessage: "x".repeat(1_100_000) };
    const { failures, error } = await uploadExpectingFailure(client(), [big]);
    expect(failures).toHaveLength(1);
    expect(statusOf(failures[0])).toBe(413);
    expect(failures[0]?.failedLogs).toHaveLength(1);
    expect((error as AggregateLogsUploadError).errors).toHaveLength(1);
    expect(ingestion.received()).toEqual([]);
    expect(ingestion.stats().rejected).toEqual([expect.objectContaining({ status: 413 })]);
    expect(ingestion.stats().bytes[0]).toBeGreaterThan(1_048_576);
  });

  it("retries a 429 with Retry-After and still gets every record exactly once", async () => {
    ingestion.setFaults({ throttle: { calls: 2, retryAfterSeconds: 1 } });
    const records = Array.from({ length: 3_000 }, (_, i) => auditRecord(i));
    await client().upload(ingestion.ruleId, ingestion.streamName, records, { maxConcurrency: 2 });
    const ids = ingestion.received().map((r) => r.EventId);
    expect(ids).toHaveLength(3_000);
    expect(new Set(ids).size).toBe(3_000);
    const stats = ingestion.stats();
    expect(stats.rejected.filter((r) => r.status === 429)).toHaveLength(2);
    expect(stats.calls).toBe(stats.acceptedCalls + 2);
  });

  it("retries 5xx (failCallNumbers and serverError) and still gets every record exactly once", async () => {
    ingestion.setFaults({ failCallNumbers: [1], serverError: { calls: 1, status: 500 } });
    const records = Array.from({ length: 500 }, (_, i) => auditRecord(i));
    await client().upload(ingestion.ruleId, ingestion.streamName, records);
    expect(ingestion.received()).toHaveLength(500);
    expect(
      ingestion
        .stats()
        .rejected.map((r) => r.status)
        .sort(),
    ).toEqual([500, 503]);
  });

  it("answers 401 to a token for another audience", async () => {
    const { failures } = await uploadExpectingFailure(client({ audience: "https://storage.azure.com" }), [auditRecord(1)]);
    expect(statusOf(failures[0])).toBe(401);
    expect(ingestion.stats().calls).toBe(1); // not retried
    expect((await rawPost("[]", {})).status).toBe(401);
  });

  it("answers 403 naming the DCR when the identity lacks Monitoring Metrics Publisher", async () => {
    ingestion.setFaults({ forbidden: true });
    const { failures } = await uploadExpectingFailure(client(), [auditRecord(1)]);
    expect(statusOf(failures[0])).toBe(403);
    expect(failures[0]?.cause.message).toContain(ingestion.ruleId);
    expect(failures[0]?.cause.message).toMatch(/does not have access/);
    expect(ingestion.received()).toEqual([]);
  });

  it("answers 404 for an unknown stream or rule id", async () => {
    const unknownStream = await uploadExpectingFailure(client(), [auditRecord(1)], "Custom-Nope");
    expect(statusOf(unknownStream.failures[0])).toBe(404);
    const unknownRule = await uploadExpectingFailure(client(), [auditRecord(1)], ingestion.streamName, `dcr-${"0".repeat(32)}`);
    expect(statusOf(unknownRule.failures[0])).toBe(404);
  });

  it("answers 400 naming the record and column for an undeclared column or a wrongly typed value", async () => {
    const extra = await uploadExpectingFailure(client(), [auditRecord(0), { ...auditRecord(1), Bogus: "x" }]);
    expect(statusOf(extra.failures[0])).toBe(400);
    expect(extra.failures[0]?.cause.message).toMatch(/Record 1: column 'Bogus'/);

    const wrongType = await uploadExpectingFailure(client(), [{ ...auditRecord(0), ResponseStatusCode: "200" }]);
    expect(statusOf(wrongType.failures[0])).toBe(400);
    expect(wrongType.failures[0]?.cause.message).toMatch(/Record 0: column 'ResponseStatusCode' \(int\)/);

    const badTime = await uploadExpectingFailure(client(), [{ ...auditRecord(0), EventTime: "yesterday" }]);
    expect(badTime.failures[0]?.cause.message).toMatch(/EventTime/);
    expect(ingestion.received()).toEqual([]);
  });

  it("stores string and dynamic values over 64 KB truncated to 64 KB", async () => {
    const ascii = "a".repeat(100 * 1024);
    const accented = "é".repeat(50 * 1024); // 2 bytes each: 100 KB
    const params = { blob: "z".repeat(100 * 1024) };
    await client().upload(ingestion.ruleId, ingestion.streamName, [
      { ...auditRecord(0), ResponseErrorMessage: ascii, UserAgent: accented, RequestParams: params },
    ]);
    const [stored] = ingestion.received();
    expect(Buffer.byteLength(stored?.ResponseErrorMessage as string)).toBe(65_536);
    expect(stored?.ResponseErrorMessage).toBe(ascii.slice(0, 65_536));
    expect(stored?.UserAgent).toBe("é".repeat(32_768));
    expect(typeof stored?.RequestParams).toBe("string");
    expect(Buffer.byteLength(stored?.RequestParams as string)).toBe(65_536);
    expect(stored?.RequestParams).toBe(JSON.stringify(params).slice(0, 65_536));
  });

  it("accepts an empty array with a valid token (204) and stores nothing", async () => {
    const res = await rawPost(gzipSync("[]"), { Authorization: await bearer(), "Content-Encoding": "gzip" });
    expect(res.status).toBe(204);
    expect(ingestion.received()).toEqual([]);
    expect(ingestion.stats()).toMatchObject({ calls: 1, acceptedCalls: 1, records: 0 });
  });

  it("answers like the service to malformed requests", async () => {
    const auth = { Authorization: await bearer() };
    const notArray = await rawPost(JSON.stringify({ a: 1 }), auth);
    expect(notArray.status).toBe(400);
    expect(await notArray.json()).toMatchObject({ error: { code: expect.any(String), message: expect.stringMatching(/array/) } });
    expect((await rawPost("not json", auth)).status).toBe(400);
    expect((await rawPost("[1,2]", { ...auth, "Content-Encoding": "gzip" })).status).toBe(400);
    const tooBig = gzipSync(JSON.stringify([{ ResponseErrorMessage: "y".repeat(1_048_576) }]));
    expect(tooBig.length).toBeLessThan(1_048_576);
    expect((await rawPost(tooBig, { ...auth, "Content-Encoding": "gzip" })).status).toBe(413);
    const plain = await rawPost(JSON.stringify([auditRecord(7)]), auth); // uncompressed is fine too
    expect(plain.status).toBe(204);
    expect(ingestion.received(ingestion.streamName)).toHaveLength(1);
  });

  it("takes faults over HTTP and answers 429 with Retry-After", async () => {
    const set = await fetch(`${ingestion.endpoint}/admin/faults`, {
      method: "POST",
      body: JSON.stringify({ throttle: { calls: 1, retryAfterSeconds: 7 } }),
    });
    expect(set.status).toBe(204);
    const auth = { Authorization: await bearer() };
    const throttled = await rawPost("[]", auth);
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get("retry-after")).toBe("7");
    expect((await rawPost("[]", auth)).status).toBe(204);
    const bad = await fetch(`${ingestion.endpoint}/admin/faults`, { method: "POST", body: JSON.stringify({ nonsense: 1 }) });
    expect(bad.status).toBe(400);
  });
});
