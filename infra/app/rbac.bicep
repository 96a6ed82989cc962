// Data-plane roles for the app's identity (and, when asked, for the admin running azd).
// The Monitoring Metrics Publisher role on the data collection rule lives in logs-ingestion.bicep,
// next to the rule.

param functionStorageAccountName string
param exportStorageAccountName string

@description('The archive\'s container on the export account (write-once: version-level WORM).')
param archiveContainerName string

@description('The state container on the export account (_state/, dead letters, alerts).')
param stateContainerName string
param applicationInsightsName string

@description('The app\'s Log Analytics workspace: reconciliation reads DatabricksAudit_CL there.')
param logAnalyticsName string

@description('Object ID of the app\'s managed identity.')
param principalId string

@description('Optional object ID of an admin who may read and write the archive and the backfill queue (for the CLI); empty for none.')
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
// host for its blobs (api.bicep gives it the blob and queue endpoints, never the table one, so it
// needs no table role); it also reads the deployment package with it.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Blob Data Contributor: read, write and delete blobs, and create their container. What the
// export needs on each of its two containers (below).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Monitoring Metrics Publisher: lets an identity send telemetry to an Application Insights resource
// with local authentication disabled (and, on a DCR, upload through the Logs Ingestion API).
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
// Log Analytics Reader: read access to the workspace's tables through the Logs Query API; what
// reconciliation needs to count the rows of DatabricksAudit_CL per EventId (and nothing more).
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'
// Storage Queue Data Contributor: the backfill's queue trigger (backfillSlice) reads its slices through
// AzureWebJobsStorage, so the host now uses queues too. Microsoft's identity-based connections table
// for Queue Storage lists Storage Queue Data Reader and Storage Queue Data Message Processor for the
// trigger, and Storage Queue Data Contributor or Storage Queue Data Message Sender for sending. The
// least that covers this app is Contributor: the host renews a running slice's message visibility and
// releases a failed one (Update Message, queues/messages/write: in neither Reader, Message Processor
// nor Message Sender), sends a message to '<queue>-poison' after maxDequeueCount and creates that queue
// if it is missing (queues/write); and the slice re-enqueues its own continuation (a send). Reader +
// Message Processor + Message Sender would still fail the first two; no built-in role narrower than
// Contributor holds them all.
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Not assigned: Storage Table Data Contributor. Tables matter for Durable Functions and the host's
// diagnostic events, which api.bicep leaves off by giving the host no table endpoint (nor __accountName).

resource functionStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: functionStorageAccountName
}

resource exportStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: exportStorageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource archiveContainer 'containers' existing = {
      name: archiveContainerName
    }

    resource stateContainer 'containers' existing = {
      name: stateContainerName
    }
  }
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

// The backfill queue and its poison queue, on the host's own account (which holds no other queue):
// the trigger receives, renews and deletes slice messages and moves failed ones to the poison queue,
// and the app sends the continuation of a slice that ran out of BACKFILL_TIME_BUDGET.
resource hostQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(functionStorage.id, principalId, storageQueueDataContributorRoleId)
  scope: functionStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Each container, not the account: the app's identity reaches the two containers and nothing else
// on it. On the archive's container the same built-in role as on the state's, because no built-in
// role can create blobs without also being allowed to delete them (a custom one would need the
// deployer to hold Microsoft.Authorization/roleDefinitions/write, which Role Based Access Control
// Administrator does not), and there the container's version-level WORM policy refuses what the
// role would otherwise allow: every version written is immutable for archiveRetentionDays, whoever
// asks, so a delete or an overwrite by this identity (or by anyone who obtained it) only hides the
// current version or adds another, and the bytes first written stay. The app itself only ever
// creates archive blobs (ifNoneMatch '*'). The role on the container, not the account, also keeps
// the identity out of anything else the account may ever hold.
resource archiveContainerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exportStorage::blobService::archiveContainer.id, principalId, storageBlobDataContributorRoleId)
  scope: exportStorage::blobService::archiveContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The state container: rewritten with ETag conditions every run, batch ledgers deleted when done.
resource stateContainerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exportStorage::blobService::stateContainer.id, principalId, storageBlobDataContributorRoleId)
  scope: exportStorage::blobService::stateContainer
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

// `dbx-audit backfill start/status/cancel` from the admin's shell, with az login: the CLI sends, reads
// and deletes messages on the backfill queue and its poison queue as the app does, so the same role.
resource operatorBackfillQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(functionStorage.id, operatorPrincipalId, storageQueueDataContributorRoleId)
  scope: functionStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
