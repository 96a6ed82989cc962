import { randomUUID } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import type { ContainerClient } from "@azure/storage-blob";
import { STATE_BLOB } from "../blobStore";
import { describeError, statusOf } from "../errors";
import type { CheckResult } from "./result";
import { timed, type Budget, type Outcome } from "./timing";

export const BLOB_STEP_TIMEOUT_MS = 10_000;

export const noCredential: TokenCredential = {
  getToken: () => Promise.reject(new Error("storage uses a connection string: no token needed")),
};

/**
 * The state container (`container`, `name`) is read, written (a probe under _state/) and deleted
 * from, as the export does. A separate archive container (EXPORT_STATE_CONTAINER set) is only
 * looked at: it is write-once, and a probe written there could not be deleted.
 */
export async function blobContainerCheck(
  container: ContainerClient,
  name: string,
  budget: Budget,
  archive?: { container: ContainerClient; name: string },
): Promise<CheckResult> {
  const whereOf = (client: ContainerClient, containerName: string): string =>
    `container '${containerName}' at ${client.accountName ? `account ${client.accountName}` : "the storage account"}`;
  const where = whereOf(container, name);
  const step = async <T>(work: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>> => {
    const ms = budget.stepMs(BLOB_STEP_TIMEOUT_MS);
    return timed(() => work(AbortSignal.timeout(ms)), ms);
  };
  const open = async (client: ContainerClient, at: string): Promise<CheckResult | { created: boolean; publicAccess?: string }> => {
    const properties = await step((abortSignal) => client.getProperties({ abortSignal }));
    if (properties.kind === "failed" && statusOf(properties.error) === 404) {
      const create = await step((abortSignal) => client.createIfNotExists({ abortSignal }));
      return create.kind === "done" ? { created: true } : blobFailure(create, at, "create the container");
    }
    if (properties.kind !== "done") return blobFailure(properties, at, "read the container's properties");
    const publicAccess = properties.value.blobPublicAccess;
    return { created: false, ...(publicAccess ? { publicAccess } : {}) };
  };
  const opened = await open(container, where);
  if ("status" in opened) return opened;
  let archiveNote = "";
  let publicAccess = opened.publicAccess;
  let publicName = name;
  if (archive && archive.name !== name) {
    const archiveWhere = whereOf(archive.container, archive.name);
    const archiveOpened = await open(archive.container, archiveWhere);
    if ("status" in archiveOpened) return archiveOpened;
    archiveNote = ` The archive's ${archiveWhere} ${archiveOpened.created ? "was missing and was created (private)" : "is reachable"} (not written to: it is write-once).`;
    if (!publicAccess && archiveOpened.publicAccess) {
      publicAccess = archiveOpened.publicAccess;
      publicName = archive.name;
    }
  }
  const created = opened.created;

  // Never the state blob itself: a probe of our own, written only if absent, then deleted.
  const probeName = `_state/prerequisite-check-${randomUUID()}.probe`;
  if (probeName === STATE_BLOB) throw new Error("unreachable: the probe blob must not be the state blob");
  const body = "dbx-audit prerequisite check: safe to delete";
  const write = await step((abortSignal) =>
    container.getBlockBlobClient(probeName).upload(body, Buffer.byteLength(body), { abortSignal, conditions: { ifNoneMatch: "*" } }),
  );
  if (write.kind !== "done") return blobFailure(write, where, "write a probe blob under _state/");
  const remove = await step((abortSignal) => container.deleteBlob(probeName, { abortSignal }));
  if (remove.kind !== "done") return blobFailure(remove, where, `delete the probe blob ${probeName} (delete it by hand)`);

  const done = `${where} ${created ? "was missing and was created (private)" : "is reachable"}; a probe blob under _state/ was written and deleted.${archiveNote}`;
  if (publicAccess) {
    return {
      name: "blob_container",
      status: "WARN",
      detail: `${done} But the container '${publicName}' allows anonymous read access ('${publicAccess}'), and exported audit data is sensitive.`,
      remediation: `Set the container's public access level to private (az storage container set-permission --name ${publicName} --public-access off), and disable 'Allow Blob anonymous access' on the storage account.`,
    };
  }
  return { name: "blob_container", status: "PASS", detail: done, remediation: "" };
}

function blobFailure(outcome: Outcome<unknown>, where: string, action: string): CheckResult {
  if (outcome.kind === "timeout") {
    return {
      name: "blob_container",
      status: "FAIL",
      detail: `No answer from ${where} within the time allowed when trying to ${action}.`,
      remediation:
        "Check the storage endpoint (EXPORT_STORAGE_ACCOUNT_URL) and that this host can reach it (DNS, private endpoint, the storage account's firewall and network rules).",
    };
  }
  const error = outcome.kind === "failed" ? outcome.error : new Error("unknown");
  const status = statusOf(error);
  const code = (error as { code?: string }).code ?? "";
  const detail = `Could not ${action} in ${where} (${describeError(error)}).`;
  let remediation: string;
  if (code === "KeyBasedAuthenticationNotPermitted") {
    remediation =
      "Shared keys are disabled on the storage account (as recommended): use EXPORT_STORAGE_ACCOUNT_URL with the app's managed identity instead of a connection string.";
  } else if (code === "AuthorizationFailure" || code === "AuthorizationSourceIPMismatch") {
    remediation =
      "The storage account's firewall or network rules block this host: allow the Function App's subnet or private endpoint (Networking on the storage account).";
  } else if (status === 403 && code !== "AuthenticationFailed") {
    remediation =
      "Assign the app's identity the Storage Blob Data Contributor role on the storage account or on the container (it reads and writes the archive and the _state/ blobs); role assignments can take a few minutes to apply.";
  } else if (status === 401 || code === "AuthenticationFailed") {
    remediation =
      "The storage account refused the credentials: with EXPORT_STORAGE_CONNECTION_STRING check the account key; with EXPORT_STORAGE_ACCOUNT_URL check the identity belongs to the account's tenant.";
  } else if (status === undefined) {
    remediation =
      "Check the storage endpoint (EXPORT_STORAGE_ACCOUNT_URL or the connection string's BlobEndpoint) and that this host can reach it (DNS, private endpoint, firewall).";
  } else {
    remediation = "Check the storage account and container settings (EXPORT_STORAGE_ACCOUNT_URL, EXPORT_CONTAINER); see TROUBLESHOOTING.md.";
  }
  return { name: "blob_container", status: "FAIL", detail, remediation };
}
