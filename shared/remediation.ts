import { warehouseErrorKind } from "./databricks";
import { describeError } from "./errors";

/** What to do about INSUFFICIENT_PERMISSIONS on system.access.audit (the check and the CLI say the same). */
export const SYSTEM_TABLE_GRANTS_REMEDIATION =
  "System tables must be enabled for the metastore (the 'access' system schema; an account admin enables it, e.g. 'databricks system-schemas enable <metastore-id> access'), " +
  "and the identity needs all three grants, at least one of which is missing: " +
  "GRANT USE CATALOG ON CATALOG system TO `<principal>`; GRANT USE SCHEMA ON SCHEMA system.access TO `<principal>`; GRANT SELECT ON TABLE system.access.audit TO `<principal>`. " +
  "A metastore admin (an account admin can assign one) or the owner of the system catalog can grant them; <principal> is the service principal's application ID, or the user or group that owns the access token";

/** What a warehouse error means for an admin, and what to do about it. */
export function explainWarehouseError(error: unknown): string {
  const detail = describeError(error);
  switch (warehouseErrorKind(error)) {
    case "auth":
      return `The SQL warehouse refused the credentials (${detail}). With a PAT, check DATABRICKS_ACCESS_TOKEN / --access-token is valid and not expired; with managed identity, add the identity as a service principal to the workspace (and check DATABRICKS_SCOPE for sovereign clouds).`;
    case "permission":
      return `The identity cannot read system.access.audit (${detail}). ${SYSTEM_TABLE_GRANTS_REMEDIATION}.`;
    case "unreachable":
      return `Cannot reach the SQL warehouse (${detail}). Check DATABRICKS_SERVER_HOSTNAME / --server-hostname and that the network (private endpoint, firewall, IP access list) lets this host in.`;
    case "sql":
      return `The SQL warehouse rejected the query (${detail}).`;
    default:
      return `The SQL warehouse call failed (${detail}).`;
  }
}
