import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from "@azure/identity";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import type { AppConfig, Settings, StorageSettings } from "./config";

/**
 * Where the app's clients are built: once per invocation, from validated settings, never at
 * module load (an entry file that throws while loading takes every function down).
 */

/**
 * Managed identity wherever the platform provides one (Functions sets IDENTITY_ENDPOINT), or
 * when a user-assigned identity is named; elsewhere (an admin's shell) the default chain,
 * which includes `az login`.
 */
export function createAzureCredential(config: Pick<AppConfig, "azureClientId">, env: Settings, options: { maxRetries?: number } = {}): TokenCredential {
  const retryOptions = options.maxRetries !== undefined ? { retryOptions: { maxRetries: options.maxRetries } } : {};
  if (env.IDENTITY_ENDPOINT || env.MSI_ENDPOINT || config.azureClientId) {
    return config.azureClientId
      ? new ManagedIdentityCredential({ clientId: config.azureClientId, ...retryOptions })
      : new ManagedIdentityCredential({ ...retryOptions });
  }
  return new DefaultAzureCredential({ ...retryOptions });
}

export function createContainerClient(storage: StorageSettings, credential: TokenCredential): ContainerClient {
  const service =
    storage.kind === "connectionString"
      ? BlobServiceClient.fromConnectionString(storage.connectionString)
      : new BlobServiceClient(storage.accountUrl, credential);
  return service.getContainerClient(storage.container);
}
