import { warehouseErrorKind } from "./databricks";
import { describeError } from "./errors";

/** What a warehouse error means for an admin, and what to do about it. */
export function explainWarehouseError(error: unknown): string {
  const detail = describeError(error);
  switch (warehouseErrorKind(error)) {
    case "auth":
      return `The SQL warehouse refused the credentials (${detail}). With a PAT, check DATABRICKS_ACCESS_TOKEN / --access-token is valid and not expired; with managed identity, add the identity as a service principal to the workspace (and check DATABRICKS_SCOPE for sovereign clouds).`;
    case "permission":
      return `The identity cannot read system.access.audit (${detail}). System tables must be enabled for the metastore, and a metastore admin or account admin must grant: USE CATALOG ON CATALOG system; USE SCHEMA ON SCHEMA system.access; SELECT ON TABLE system.access.audit.`;
    case "unreachable":
      return `Cannot reach the SQL warehouse (${detail}). Check DATABRICKS_SERVER_HOSTNAME / --server-hostname and that the network (private endpoint, firewall, IP access list) lets this host in.`;
    case "sql":
      return `The SQL warehouse rejected the query (${detail}).`;
    default:
      return `The SQL warehouse call failed (${detail}).`;
  }
}
