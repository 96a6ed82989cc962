import { closeServer, listenOnLoopback } from "./net";
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { issueToken } from "./tokens";

/**
 * A stand-in for the App Service / Azure Functions managed identity endpoint (the one the
 * platform announces in IDENTITY_ENDPOINT / IDENTITY_HEADER). `ManagedIdentityCredential`
 * from @azure/identity (through msal-node's AppService source) calls it as
 * `GET <endpoint>?api-version=2019-08-01&resource=<r>[&client_id=<id>]` with the header
 * `X-IDENTITY-HEADER: <secret>`. Plain http on loopback, as on the platform.
 */
export interface IdentityEndpoint {
  /** `http://127.0.0.1:<port>/msi/token`: the value for IDENTITY_ENDPOINT. */
  endpoint: string;
  /** The secret the caller must send in X-IDENTITY-HEADER: the value for IDENTITY_HEADER. */
  header: string;
  /** Lifetime of tokens issued from now on. */
  setTtlSeconds(seconds: number): void;
  /** Answer every token request with this status (e.g. 500, 503) until set back to null. */
  setFailure(status: number | null): void;
  /** Every well-formed token request seen (authorized or not), oldest first. */
  requests(): { resource: string; clientId?: string }[];
  close(): Promise<void>;
}

export interface IdentityEndpointOptions {
  /** Token lifetime; default 3600 s (the platform's tokens live far longer, but tests may shorten it). */
  ttlSeconds?: number;
  /** Client ids of user-assigned identities attached to the "app"; any other client_id gets 400. */
  userAssignedClientIds?: string[];
}

/** The client id reported for the system-assigned identity. */
export const SYSTEM_ASSIGNED_CLIENT_ID = "8d2b4c6e-0000-4000-8000-0000000051a1";

const TOKEN_PATH = "/msi/token";
const API_VERSION = "2019-08-01";

export async function startIdentityEndpoint(options: IdentityEndpointOptions = {}): Promise<IdentityEndpoint> {
  let ttlSeconds = positiveTtl(options.ttlSeconds ?? 3600);
  let failure: number | null = null;
  const userAssigned = new Set((options.userAssignedClientIds ?? []).map((id) => id.toLowerCase()));
  const seen: { resource: string; clientId?: string }[] = [];
  const secret = randomBytes(24).toString("hex");

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (error) {
      sendJson(res, 500, platformError(500, `Internal error: ${(error as Error).message}`));
    }
  });

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== TOKEN_PATH) {
      sendJson(res, 404, platformError(404, `No route for ${url.pathname}`));
      return;
    }
    if (req.method !== "GET") {
      sendJson(res, 405, platformError(405, `The HTTP method '${req.method ?? ""}' is not supported.`));
      return;
    }
    const resource = url.searchParams.get("resource") ?? "";
    const clientId = url.searchParams.get("client_id") ?? undefined;
    if (resource) seen.push(clientId === undefined ? { resource } : { resource, clientId });

    if (req.headers["x-identity-header"] !== secret) {
      sendJson(res, 401, platformError(401, "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER."));
      return;
    }
    if (failure !== null) {
      sendJson(res, failure, platformError(failure, `Simulated failure of the managed identity endpoint (HTTP ${failure}).`));
      return;
    }
    const apiVersion = url.searchParams.get("api-version");
    if (apiVersion !== API_VERSION) {
      sendJson(res, 400, platformError(400, `The api-version '${apiVersion ?? ""}' is invalid. The supported version is '${API_VERSION}'.`));
      return;
    }
    if (!resource) {
      sendJson(res, 400, platformError(400, "The 'resource' query parameter is required."));
      return;
    }
    for (const unsupported of ["mi_res_id", "principal_id", "object_id"]) {
      if (url.searchParams.has(unsupported)) {
        sendJson(res, 400, platformError(400, noIdentityMessage));
        return;
      }
    }
    if (clientId !== undefined && !userAssigned.has(clientId.toLowerCase())) {
      sendJson(res, 400, platformError(400, noIdentityMessage));
      return;
    }
    const { token, expiresOn } = issueToken(resource, ttlSeconds);
    sendJson(res, 200, {
      access_token: token,
      expires_on: String(expiresOn),
      resource,
      token_type: "Bearer",
      client_id: clientId ?? SYSTEM_ASSIGNED_CLIENT_ID,
    });
  }

  const port = await listenOnLoopback(server);

  return {
    endpoint: `http://127.0.0.1:${port}${TOKEN_PATH}`,
    header: secret,
    setTtlSeconds(seconds: number) {
      ttlSeconds = positiveTtl(seconds);
    },
    setFailure(status: number | null) {
      if (status !== null && (!Number.isInteger(status) || status < 400 || status > 599)) {
        throw new RangeError(`setFailure: ${status} is not an HTTP error status (400-599)`);
      }
      failure = status;
    },
    requests: () => seen.map((r) => ({ ...r })),
    close: () => closeServer(server),
  };
}

const noIdentityMessage = "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.";

/** The platform's error body: `{"statusCode":400,"message":"...","correlationId":"..."}`. */
function platformError(statusCode: number, message: string): Record<string, unknown> {
  return { statusCode, message, correlationId: randomUUID() };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function positiveTtl(seconds: number): number {
  if (!Number.isFinite(seconds) || seconds <= 0) throw new RangeError(`ttlSeconds must be positive, got ${seconds}`);
  return Math.floor(seconds);
}
