import type { TokenCredential } from "@azure/identity";
import type { LogsIngestionClient } from "@azure/monitor-ingestion";
import { describeError } from "../errors";
import { createLogsIngestionClient, type IngestionClientOptions } from "../logsIngestion";
import type { AlertRecord } from "./alerts";
import type { AlertsSink } from "./runner";

export interface AlertsIngestionSettings {
  endpoint: string;
  ruleId: string;
  /** LOGS_INGESTION_ALERTS_STREAM, e.g. Custom-DatabricksAuditAlerts. */
  streamName: string;
}

/**
 * Alerts to Log Analytics (DatabricksAuditAlerts_CL) through the Logs Ingestion API. The client
 * splits the records into calls of about 1 MB and reports each failed call's records through
 * onError: those, and only those, stay pending.
 */
export class AlertsIngestionSink implements AlertsSink {
  private readonly client: LogsIngestionClient;

  constructor(
    private readonly settings: AlertsIngestionSettings,
    credential: TokenCredential,
    options: IngestionClientOptions = {},
  ) {
    this.client = createLogsIngestionClient(settings.endpoint, credential, options);
  }

  async send(records: AlertRecord[]): Promise<{ failedIds: string[]; error?: string }> {
    const failedIds: string[] = [];
    let firstError: string | undefined;
    try {
      await this.client.upload(this.settings.ruleId, this.settings.streamName, records as unknown as Record<string, unknown>[], {
        maxConcurrency: 1,
        onError: ({ failedLogs, cause }) => {
          firstError ??= describeError(cause);
          for (const log of failedLogs) failedIds.push(String((log as { AlertId?: unknown }).AlertId));
        },
      });
    } catch (error) {
      firstError ??= describeError(error);
      // Without onError reports (e.g. an error before any call), nothing is known to have arrived.
      if (failedIds.length === 0) return { failedIds: records.map((r) => r.AlertId), error: firstError };
    }
    return firstError === undefined ? { failedIds } : { failedIds, error: firstError };
  }
}
