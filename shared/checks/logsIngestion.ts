import type { TokenCredential } from "@azure/identity";
import type { AppConfig } from "../config";
import { describeError } from "../errors";
import { LogsIngestionSink } from "../logsIngestion";
import type { CheckResult } from "./result";
import { seconds, timed, type Budget } from "./timing";

const INGESTION_TIMEOUT_MS = 20_000;

export async function logsIngestionCheck(config: AppConfig, credential: TokenCredential, budget: Budget): Promise<CheckResult> {
  const settings = config.logsIngestion!;
  const target = `stream '${settings.streamName}' of rule ${settings.ruleId} at ${settings.endpoint}`;
  const ms = budget.stepMs(INGESTION_TIMEOUT_MS);
  const probe = await timed(() => new LogsIngestionSink(settings, credential, { maxRetries: 0 }).check(), ms);
  if (probe.kind === "timeout") {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `No answer from ${target} within ${seconds(ms)}.`,
      remediation:
        "Check LOGS_INGESTION_ENDPOINT (the data collection endpoint's or rule's logs ingestion URL) and that this host can reach it (private link, firewall).",
    };
  }
  if (probe.kind === "failed") {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `Could not call ${target} (${describeFetchError(probe.error)}).`,
      remediation:
        "Check LOGS_INGESTION_ENDPOINT (e.g. 'https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com') and that this host can reach it (DNS, private link, firewall).",
    };
  }
  const { status, message } = probe.value;
  const said = message ? `: ${message}` : "";
  if (status === 204 || status === 200) {
    return {
      name: "logs_ingestion",
      status: "PASS",
      detail: `${target} accepted an empty upload (HTTP ${status}): token, rule and stream are valid and the identity may ingest. No rows were added.`,
      remediation: "",
    };
  }
  if (status === 403) {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `${target} refused the identity (HTTP 403${said}).`,
      remediation: `Assign the app's identity the Monitoring Metrics Publisher role on the data collection rule (scope: the DCR whose immutable ID is ${settings.ruleId}); role assignments can take up to 30 minutes to apply.`,
    };
  }
  if (status === 401) {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `${target} did not accept the token (HTTP 401${said}).`,
      remediation:
        "The token must be for https://monitor.azure.com from the DCR's tenant: check the identity (AZURE_CLIENT_ID) and the tenant of the data collection rule.",
    };
  }
  if (status === 404) {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `${target} was not found (HTTP 404${said}).`,
      remediation:
        "LOGS_INGESTION_RULE_ID must be the DCR's immutableId ('dcr-...', from its JSON view) and LOGS_INGESTION_STREAM a stream declared in it; LOGS_INGESTION_ENDPOINT must be the endpoint that DCR is associated with.",
    };
  }
  if (status === 429 || status >= 500) {
    return {
      name: "logs_ingestion",
      status: "WARN",
      detail: `${target} is busy or unavailable (HTTP ${status}${said}).`,
      remediation:
        "Transient on the service side: retry in a few minutes. Persistent 429s mean the DCR's limits (12,000 requests or 2 GB per minute) are reached.",
    };
  }
  return {
    name: "logs_ingestion",
    status: "FAIL",
    detail: `${target} answered HTTP ${status}${said}.`,
    remediation: "Check LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM against the data collection rule; see TROUBLESHOOTING.md.",
  };
}

/** fetch hides the network error in `cause`. */
function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause ? `${describeError(error)}: ${describeError(cause)}` : describeError(error);
}
