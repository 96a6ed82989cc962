// The Function App's own storage: AzureWebJobsStorage (host keys, timer schedule status, the
// singleton locks of timer triggers), the Flex Consumption deployment package container, and the
// backfill's queue of slices with its poison queue (the backfillSlice queue trigger reads it through
// AzureWebJobsStorage). Kept apart from the export archive on purpose: see export-storage.bicep.

param name string
param location string
param tags object = {}

@description('Private network: the account is reached through a private endpoint only (storage-private-endpoint.bicep); its public endpoint is closed.')
param vnetEnabled bool = false
param deploymentContainerName string

// Queue names: 3-63 characters, lowercase letters, digits and single hyphens, starting and ending
// with a letter or digit. The host names the poison queue '<name>-poison' (7 more characters), so the
// name itself stops at 56. Storage refuses a name that breaks the other rules, and the deployment
// stops here, before the Function App is given it.
@minLength(3)
@maxLength(56)
@description('The backfill\'s queue of slices (BACKFILL_QUEUE): lowercase letters, digits and single hyphens, starting and ending with a letter or digit; its poison queue is <name>-poison.')
param backfillQueueName string

var backfillPoisonQueueName = '${backfillQueueName}-poison'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Identity only: the host reaches it through AzureWebJobsStorage__credential=managedidentity.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
      bypass: vnetEnabled ? 'None' : 'AzureServices'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  // Created by the template rather than by the host on first use, so both exist before the app's first
  // start and `dbx-audit backfill status` can read them before any slice has failed.
  resource queueService 'queueServices' = {
    name: 'default'

    resource backfillQueue 'queues' = {
      name: backfillQueueName
    }

    // Where the host moves a slice's message after maxDequeueCount (host.json) failed attempts.
    resource backfillPoisonQueue 'queues' = {
      name: backfillPoisonQueueName
    }
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output backfillQueueName string = storage::queueService::backfillQueue.name
output backfillPoisonQueueName string = storage::queueService::backfillPoisonQueue.name
