import type { TokenCredential } from "@azure/identity";
import { LogsIngestionClient, isAggregateLogsUploadError } from "@azure/monitor-ingestion";
import type { LogsIngestionSettings } from "./config";
import { fastGzip } from "./fastGzip";
import type { IngestionSink } from "./export/ports";
import type { SentinelAuditRecord } from "./sentinelRecord";

export interface IngestionClientOptions {
  /** Retries of 429/5xx per call, on top of the first try (the client honours Retry-After). */
  maxRetries?: number;
  retryDelayInMs?: number;
  maxRetryDelayInMs?: number;
}

/**
 * Log Analytics through the Logs Ingestion API and a DCR stream. The caller hands over one
 * call's worth of records (< 1 MB of JSON), so a failure is a whole, known set of records.
 */
export class LogsIngestionSink implements IngestionSink {
  private readonly client: LogsIngestionClient;

  constructor(
    private readonly settings: LogsIngestionSettings,
    private readonly credential: TokenCredential,
    options: IngestionClientOptions = {},
  ) {
    this.client = createLogsIngestionClient(settings.endpoint, credential, options);
    useFastGzip(this.client.pipeline);
  }

  async send(records: SentinelAuditRecord[]): Promise<void> {
    try {
      await this.client.upload(this.settings.ruleId, this.settings.streamName, records as unknown as Record<string, unknown>[], { maxConcurrency: 1 });
    } catch (error) {
      throw isAggregateLogsUploadError(error) ? (error.errors[0]?.cause ?? error) : error;
    }
  }

  /**
   * Proves the token, the rule and the stream by posting an empty array: the service checks
   * authentication and permission and ingests nothing. (The client skips empty uploads, so
   * this one call is made directly.) Returns the HTTP status and the service's error text.
   */
  async check(scope = LOGS_INGESTION_SCOPE): Promise<{ status: number; message: string }> {
    const token = await this.credential.getToken(scope);
    if (!token) throw new Error(`The Azure credential returned no token for ${scope}.`);
    const url = `${this.settings.endpoint}/dataCollectionRules/${encodeURIComponent(this.settings.ruleId)}/streams/${encodeURIComponent(this.settings.streamName)}?api-version=2023-01-01`;
    const response = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${token.token}`, "content-type": "application/json" },
      body: "[]",
      signal: AbortSignal.timeout(20_000),
    });
    const text = response.status === 204 ? "" : await response.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, message: message.slice(0, 500) };
  }

  /** check()'s HTTP status: 204 when the token, rule and stream are fine. */
  async probe(): Promise<number> {
    return (await this.check()).status;
  }
}

/** The Logs Ingestion client with the app's retry settings (it honours Retry-After on 429/503). */
export function createLogsIngestionClient(endpoint: string, credential: TokenCredential, options: IngestionClientOptions = {}): LogsIngestionClient {
  return new LogsIngestionClient(endpoint, credential, {
    retryOptions: {
      maxRetries: options.maxRetries ?? 5,
      ...(options.retryDelayInMs !== undefined ? { retryDelayInMs: options.retryDelayInMs } : {}),
      ...(options.maxRetryDelayInMs !== undefined ? { maxRetryDelayInMs: options.maxRetryDelayInMs } : {}),
    },
  });
}

type Pipeline = LogsIngestionClient["pipeline"];
type PipelinePolicy = Parameters<Pipeline["addPolicy"]>[0];

/** The name under which the Logs Ingestion client adds its own gzip policy (level 6) to its public pipeline. */
export const SDK_GZIP_POLICY_NAME = "GzippingPolicy";
export const FAST_GZIP_POLICY_NAME = "dbxAuditFastGzipPolicy";

/** Gzips each call's body at the fastest level: half the CPU of the client's default level, for a body about 15 % larger. */
export const fastGzipPolicy: PipelinePolicy = {
  name: FAST_GZIP_POLICY_NAME,
  async sendRequest(request, next) {
    // As the client's own policy: the body is the JSON text the client serialized.
    if (request.body) request.body = await fastGzip(request.body as string | Buffer);
    return next(request);
  },
};

/**
 * Swaps the client's gzip policy for fastGzipPolicy, in the same place. Only when the
 * client's own policy was there to remove: a client version that names it differently keeps
 * its own, so a body is never gzipped twice. True when swapped.
 */
export function useFastGzip(pipeline: Pipeline): boolean {
  const removed = pipeline.removePolicy({ name: SDK_GZIP_POLICY_NAME });
  if (removed.length === 0) return false;
  pipeline.addPolicy(fastGzipPolicy);
  return true;
}

export const LOGS_INGESTION_SCOPE = "https://monitor.azure.com/.default";
