// The audit archive: JSONL(.gz) under <containerName>/audit/, write-once (version-level WORM), and
// what the app rewrites (_state/, dead-letter/, alerts/) in <stateContainerName>.
//
// A second storage account rather than the Function App's own, because:
//  - exported audit data is sensitive: the identity gets roles on this account's containers only
//    (rbac.bicep), and the archive's access, network rules and retention can be tightened without
//    touching the Functions host;
//  - versioning is account-wide, and version-level WORM needs it: here it protects the state blob
//    (_state/export.json is rewritten with ETag conditions every run) and the archive; on the host's
//    account it would keep a version of every timer-status and lock write.

param name string
param location string
param tags object = {}

@description('Private network: the account is reached through a private endpoint only (storage-private-endpoint.bicep); its public endpoint is closed.')
param vnetEnabled bool = false
@description('The archive\'s container (EXPORT_CONTAINER): write-once.')
param containerName string

@description('The container of what the app rewrites and deletes (EXPORT_STATE_CONTAINER): _state/, dead letters, alerts.')
param stateContainerName string

@description('Days each archived blob version stays immutable (version-level WORM): nobody, the app included, can delete or change it meanwhile. The policy is deployed unlocked (it can be shortened or removed by an owner of the account); lock it to make it binding for the regulator (infra/README.md).')
@minValue(1)
@maxValue(146000)
param archiveRetentionDays int = 365

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Days a deleted blob or container can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

@description('Previous blob versions are deleted after this many days.')
@minValue(1)
param versionRetentionDays int = 30

@description('Archive blobs (<container>/audit/) move to the Cool tier after this many days; 0 keeps them Hot.')
@minValue(0)
param coolTierAfterDays int = 30

var expirePreviousVersionsRule = {
  name: 'expire-previous-versions'
  enabled: true
  type: 'Lifecycle'
  definition: {
    filters: {
      blobTypes: [
        'blockBlob'
      ]
    }
    actions: {
      version: {
        delete: {
          daysAfterCreationGreaterThan: versionRetentionDays
        }
      }
    }
  }
}

var archiveToCoolRule = {
  name: 'archive-to-cool'
  enabled: true
  type: 'Lifecycle'
  definition: {
    filters: {
      blobTypes: [
        'blockBlob'
      ]
      // Only the archive: the state container's blobs are read and rewritten every run.
      prefixMatch: [
        '${containerName}/audit/'
      ]
    }
    actions: {
      baseBlob: {
        tierToCool: {
          daysAfterModificationGreaterThan: coolTierAfterDays
        }
      }
    }
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
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
    properties: {
      isVersioningEnabled: true
      deleteRetentionPolicy: {
        enabled: true
        days: softDeleteRetentionDays
      }
      containerDeleteRetentionPolicy: {
        enabled: true
        days: softDeleteRetentionDays
      }
    }

    // Write-once: version-level immutability with a default time-based retention policy, so every
    // blob version written here is immutable for archiveRetentionDays. The app only ever creates
    // blobs (ifNoneMatch '*'); an overwrite or a delete by anyone would only add a version or hide
    // the current one, and the protected versions stay until their retention ends.
    resource container 'containers' = {
      name: containerName
      properties: {
        publicAccess: 'None'
        immutableStorageWithVersioning: {
          enabled: true
        }
      }

      resource retention 'immutabilityPolicies' = {
        name: 'default'
        properties: {
          immutabilityPeriodSinceCreationInDays: archiveRetentionDays
          // Block blobs only, written whole: no appends to protected blobs.
          allowProtectedAppendWrites: false
          allowProtectedAppendWritesAll: false
        }
      }
    }

    // Everything the export rewrites with ETag conditions or deletes when done with it.
    resource stateContainer 'containers' = {
      name: stateContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource lifecycle 'managementPolicies' = {
    name: 'default'
    properties: {
      policy: {
        rules: concat([expirePreviousVersionsRule], coolTierAfterDays > 0 ? [archiveToCoolRule] : [])
      }
    }
    // The version rule needs versioning on first; one change to the account at a time.
    dependsOn: [
      blobService
    ]
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output containerName string = storage::blobService::container.name
output stateContainerName string = storage::blobService::stateContainer.name
