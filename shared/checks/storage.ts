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

export async function blobContainerCheck(container: ContainerClient, name: string, budget: Budget): Promise<CheckResult> {
  const where = `container '${name}' at ${container.accountName ? `account ${container.accountName}` : "the storage account"}`;
  const step = async <T>(work: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>> => {
    const ms = budget.stepMs(BLOB_STEP_TIMEOUT_MS);
    return timed(() => work(AbortSignal.timeout(ms)), ms);
  };
  let created = false;
  let publicAccess: string | undefined;
  const properties = await step((abortSignal) => container.getProperties({ abortSignal }));
  if (properties.kind === "failed" && statusOf(properties.error) === 404) {
    const create = await step((abortSignal) => container.createIfNotExists({ abortSignal }));
    if (create.kind !== "done") return blobFailure(create, where, "create the container");
    created = true;
  } else if (properties.kind !== "done") {
    return blobFailure(properties, where, "read the container's properties");
  } else {
    publicAccess = properties.value.blobPublicAccess;
  }

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

  const done = `${where} ${created ? "was missing and was created (private)" : "is reachable"}; a probe blob under _state/ was written and deleted.`;
  if (publicAccess) {
    return {
      name: "blob_container",
      status: "WARN",
      detail: `${done} But the container allows anonymous read access ('${publicAccess}'), and exported audit data is sensitive.`,
      remediation: `Set the container's public access level to private (az storage container set-permission --name ${name} --public-access off), and disable 'Allow Blob anonymous access' on the storage account.`,
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
