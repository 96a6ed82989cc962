import { redactSecrets } from "../errors";
import { logAnalyticsBacklog, type ExportState, type SourceState } from "../export/state";
import { DEAD_LETTER_PREFIX } from "../export/redrive";
import { worstStatus, type CheckStatus } from "./result";

interface Assessment {
  status: CheckStatus;
  detail: string;
  remediation: string;
}

const OFF: Assessment = { status: "PASS", detail: "Log Analytics forwarding is off: nothing waits for it.", remediation: "" };

/**
 * How far Log Analytics is behind the Blob archive, and why: it follows the archive on its
 * own progress, so a refused or unreachable Log Analytics lags (and later catches up) while
 * the archive stays current. Also reports the dead-letter blobs of records Log Analytics
 * refused on their own, until they are re-driven. Every source of the state in one answer.
 */
export function assessLogAnalyticsLag(state: ExportState | null, logAnalyticsOn: boolean, deadLetterBlobs: readonly string[] = []): Assessment {
  if (!logAnalyticsOn) return OFF;
  const sources = Object.entries(state?.sources ?? {});
  const parts = sources.map(([name, source]) => backlogOf(source, sources.length > 1 ? `source ${name}: ` : ""));
  if (sources.length === 0) parts.push(nothingArchived("Nothing archived yet"));
  const deadLettered = sources.reduce((n, [, source]) => n + source.logAnalytics.deadLettered, 0);
  if (deadLetterBlobs.length > 0) parts.push(deadLetters(deadLetterBlobs, deadLettered));
  return combine(parts);
}

/** The same for one source, from its own progress (`undefined`: nothing archived from it yet) and its own dead-letter blobs. */
export function assessSourceLogAnalyticsLag(
  name: string,
  source: SourceState | undefined,
  logAnalyticsOn: boolean,
  deadLetterBlobs: readonly string[] = [],
): Assessment {
  if (!logAnalyticsOn) return OFF;
  const own = deadLetterBlobs.filter((blob) => blob.startsWith(`${DEAD_LETTER_PREFIX}source=${name}/`));
  const parts = [source ? backlogOf(source, "") : nothingArchived("Nothing archived from this source yet")];
  if (own.length > 0) parts.push(deadLetters(own, source?.logAnalytics.deadLettered ?? 0));
  return combine(parts);
}

function backlogOf(source: SourceState, label: string): Assessment {
  const la = source.logAnalytics;
  const backlog = logAnalyticsBacklog(source);
  if (backlog.batches === 0) return { status: "PASS", detail: `${label}Log Analytics is current with the archive`, remediation: "" };
  const detail =
    `${label}Log Analytics is ${backlog.batches} batch(es) (${backlog.events} events) behind the archive${la.laggingSince ? ` since ${la.laggingSince}` : ""}` +
    (la.lastError ? `; last error at ${la.lastError.at}: ${redactSecrets(la.lastError.message)}` : " (catching up)");
  if (la.lastError) return { status: "FAIL", detail, remediation: la.lastError.remediation };
  return {
    status: "WARN",
    detail,
    remediation: "It is catching up from the archive run by run; if the backlog does not shrink, look at the exportAuditLogs invocations.",
  };
}

function nothingArchived(what: string): Assessment {
  return { status: "PASS", detail: `${what}, so nothing waits for Log Analytics`, remediation: "" };
}

function deadLetters(blobs: readonly string[], deadLettered: number): Assessment {
  return {
    status: "WARN",
    detail: `${blobs.length} dead-letter blob(s) under dead-letter/logs-ingestion/ hold records refused by Log Analytics on their own (${deadLettered} record(s) dead-lettered so far), e.g. ${blobs[0]}`,
    remediation:
      "Read the reason in each dead-letter blob, fix its cause, then re-send them with 'dbx-audit redrive' (see TROUBLESHOOTING.md); the archive has the full events.",
  };
}

function combine(parts: readonly Assessment[]): Assessment {
  const remediations = new Set(parts.map((part) => part.remediation).filter(Boolean));
  return {
    status: worstStatus(parts.map((part) => part.status)),
    detail: `${parts.map((part) => part.detail).join("; ")}.`,
    remediation: [...remediations].join(" "),
  };
}
