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

/** The archive's container and the state's (the same one unless EXPORT_STATE_CONTAINER names another). */
export interface StorageContainers {
  archive: ContainerClient;
  state: ContainerClient;
}

export function createContainerClients(storage: StorageSettings, credential: TokenCredential): StorageContainers {
  const service =
    storage.kind === "connectionString"
      ? BlobServiceClient.fromConnectionString(storage.connectionString)
      : new BlobServiceClient(storage.accountUrl, credential);
  return { archive: service.getContainerClient(storage.container), state: service.getContainerClient(storage.stateContainer) };
}
