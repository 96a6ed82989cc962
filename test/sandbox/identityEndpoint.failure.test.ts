import { ManagedIdentityCredential } from "@azure/identity";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startIdentityEndpoint, type IdentityEndpoint } from "../../sandbox/identityEndpoint";
import { AUDIENCE, decodeClaims } from "../../sandbox/tokens";

// A file of its own: msal-node keeps the managed identity source, and with it the network
// client (and the retry settings) of the FIRST credential that asks for a token, for the whole
// process. Here that first credential has maxRetries: 0, so failures come back at once.
let identity: IdentityEndpoint;

beforeAll(async () => {
  identity = await startIdentityEndpoint();
  process.env.IDENTITY_ENDPOINT = identity.endpoint;
  process.env.IDENTITY_HEADER = identity.header;
});

afterAll(async () => {
  await identity?.close();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

describe("managed identity endpoint failures through the real ManagedIdentityCredential", () => {
  it("surfaces a 500 from the endpoint, then recovers once the endpoint does", async () => {
    const credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
    identity.setFailure(500);
    try {
      await expect(credential.getToken("https://monitor.azure.com/.default")).rejects.toThrow(/ManagedIdentityCredential/);
    } finally {
      identity.setFailure(null);
    }
    const token = await credential.getToken("https://monitor.azure.com/.default");
    expect(decodeClaims(token.token)?.aud).toBe(AUDIENCE.monitor);
    expect(identity.requests().filter((r) => r.resource === AUDIENCE.monitor).length).toBe(2);
  });
});
