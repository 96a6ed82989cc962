// The audit archive: JSONL(.gz) under <container>/audit/ and the export state under <container>/_state/.
//
// A second storage account rather than the Function App's own, because:
//  - exported audit data is sensitive: the identity gets Storage Blob Data Contributor on an account
//    that holds nothing else, and the archive's access, network rules and retention can be
//    tightened without touching the Functions host;
//  - versioning is account-wide: here it protects the state blob (_state/export.json is rewritten
//    with ETag conditions every run) and the archive; on the host's account it would keep a version
//    of every timer-status and lock write.

param name string
param location string
param tags object = {}

@description('Private network: the account is reached through a private endpoint only (storage-private-endpoint.bicep); its public endpoint is closed.')
param vnetEnabled bool = false
param containerName string

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
      // Only the archive: the state under _state/ is read and rewritten every run.
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

    resource container 'containers' = {
      name: containerName
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
