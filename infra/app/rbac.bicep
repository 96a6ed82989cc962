// Data-plane roles for the app's identity (and, when asked, for the admin running azd).
// The Monitoring Metrics Publisher role on the data collection rule lives in logs-ingestion.bicep,
// next to the rule.

param functionStorageAccountName string
param exportStorageAccountName string
param applicationInsightsName string

@description('The app\'s Log Analytics workspace: reconciliation reads DatabricksAudit_CL there.')
param logAnalyticsName string

@description('Object ID of the app\'s managed identity.')
param principalId string

@description('Optional object ID of an admin who may read and write the archive (for the CLI); empty for none.')
param operatorPrincipalId string = ''

@description('What kind of principal operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// Built-in role definition IDs (the same in every tenant).
// Storage Blob Data Owner: what Microsoft's table for identity-based AzureWebJobsStorage asks of the
// host (api.bicep gives it the blob endpoint only, so it never needs the queue or table roles); it
// also reads the deployment package with it.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Blob Data Contributor: read, write and delete blobs; what the export needs on its archive.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Monitoring Metrics Publisher: lets an identity send telemetry to an Application Insights resource
// with local authentication disabled (and, on a DCR, upload through the Logs Ingestion API).
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
// Log Analytics Reader: read access to the workspace's tables through the Logs Query API; what
// reconciliation needs to count the rows of DatabricksAudit_CL per EventId (and nothing more).
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'
// Not assigned: Storage Queue Data Contributor and Storage Table Data Contributor. Timer and HTTP
// triggers keep their state in blobs; queues matter only for queue/blob triggers and Durable Functions,
// tables for Durable and the host's diagnostic events, which AzureWebJobsStorage__blobServiceUri leaves off.

resource functionStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: functionStorageAccountName
}

resource exportStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: exportStorageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource logAnalyticsReaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logAnalytics.id, principalId, logAnalyticsReaderRoleId)
  scope: logAnalytics
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(functionStorage.id, principalId, storageBlobDataOwnerRoleId)
  scope: functionStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// On the whole export account rather than the container: the account holds nothing else, and the
// app creates the container again if someone deletes it.
resource exportStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exportStorage.id, principalId, storageBlobDataContributorRoleId)
  scope: exportStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorExportStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(exportStorage.id, operatorPrincipalId, storageBlobDataContributorRoleId)
  scope: exportStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
