import { randomUUID } from "node:crypto";

/**
 * Entra ID-shaped access tokens for the sandbox: unsigned JWTs with the claims the stand-ins
 * (and Azurite's `--oauth basic`) check: aud, iss, iat, nbf, exp.
 */
export const SANDBOX_TENANT_ID = "72f988bf-0000-4000-8000-000000000000";
export const SANDBOX_PRINCIPAL_ID = "5b1c2d3e-0000-4000-8000-00000000b0b0";

/** Audiences, as the `resource` the identity endpoint is asked for (scope minus `/.default`). */
export const AUDIENCE = {
  databricks: "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d",
  monitor: "https://monitor.azure.com",
  logAnalytics: "https://api.loganalytics.io",
  storage: "https://storage.azure.com",
} as const;

export interface TokenClaims {
  aud: string;
  iss: string;
  iat: number;
  nbf: number;
  exp: number;
  oid: string;
  tid: string;
  jti: string;
}

export function issueToken(resource: string, ttlSeconds: number, nowMs = Date.now()): { token: string; expiresOn: number } {
  const now = Math.floor(nowMs / 1000);
  const claims: TokenClaims = {
    aud: resource.replace(/\/+$/, ""),
    iss: `https://sts.windows.net/${SANDBOX_TENANT_ID}/`,
    iat: now,
    nbf: now - 60,
    exp: now + ttlSeconds,
    oid: SANDBOX_PRINCIPAL_ID,
    tid: SANDBOX_TENANT_ID,
    jti: randomUUID(),
  };
  const header = { typ: "JWT", alg: "RS256", kid: "sandbox" };
  const token = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}.${b64url("sandbox-unsigned")}`;
  return { token, expiresOn: claims.exp };
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; status: 401 | 403; reason: string };

/** Checks a bearer JWT's audience and lifetime. `expectedAudience` is compared without a trailing slash. */
export function checkBearerJwt(authorization: string | undefined, expectedAudience: string, nowMs = Date.now()): TokenCheck {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
  if (!match?.[1]) return { ok: false, status: 401, reason: "missing bearer token" };
  const claims = decodeClaims(match[1]);
  if (!claims) return { ok: false, status: 401, reason: "malformed token" };
  const want = expectedAudience.replace(/\/+$/, "");
  if (claims.aud.replace(/\/+$/, "") !== want) {
    return { ok: false, status: 401, reason: `token audience '${claims.aud}' is not '${want}'` };
  }
  const now = Math.floor(nowMs / 1000);
  if (claims.exp <= now) return { ok: false, status: 401, reason: "token expired" };
  if (claims.nbf > now + 300) return { ok: false, status: 401, reason: "token not yet valid" };
  return { ok: true, claims };
}

export function decodeClaims(token: string): TokenClaims | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as Partial<TokenClaims>;
    if (typeof claims.aud !== "string" || typeof claims.exp !== "number") return undefined;
    return claims as TokenClaims;
  } catch {
    return undefined;
  }
}

function b64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}
