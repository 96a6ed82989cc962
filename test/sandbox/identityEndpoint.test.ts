import { ManagedIdentityCredential } from "@azure/identity";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startIdentityEndpoint, SYSTEM_ASSIGNED_CLIENT_ID, type IdentityEndpoint } from "../../sandbox/identityEndpoint";
import { AUDIENCE, decodeClaims } from "../../sandbox/tokens";

// msal-node fixes the managed identity source (endpoint, header, network client) in a static
// field on the first getToken of the process: one identity endpoint for this whole file,
// started and announced through IDENTITY_ENDPOINT / IDENTITY_HEADER before any credential exists.
const USER_ASSIGNED = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
let identity: IdentityEndpoint;

beforeAll(async () => {
  identity = await startIdentityEndpoint({ userAssignedClientIds: [USER_ASSIGNED] });
  process.env.IDENTITY_ENDPOINT = identity.endpoint;
  process.env.IDENTITY_HEADER = identity.header;
});

afterAll(async () => {
  await identity?.close();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

async function rawGet(query: string, header: string | undefined): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${identity.endpoint}?${query}`, {
    headers: header === undefined ? {} : { "X-IDENTITY-HEADER": header },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("managed identity endpoint stand-in with the real ManagedIdentityCredential", () => {
  it("issues tokens for the Databricks, Azure Monitor and Storage scopes (system-assigned)", async () => {
    const credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
    const cases = [
      [`${AUDIENCE.databricks}/.default`, AUDIENCE.databricks],
      ["https://monitor.azure.com/.default", AUDIENCE.monitor],
      ["https://storage.azure.com/.default", AUDIENCE.storage],
    ] as const;
    for (const [scope, audience] of cases) {
      const token = await credential.getToken(scope);
      expect(token.tokenType).toBe("Bearer");
      expect(token.expiresOnTimestamp).toBeGreaterThan(Date.now());
      const claims = decodeClaims(token.token);
      expect(claims?.aud).toBe(audience);
      expect(claims?.iss).toMatch(/^https:\/\/sts\.windows\.net\//);
    }
    const resources = identity
      .requests()
      .filter((r) => r.clientId === undefined)
      .map((r) => r.resource);
    expect(resources).toEqual(expect.arrayContaining([AUDIENCE.databricks, AUDIENCE.monitor, AUDIENCE.storage]));
  });

  it("serves a user-assigned identity by client id", async () => {
    const credential = new ManagedIdentityCredential({ clientId: USER_ASSIGNED, retryOptions: { maxRetries: 0 } });
    const token = await credential.getToken(`${AUDIENCE.databricks}/.default`);
    expect(decodeClaims(token.token)?.aud).toBe(AUDIENCE.databricks);
    expect(identity.requests()).toContainEqual({ resource: AUDIENCE.databricks, clientId: USER_ASSIGNED });
  });

  it("rejects an unknown user-assigned client id with the platform's 400", async () => {
    const unknown = "ffffffff-0000-4000-8000-000000000000";
    const credential = new ManagedIdentityCredential({ clientId: unknown, retryOptions: { maxRetries: 0 } });
    await expect(credential.getToken("https://monitor.azure.com/.default")).rejects.toThrow(/No User Assigned or Delegated Managed Identity/);
    const raw = await rawGet(`api-version=2019-08-01&resource=${encodeURIComponent(AUDIENCE.monitor)}&client_id=${unknown}`, identity.header);
    expect(raw.status).toBe(400);
    expect(raw.body).toMatchObject({ statusCode: 400, message: expect.stringMatching(/ClientId/) });
  });

  it("refuses two scopes at once (client-side, as in Azure)", async () => {
    const credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
    await expect(credential.getToken(["https://monitor.azure.com/.default", "https://storage.azure.com/.default"])).rejects.toThrow(/Multiple scopes/);
  });

  it("answers the platform's response shape, 401 without the secret header, and simulated failures", async () => {
    const query = `api-version=2019-08-01&resource=${encodeURIComponent(AUDIENCE.monitor)}`;
    const ok = await rawGet(query, identity.header);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ resource: AUDIENCE.monitor, token_type: "Bearer", client_id: SYSTEM_ASSIGNED_CLIENT_ID });
    expect(typeof ok.body.expires_on).toBe("string");
    expect(Number(ok.body.expires_on)).toBeGreaterThan(Date.now() / 1000);
    expect(decodeClaims(String(ok.body.access_token))?.aud).toBe(AUDIENCE.monitor);

    expect((await rawGet(query, undefined)).status).toBe(401);
    expect((await rawGet(query, "wrong")).status).toBe(401);
    expect((await rawGet(`resource=${encodeURIComponent(AUDIENCE.monitor)}&api-version=2017-09-01`, identity.header)).status).toBe(400);

    identity.setTtlSeconds(120);
    const short = await rawGet(query, identity.header);
    const expiresIn = Number(short.body.expires_on) - Date.now() / 1000;
    expect(expiresIn).toBeGreaterThan(60);
    expect(expiresIn).toBeLessThanOrEqual(121);
    identity.setTtlSeconds(3600);

    identity.setFailure(503);
    try {
      const failed = await rawGet(query, identity.header);
      expect(failed.status).toBe(503);
      expect(failed.body).toMatchObject({ statusCode: 503 });
    } finally {
      identity.setFailure(null);
    }
    expect((await rawGet(query, identity.header)).status).toBe(200);
  });
});
