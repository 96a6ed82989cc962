import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from "@azure/functions";
import { describeError } from "../shared/errors";
import { checkTitle, runChecks, type CheckReport } from "../shared/prerequisites";

/**
 * GET: runs every prerequisite check within its time budget (well under the 230 s HTTP limit)
 * and answers the JSON report, 200 when nothing failed, 503 otherwise. The report and the logs
 * carry statuses, details and remediations only: never a token, key, connection string or stack.
 */
export async function checkPrerequisites(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  let report: CheckReport;
  try {
    // The deployed app must be able to export, so storage is required here (the CLI's check does not need it).
    report = await runChecks(process.env, process.env, { needs: { storage: true } });
  } catch (error) {
    context.error(`checkPrerequisites could not run the checks: ${describeError(error)}`);
    return {
      status: 503,
      headers: { "Cache-Control": "no-store" },
      jsonBody: { status: "FAIL", checks: [], error: "The checks could not run; see the function's logs." },
    };
  }
  context.log(
    `prerequisite checks ${report.status} in ${report.durationMs} ms: ${report.checks.map((c) => `${checkTitle(c, report)} ${c.status}`).join(", ")}`,
  );
  for (const check of report.checks) {
    if (check.status !== "PASS") context.warn(`${check.name} ${check.status}: ${check.detail}`);
  }
  return {
    status: report.status === "FAIL" ? 503 : 200,
    headers: { "Cache-Control": "no-store" },
    jsonBody: report,
  };
}

app.http("checkPrerequisites", {
  methods: ["GET"],
  authLevel: "function",
  handler: checkPrerequisites,
});
