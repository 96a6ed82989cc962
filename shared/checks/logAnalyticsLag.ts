import { redactSecrets } from "../errors";
import { logAnalyticsBacklog, type ExportState } from "../export/state";

type Status = "PASS" | "WARN" | "FAIL";

/**
 * How far Log Analytics is behind the Blob archive, and why: it follows the archive on its
 * own progress, so a refused or unreachable Log Analytics lags (and later catches up) while
 * the archive stays current. Also reports the dead-letter blobs of records Log Analytics
 * refused on their own, until they are re-driven.
 */
export function assessLogAnalyticsLag(
  state: ExportState | null,
  logAnalyticsOn: boolean,
  deadLetterBlobs: readonly string[] = [],
): { status: Status; detail: string; remediation: string } {
  if (!logAnalyticsOn) {
    return { status: "PASS", detail: "Log Analytics forwarding is off: nothing waits for it.", remediation: "" };
  }
  const sources = Object.entries(state?.sources ?? {});
  let status: Status = "PASS";
  const details: string[] = [];
  const remediations = new Set<string>();
  if (sources.length === 0) details.push("Nothing archived yet, so nothing waits for Log Analytics");
  for (const [name, source] of sources) {
    const la = source.logAnalytics;
    const backlog = logAnalyticsBacklog(source);
    const label = sources.length > 1 ? `source ${name}: ` : "";
    if (backlog.batches === 0) {
      details.push(`${label}Log Analytics is current with the archive`);
      continue;
    }
    details.push(
      `${label}Log Analytics is ${backlog.batches} batch(es) (${backlog.events} events) behind the archive${la.laggingSince ? ` since ${la.laggingSince}` : ""}` +
        (la.lastError ? `; last error at ${la.lastError.at}: ${redactSecrets(la.lastError.message)}` : " (catching up)"),
    );
    if (la.lastError) {
      status = "FAIL";
      remediations.add(la.lastError.remediation);
    } else {
      if (status === "PASS") status = "WARN";
      remediations.add("It is catching up from the archive run by run; if the backlog does not shrink, look at the exportAuditLogs invocations.");
    }
  }
  if (deadLetterBlobs.length > 0) {
    const total = sources.reduce((n, [, source]) => n + source.logAnalytics.deadLettered, 0);
    details.push(
      `${deadLetterBlobs.length} dead-letter blob(s) under dead-letter/logs-ingestion/ hold records refused by Log Analytics on their own (${total} record(s) dead-lettered so far), e.g. ${deadLetterBlobs[0]}`,
    );
    if (status === "PASS") status = "WARN";
    remediations.add(
      "Read the reason in each dead-letter blob, fix its cause, then re-send them with 'dbx-audit redrive' (see TROUBLESHOOTING.md); the archive has the full events.",
    );
  }
  return { status, detail: `${details.join("; ")}.`, remediation: [...remediations].join(" ") };
}
