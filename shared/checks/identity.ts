import type { AccessToken, TokenCredential } from "@azure/identity";
import type { AppConfig } from "../config";
import { describeError } from "../errors";
import { LOG_ANALYTICS_QUERY_SCOPE } from "../logAnalyticsQuery";
import { LOGS_INGESTION_SCOPE } from "../logsIngestion";
import type { CheckResult } from "./result";
import type { Section } from "./settings";
import { seconds, timed, type Budget, type Outcome } from "./timing";

export const STORAGE_SCOPE = "https://storage.azure.com/.default";
const TOKEN_TIMEOUT_MS = 15_000;

export type TokenOutcome = { ok: true; token: string; principal?: string } | { ok: false; detail: string };

export function neededScopes(config: AppConfig, broken: Set<Section>): { scope: string; purpose: string }[] {
  const scopes: { scope: string; purpose: string }[] = [];
  // Every source shares the scope; a token is needed when one of them has no personal access token.
  const entraSource = config.sources.find((source) => !source.databricks.accessToken);
  if (!broken.has("databricks") && entraSource) scopes.push({ scope: entraSource.databricks.scope, purpose: "Databricks" });
  if (!broken.has("storage") && config.storage?.kind === "accountUrl") scopes.push({ scope: STORAGE_SCOPE, purpose: "Blob Storage" });
  if (!broken.has("logsIngestion") && config.logsIngestion) scopes.push({ scope: LOGS_INGESTION_SCOPE, purpose: "Logs Ingestion" });
  if (!broken.has("logAnalyticsQuery") && config.logsIngestion && config.logAnalyticsQuery)
    scopes.push({ scope: LOG_ANALYTICS_QUERY_SCOPE, purpose: "Logs Query" });
  return scopes;
}

export async function azureAuthenticationCheck(
  scopes: { scope: string; purpose: string }[],
  getCredential: () => TokenCredential,
  budget: Budget,
  tokens: Map<string, TokenOutcome>,
): Promise<CheckResult> {
  if (scopes.length === 0) {
    return {
      name: "azure_authentication",
      status: "PASS",
      detail: "No Entra ID token is needed: the warehouse uses a personal access token, storage a connection string, and Log Analytics is off.",
      remediation: "",
    };
  }
  let credential: TokenCredential;
  try {
    credential = getCredential();
  } catch (error) {
    return {
      name: "azure_authentication",
      status: "FAIL",
      detail: `Could not create the Azure credential: ${describeError(error)}.`,
      remediation: IDENTITY_REMEDIATION,
    };
  }
  await Promise.all(
    scopes.map(async ({ scope }) => {
      const ms = budget.stepMs(TOKEN_TIMEOUT_MS);
      const outcome = await timed(() => credential.getToken(scope, { abortSignal: AbortSignal.timeout(ms) }), ms);
      tokens.set(scope, tokenOutcome(outcome, ms));
    }),
  );
  const lines = scopes.map(({ scope, purpose }) => {
    const token = tokens.get(scope)!;
    if (!token.ok) return `${purpose} (${scope}): FAILED, ${token.detail}`;
    return `${purpose} (${scope}): token obtained${token.principal ? ` for ${token.principal}` : ""}`;
  });
  const failed = scopes.filter(({ scope }) => !tokens.get(scope)!.ok);
  if (failed.length === 0) return { name: "azure_authentication", status: "PASS", detail: `${lines.join("; ")}.`, remediation: "" };
  const databricksFailed = failed.some((f) => f.purpose === "Databricks");
  return {
    name: "azure_authentication",
    status: "FAIL",
    detail: `${lines.join("; ")}.`,
    remediation:
      IDENTITY_REMEDIATION +
      (databricksFailed
        ? " For the Databricks token: the scope is the Azure Databricks application's ('2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default'); a sovereign cloud may need another one (DATABRICKS_SCOPE / --scope). Or use a personal access token (DATABRICKS_ACCESS_TOKEN / --access-token)."
        : ""),
  };
}

const IDENTITY_REMEDIATION =
  "In Azure: enable the Function App's managed identity (system-assigned, or set AZURE_CLIENT_ID to the client ID of the attached user-assigned identity). " +
  "From a shell: sign in with 'az login' to the tenant of the workspace, or pass --managed-identity-client-id on a VM with that identity.";

function tokenOutcome(outcome: Outcome<AccessToken | null>, ms: number): TokenOutcome {
  if (outcome.kind === "timeout") return { ok: false, detail: `no token within ${seconds(ms)}` };
  if (outcome.kind === "failed") return { ok: false, detail: describeError(outcome.error) };
  if (!outcome.value) return { ok: false, detail: "the credential returned no token" };
  const principal = tokenPrincipal(outcome.value.token);
  return { ok: true, token: outcome.value.token, ...(principal ? { principal } : {}) };
}

/** Who the token is for (application or object ID): the principal to grant things to. Never the token itself. */
function tokenPrincipal(token: string): string | undefined {
  try {
    const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<string, unknown>;
    const pick = (key: string): string | undefined => {
      const value = claims[key];
      return typeof value === "string" ? value : undefined;
    };
    const appId = pick("appid") ?? pick("azp");
    if (appId) return `application ID ${appId}`;
    const upn = pick("upn") ?? pick("unique_name");
    if (upn) return upn;
    const oid = pick("oid");
    return oid ? `object ID ${oid}` : undefined;
  } catch {
    return undefined;
  }
}
