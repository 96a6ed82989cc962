import type { Settings } from "../config";
import { redactSecrets } from "../errors";
import { sourceTokens } from "./sources";

/**
 * Masks what redactSecrets recognises by shape, plus the exact secret values this run knows
 * (the access tokens, each DATABRICKS_SOURCES source's included, the connection strings and
 * their keys, the identity header, tokens obtained).
 */
export function secretScrubber(settings: Settings, env: Settings): ((text: string) => string) & { add(secret: string): void } {
  const secrets = new Set<string>();
  const add = (value: string | undefined): void => {
    const text = value?.trim();
    if (text && text.length >= 8) secrets.add(text);
  };
  for (const source of [settings, env]) {
    add(source.DATABRICKS_ACCESS_TOKEN);
    for (const token of sourceTokens(source)) add(token);
    add(source.IDENTITY_HEADER);
    add(source.MSI_SECRET);
    add(source.AZURE_CLIENT_SECRET);
    // The archive's connection string and the host's (the backfill queue's), with their keys.
    for (const connection of [source.EXPORT_STORAGE_CONNECTION_STRING, source.AzureWebJobsStorage]) {
      add(connection);
      for (const match of connection?.matchAll(/(?:AccountKey|SharedAccessSignature)=([^;]+)/gi) ?? []) add(match[1]);
    }
  }
  const scrub = (text: string): string => {
    let out = text;
    for (const secret of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(secret).join("***");
    return redactSecrets(out);
  };
  return Object.assign(scrub, { add });
}
