// The Function App on the Flex Consumption plan (FC1, Linux), running as the user-assigned
// identity everywhere: deployment package, AzureWebJobsStorage, Application Insights, Key Vault
// references and the app's own Azure SDK clients.

param name string
param planName string
param location string
param tags object = {}

@description('Resource ID of the user-assigned managed identity.')
param identityId string

@description('Client ID of the user-assigned managed identity.')
param identityClientId string

@description('Storage account for AzureWebJobsStorage and the deployment package.')
param storageAccountName string
param deploymentContainerName string

param applicationInsightsConnectionString string

@description('The app\'s own settings (everything the Functions host does not need).')
param appSettings object

@description('DATABRICKS_SOURCES: the SQL warehouses to read, one per region; set as that app setting (JSON) only when it lists any.')
param databricksSources array = []

@description('App settings no parameter of the template sets (the access token settings DATABRICKS_SOURCES names), by name; none may be one the template sets.')
param extraAppSettings object = {}

@allowed([
  '22'
])
param nodeVersion string = '22'

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances. Timer runs are singletons; HTTP calls and the backfill\'s queue trigger scale out, and this bounds the backfill slices running at once (backfillSlicesPerInstance on each instance).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('How many backfill slices one instance runs at once: the queue trigger\'s batchSize (host.json sets newBatchThreshold 0, so this is the ceiling). Each slice runs one export.')
@minValue(1)
@maxValue(8)
param backfillSlicesPerInstance int = 1

@description('Resource ID of the subnet (delegated to Microsoft.App/environments) the app is integrated with; empty for none.')
param virtualNetworkSubnetId string = ''

// Turned into JSON here, on the resource, rather than passed in as text among appSettings: Resource
// Manager reads a module parameter value that starts with '[' and ends with ']', as this JSON does, as a
// template expression. Without sources the setting is left out, and the single-source settings apply.
var databricksSourcesSetting = empty(databricksSources) ? {} : { DATABRICKS_SOURCES: string(databricksSources) }

// What the Functions host itself reads.
var hostAppSettings = {
  // Identity-based host storage: no connection string, no key. The blob and queue endpoints, never
  // the table one: timers keep their schedule status and singleton locks in blobs, and the backfill's
  // queue trigger (backfillSlice, connection AzureWebJobsStorage) reads its slices from the queue
  // endpoint, with Storage Queue Data Contributor (rbac.bicep). Without a table endpoint the host does
  // not probe tables it has no role on (__accountName would make it derive all three endpoints, and
  // Microsoft's table then asks for Storage Table Data Contributor too, for the host's diagnostic events).
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  // The remote build (azure.yaml: remoteBuild: true) installs devDependencies to compile the
  // TypeScript; this asks Oryx to keep only the production ones in what runs. The package test
  // builds as Oryx does and proves the app loads with production dependencies alone.
  PRUNE_DEV_DEPENDENCIES: 'true'
  // Application Insights has local authentication disabled: telemetry is sent with this identity.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // host.json's extensions.queues.batchSize (1), overridden: slices one instance runs at once. Each
  // runs one export within the instance's memory, so more than 1 needs a larger instance.
  AzureFunctionsJobHost__extensions__queues__batchSize: string(backfillSlicesPerInstance)
}

// An extra setting of the same name as one of the host's would be replaced without a word: refused.
var extraHostSettingNames = intersection(objectKeys(extraAppSettings), objectKeys(hostAppSettings))
var checkedHostAppSettings = empty(extraHostSettingNames) ? hostAppSettings : fail('extraAppSettings (EXTRA_APP_SETTINGS) may not set ${join(extraHostSettingNames, ', ')}: the template sets them for the Functions host.')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    // Key Vault references (the optional DATABRICKS_ACCESS_TOKEN) resolve with this identity.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      // Flex Consumption takes the runtime here, not from FUNCTIONS_WORKER_RUNTIME or
      // WEBSITE_NODE_DEFAULT_VERSION (which it does not accept as app settings).
      runtime: {
        name: 'node'
        version: nodeVersion
      }
    }
  }

  resource appSettingsConfig 'config' = {
    name: 'appsettings'
    // config/appsettings is written whole on every deployment: a setting not listed here is removed.
    properties: union(extraAppSettings, appSettings, databricksSourcesSetting, checkedHostAppSettings)
  }
}

// azd deploys with an Entra ID token; nobody needs publishing user names and passwords.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
