// Log Analytics / Microsoft Sentinel sink: the DatabricksAudit_CL and DatabricksAuditAlerts_CL tables,
// a data collection endpoint (DCE) and a data collection rule (DCR) whose streams
// Custom-DatabricksAudit and Custom-DatabricksAuditAlerts flow into them unchanged, and the
// Monitoring Metrics Publisher role on the DCR for the app's identity.
//
// The tables' columns and the streams come from infra/tables.json, the one declaration the app's
// records and the local Logs Ingestion stand-in are tested against (test/infra/tables.test.ts):
// a column the app sends that the table lacks would be dropped by Log Analytics without a word.
//
// main.bicep deploys this into the app's own workspace. It also deploys on its own, into the
// resource group of an existing (Sentinel) workspace: see infra/README.md.

@description('Log Analytics workspace, in this deployment\'s resource group, that receives both tables.')
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

@description('What kind of principal operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@description('Days DatabricksAudit_CL stays queryable (Sentinel includes 90 days at no extra retention cost).')
@minValue(4)
@maxValue(730)
param tableRetentionInDays int = 90

@description('Total days DatabricksAudit_CL is kept, interactive plus long-term (system.access.audit itself keeps 365). At least tableRetentionInDays.')
@minValue(4)
@maxValue(4383)
param tableTotalRetentionInDays int = 365

@description('Days DatabricksAuditAlerts_CL stays queryable.')
@minValue(4)
@maxValue(730)
param alertsTableRetentionInDays int = 90

@description('Total days DatabricksAuditAlerts_CL is kept, interactive plus long-term. At least alertsTableRetentionInDays.')
@minValue(4)
@maxValue(4383)
param alertsTableTotalRetentionInDays int = 365

var tableDefinitions = loadJsonContent('../tables.json').tables
var auditTableName = 'DatabricksAudit_CL'
var alertsTableName = 'DatabricksAuditAlerts_CL'
var destinationName = 'auditWorkspace'

// A table's total retention includes its interactive retention: Log Analytics refuses a total
// below it, late and with a less helpful message, so the deployment stops here instead.
var retentionByTable = {
  DatabricksAudit_CL: {
    interactive: tableRetentionInDays
    total: tableTotalRetentionInDays >= tableRetentionInDays ? tableTotalRetentionInDays : fail('tableTotalRetentionInDays (AUDIT_TABLE_TOTAL_RETENTION_DAYS) must be at least tableRetentionInDays (AUDIT_TABLE_RETENTION_DAYS).')
  }
  DatabricksAuditAlerts_CL: {
    interactive: alertsTableRetentionInDays
    total: alertsTableTotalRetentionInDays >= alertsTableRetentionInDays ? alertsTableTotalRetentionInDays : fail('alertsTableTotalRetentionInDays (ALERTS_TABLE_TOTAL_RETENTION_DAYS) must be at least alertsTableRetentionInDays (ALERTS_TABLE_RETENTION_DAYS).')
  }
}

// Monitoring Metrics Publisher: the data action the Logs Ingestion API checks on the DCR.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource tables 'Microsoft.OperationalInsights/workspaces/tables@2026-03-01' = [
  for table in items(tableDefinitions): {
    parent: workspace
    name: table.key
    properties: {
      // Analytics: what Sentinel analytic rules need.
      plan: 'Analytics'
      retentionInDays: retentionByTable[table.key].interactive
      totalRetentionInDays: retentionByTable[table.key].total
      schema: {
        name: table.key
        description: table.value.description
        columns: map(table.value.columns, column => {
          name: column.name
          type: column.type
          description: column.description
        })
      }
    }
  }
]

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
    description: 'Databricks audit events and the app\'s alerts into ${auditTableName} and ${alertsTableName}, unchanged.'
    dataCollectionEndpointId: dataCollectionEndpoint.id
    // Stream declarations take the table API's types in lower case.
    streamDeclarations: toObject(items(tableDefinitions), table => table.value.stream, table => {
      columns: map(table.value.columns, column => {
        name: column.name
        type: toLower(column.type)
      })
    })
    destinations: {
      logAnalytics: [
        {
          name: destinationName
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: map(items(tableDefinitions), table => {
      streams: [
        table.value.stream
      ]
      destinations: [
        destinationName
      ]
      transformKql: 'source'
      outputStream: 'Custom-${table.key}'
    })
  }
  // The DCR is validated against the tables' schemas when it is created.
  dependsOn: [
    tables
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
    principalType: operatorPrincipalType
  }
}

@description('LOGS_INGESTION_ENDPOINT')
output endpoint string = dataCollectionEndpoint.properties.logsIngestion.endpoint
@description('LOGS_INGESTION_RULE_ID: the DCR\'s immutable ID (dcr-...), not its resource ID.')
output ruleId string = dataCollectionRule.properties.immutableId
@description('LOGS_INGESTION_STREAM')
output streamName string = tableDefinitions[auditTableName].stream
@description('LOGS_INGESTION_ALERTS_STREAM')
output alertsStreamName string = tableDefinitions[alertsTableName].stream
output tableName string = auditTableName
output alertsTableName string = alertsTableName
output dataCollectionRuleId string = dataCollectionRule.id
output dataCollectionEndpointId string = dataCollectionEndpoint.id
