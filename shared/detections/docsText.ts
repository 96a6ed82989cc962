/** The hand-written parts of docs/detections.md (the tables around them are generated from the catalog). */

export const OVERRIDES_DOC = `## Tuning, disabling and adding detections

No code needed: an overrides file, YAML or JSON, on top of the built-in catalog. In Azure it is a blob in the state container
(\`EXPORT_STATE_CONTAINER\`, which is \`EXPORT_CONTAINER\` when unset) named by the app setting \`DETECTIONS_CONFIG\` (e.g. \`config/detections.yaml\`); for the CLI, a local path (\`--config FILE\`).
A built-in detection takes \`enabled\`, \`threshold\`, \`operator\` (\`>\` or \`>=\`), \`window\` and \`severity\`. A new detection
also needs a \`description\` and a \`filter\`, and may set \`measure\`, \`group_by\`, \`tactic\` and \`technique\`:

\`\`\`yaml
detections:
  repeated_failed_login_attempts:
    threshold: 3            # alert on more than 3 failed logins per user and hour
    severity: High
  use_of_print_statements:
    enabled: false
  destructive_activities:
    window: PT1H            # per hour instead of per UTC day
  contractor_permanent_delete:
    description: A contractor deleted something permanently.
    severity: Medium
    tactic: Impact
    technique: T1485
    filter: "action_name = 'permanentDelete' AND user_identity.email LIKE '%@contractor.example'"
    operator: ">"
    threshold: 0
    group_by: [email, workspace_id]   # default: [email]; also source_ip, metastore_id, instance_id (data plane host)
    window: PT1H                      # PT5M ... PT12H, or P1D (the day so far)
\`\`\`

The contract of an added detection is the built-ins': \`filter\` is a SQL condition over the columns of
\`system.access.audit\` (\`request_params['key']\`, \`user_identity.email\`, \`response.status_code\`, ...) in the SQL that both
Databricks SQL and the local stand-in run; \`measure\` (default \`count(*)\`) is an aggregate compared with the threshold. The
runner adds the range, the window, the threshold and the workspaces as bound parameters (\`:from_us\`, \`:to_us\`,
\`:from_date\`, \`:to_date\`, \`:window_us\`, \`:threshold\`, \`:ws_N\`); a filter or measure may not use parameters, \`;\` or
comments. The file is validated against a JSON Schema (\`dbx-audit detections --schema\` prints it): a malformed entry is
reported naming the entry and the field (in the run's log, in \`detections_state\` of the health check, and by
\`dbx-audit detections --config FILE\`) and left out (a built-in keeps its defaults); every other detection still runs. A
detection whose SQL the warehouse refuses fails alone: the run goes on with the others and then reports the failure.

### Backslashes in a filter's regular expression

Databricks SQL unescapes backslashes in string literals before the regular expression sees them, so a regex's \`\\\` is
written twice: to match \`print (\` with \`\\bprint\\s*\\(\`, the filter says

\`\`\`yaml
detections:
  print_in_commands:
    description: A notebook command called print().
    severity: Informational
    filter: "action_name = 'runCommand' AND request_params['commandText'] RLIKE '\\\\\\\\bprint\\\\\\\\s*\\\\\\\\('"
    operator: ">"
    threshold: 0
\`\`\`

(in a double-quoted YAML string each \`\\\` is written twice again, so the file has four; in a single-quoted YAML string or
a JSON file's string, two and four respectively). A single backslash in the SQL, \`'\\bprint'\`, is unescaped before the regex
sees it (\`\\b\` becomes a backspace, \`\\s\` an \`s\`, \`\\(\` an unbalanced \`(\` the warehouse refuses); the local stand-in
unescapes literals as Databricks does, so \`dbx-audit detect --config FILE\` shows the difference before you deploy.

Try a change before deploying it: \`dbx-audit detections --config detections.yaml\` lists the result, and
\`dbx-audit detect --start 2025-09-01T00:00:00Z --end 2025-09-02T00:00:00Z --config detections.yaml --output alerts.jsonl\`
evaluates a range with the app settings in the environment (nothing is kept in the timer's state).
`;

