// Log Analytics / Microsoft Sentinel sink: the DatabricksAudit_CL table, a data collection
// endpoint (DCE) and a data collection rule (DCR) whose stream Custom-DatabricksAudit flows into
// the table unchanged, and the Monitoring Metrics Publisher role on the DCR for the app's identity.
//
// main.bicep deploys this into the app's own workspace. It also deploys on its own, into the
// resource group of an existing (Sentinel) workspace: see infra/README.md.

@description('Log Analytics workspace, in this deployment\'s resource group, that receives DatabricksAudit_CL.')
param workspaceName string

@description('Region of the DCE and DCR: must be the workspace\'s region.')
param location string = resourceGroup().location

param dataCollectionEndpointName string
param dataCollectionRuleName string
param tags object = {}

@description('Object ID of the identity that uploads (the app\'s managed identity).')
param principalId string

@description('Optional object ID of an admin who may also upload (for the CLI); empty for none.')
param operatorPrincipalId string = ''

@description('Days DatabricksAudit_CL stays queryable (Sentinel includes 90 days at no extra retention cost).')
@minValue(4)
@maxValue(730)
param tableRetentionInDays int = 90

@description('Total days DatabricksAudit_CL is kept, interactive plus long-term (system.access.audit itself keeps 365).')
@minValue(4)
@maxValue(4383)
param tableTotalRetentionInDays int = 365

var tableName = 'DatabricksAudit_CL'
var streamName = 'Custom-DatabricksAudit'
var destinationName = 'auditWorkspace'

// Monitoring Metrics Publisher: the data action the Logs Ingestion API checks on the DCR.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

// The Sentinel solution's DatabricksAudit_CL column names (Azure-Sentinel Solutions/Databricks), so its
// rules run unchanged, plus EventId and IdentityMetadata. The app sends exactly these columns: keep this
// list in step with DATABRICKS_AUDIT_STREAM_COLUMNS in sandbox/logsIngestion.ts (the local stand-in
// rejects any column or type the stream does not declare, as a mismatch here would lose data).
// Types are spelled as the table API spells them; the stream declaration takes them in lower case.
var auditColumns = [
  { name: 'TimeGenerated', type: 'dateTime', description: 'Event time; Log Analytics replaces a value older than 2 days with the receive time.' }
  { name: 'EventTime', type: 'dateTime', description: 'event_time: when the event happened (UTC). Always the event\'s own time.' }
  { name: 'SchemaVersion', type: 'string', description: 'version: audit log schema version.' }
  { name: 'AuditLevel', type: 'string', description: 'audit_level: WORKSPACE_LEVEL or ACCOUNT_LEVEL.' }
  { name: 'AccountId', type: 'string', description: 'account_id: Databricks account ID.' }
  { name: 'WorkspaceId', type: 'string', description: 'workspace_id; 0 for account-level events.' }
  { name: 'ServiceName', type: 'string', description: 'service_name, e.g. accounts, clusters, secrets, unityCatalog.' }
  { name: 'ActionName', type: 'string', description: 'action_name, e.g. login, createCluster, getSecret.' }
  { name: 'RequestId', type: 'string', description: 'request_id.' }
  { name: 'SessionId', type: 'string', description: 'session_id.' }
  { name: 'SourceIPAddress', type: 'string', description: 'source_ip_address.' }
  { name: 'UserAgent', type: 'string', description: 'user_agent.' }
  { name: 'UserEmail', type: 'string', description: 'user_identity.email.' }
  { name: 'UserSubjectName', type: 'string', description: 'user_identity.subject_name.' }
  { name: 'UserIdentity', type: 'dynamic', description: 'user_identity, whole.' }
  { name: 'RequestParams', type: 'dynamic', description: 'request_params (after the app\'s redaction).' }
  { name: 'ResponseStatusCode', type: 'int', description: 'response.status_code.' }
  { name: 'ResponseErrorMessage', type: 'string', description: 'response.error_message.' }
  { name: 'ResponseResult', type: 'string', description: 'response.result.' }
  { name: 'EventId', type: 'string', description: 'event_id: unique per event.' }
  { name: 'IdentityMetadata', type: 'dynamic', description: 'identity_metadata: run_by, run_as.' }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource auditTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    // Analytics: what Sentinel analytic rules need.
    plan: 'Analytics'
    retentionInDays: tableRetentionInDays
    totalRetentionInDays: tableTotalRetentionInDays
    schema: {
      name: tableName
      description: 'Databricks audit log (system.access.audit), exported by the databricks-audit-export Function App.'
      columns: [for column in auditColumns: {
        name: column.name
        type: column.type
        description: column.description
      }]
    }
  }
}

resource dataCollectionEndpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: dataCollectionEndpointName
  location: location
  tags: tags
  properties: {
    description: 'Logs Ingestion endpoint for the Databricks audit export.'
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: dataCollectionRuleName
  location: location
  tags: tags
  properties: {
    description: 'Databricks audit events (stream ${streamName}) into ${tableName}, unchanged.'
    dataCollectionEndpointId: dataCollectionEndpoint.id
    streamDeclarations: {
      '${streamName}': {
        columns: [for column in auditColumns: {
          name: column.name
          type: toLower(column.type)
        }]
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: destinationName
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          destinationName
        ]
        transformKql: 'source'
        outputStream: 'Custom-${tableName}'
      }
    ]
  }
  // The DCR is validated against the table's schema when it is created.
  dependsOn: [
    auditTable
  ]
}

resource uploaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataCollectionRule.id, principalId, monitoringMetricsPublisherRoleId)
  scope: dataCollectionRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorUploaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(dataCollectionRule.id, operatorPrincipalId, monitoringMetricsPublisherRoleId)
  scope: dataCollectionRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: operatorPrincipalId
  }
}

@description('LOGS_INGESTION_ENDPOINT')
output endpoint string = dataCollectionEndpoint.properties.logsIngestion.endpoint
@description('LOGS_INGESTION_RULE_ID: the DCR\'s immutable ID (dcr-...), not its resource ID.')
output ruleId string = dataCollectionRule.properties.immutableId
@description('LOGS_INGESTION_STREAM')
output streamName string = streamName
output tableName string = tableName
output dataCollectionRuleId string = dataCollectionRule.id
output dataCollectionEndpointId string = dataCollectionEndpoint.id