export const ALERTS_DOC_TAIL = `
## Where alerts land

- **Blob Storage**, always: \`<EXPORT_STATE_CONTAINER>/alerts/date=YYYY-MM-DD/hour=HH/<detection>-<alert id>.jsonl\` (by the
  window's start; the state container, not the write-once archive, since a re-sent alert rewrites its blob), one JSON object per alert: \`alert_id, detection, description, severity, tactic, technique, window_start, window_end\`,
  the group key's values as plain fields (\`email\` and \`user\` for the principal, \`source_ip\`, \`workspace_id\`,
  \`metastore_id\`, \`instance_id\` (the data plane host), \`event_date\`), \`count\` (matching events), \`value\` (the measured
  value that passed the threshold), \`measure_name\` (what it is, as the upstream catalog names its alert column: \`total\`,
  \`num_keys_accessed\`, \`infected_files\`, ...), \`condition\` (e.g. \`> 50\`), \`first_event_time, last_event_time\`, up to 10
  \`principals\`, \`source_ips\`, \`workspaces\`, \`actions\`, \`services\` and \`sample_event_ids\` (look them up in the archive or
  \`DatabricksAudit_CL\`), \`context\` (the detection's own details, up to 10 distinct values each, each cut at 500 characters:
  the column \`context\` of the table above), \`sources\` (the SQL warehouses whose events it counts) and \`group_key\`.
- **Log Analytics / Sentinel**, when \`LOGS_INGESTION_ALERTS_STREAM\` is set with \`LOGS_INGESTION_ENDPOINT\` and
  \`LOGS_INGESTION_RULE_ID\`: table \`DatabricksAuditAlerts_CL\` through the stream \`Custom-DatabricksAuditAlerts\` of the same
  data collection rule (columns in \`infra/tables.json\`), e.g.
  \`DatabricksAuditAlerts_CL | where Severity == "High" | project TimeGenerated, Detection, UserEmail, MeasureName, MeasureValue, Condition, Context, SampleEventIds\`.
  The columns say the same as the Blob line: \`MeasureName\`, \`MeasureValue\`, \`Condition\`, \`Actions\`, \`Services\`,
  \`Context\`, \`InstanceId\` besides the group key's columns and the samples.
- An alert is recorded as raised once both have it; one that Log Analytics refused stays pending in the state and is sent
  by the next run (the invocation fails meanwhile, after logging what was delivered).

State: \`_state/detections.json\` in the export container (each detection's last evaluated window and the windows it evaluated
without a warehouse that failed, each warehouse's last error, the alert ids raised within the late-row horizon
\`EXPORT_LATE_HORIZON\`, alerts pending for Log Analytics, a lock). Settings:
\`DETECTIONS_SCHEDULE\` (NCRONTAB, default \`0 15 * * * *\`), \`DETECTIONS_WORKSPACE_IDS\`, \`DETECTIONS_CONFIG\`,
\`LOGS_INGESTION_ALERTS_STREAM\`; windows end no later than now minus \`EXPORT_SETTLE_DELAY\`.
`;

export const REGIONS_DOC = `## Several regions

With several SQL warehouses (\`DATABRICKS_SOURCES\`, one per region), every detection runs on each of them, one after the
other, and their rows are put together before any alert is raised. A warehouse holds its own region's workspace events, and
every warehouse holds the account-level events (\`workspace_id\` "0"), so those are read from one warehouse only: the first
(in \`DATABRICKS_SOURCES\` order) that answers. The \`regions\` column says how a detection combines:

- **added up**: the groups span workspaces (per user, source IP or metastore) and the measure is a \`count\` or \`sum\`: each
  warehouse returns every group's count, and the threshold applies to their sum (one failed login in each of two regions is two).
- **united**: the same for \`count(DISTINCT ...)\`: each warehouse returns its set of values, and the threshold applies to the size
  of their union (\`access_to_multiple_workspaces\`: a user active in 3 workspaces in one region and 2 in another raises one alert).
- **per workspace**: grouped by workspace, which lives in one region: each warehouse applies the threshold to its own groups.
- **per region**: a measure that cannot be put together from parts (\`high_number_of_read_writes\`; a metastore belongs to one
  region): each warehouse is evaluated on its own, account-level events included; a group that passes in several is one alert.

An added detection combines by the same rules: \`count(...)\`, \`sum(...)\` and \`count(DISTINCT x)\` alone are added up or united,
any other measure is per region. An alert's id does not depend on the warehouses; its \`sources\` (\`Sources\` in Log Analytics)
lists those whose events it counts. A warehouse that is down or refuses does not stop the others: the run raises their alerts,
reports it (run summary, log, \`detections_state\` in the health check) and fails after delivering; the windows it missed are
evaluated again, with every warehouse, by the first run in which it answers (up to a week back), and only alerts not raised yet
are raised then.
`;
