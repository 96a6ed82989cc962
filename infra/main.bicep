// Databricks audit export: a Flex Consumption Function App that copies system.access.audit to a
// private Blob container and to Log Analytics / Microsoft Sentinel (DatabricksAudit_CL), raises alerts
// (DatabricksAuditAlerts_CL), with one user-assigned identity and no keys anywhere. See infra/README.md.

targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Environment

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: names the resource group and seeds the unique token in every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource: one that offers Flex Consumption (az functionapp list-flexconsumption-locations; the list below is the Functions quickstart template\'s).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of whoever runs azd (azd sets AZURE_PRINCIPAL_ID). Used only with grantPrincipalDataAccess.')
param principalId string = ''

@description('What kind of principal principalId is: User for a person running azd, ServicePrincipal for a pipeline (azd sets AZURE_PRINCIPAL_TYPE).')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Also let principalId read and write the audit archive and upload to the DCR, so the dbx-audit CLI works from an admin shell with az login. Off by default: the archive is sensitive.')
param grantPrincipalDataAccess bool = false

// ---------------------------------------------------------------------------------------------
// Databricks (app settings of the same names)

@minLength(1)
@description('DATABRICKS_SERVER_HOSTNAME: the SQL warehouse\'s server hostname (Connection details), e.g. adb-1234567890123456.7.azuredatabricks.net.')
param databricksServerHostname string

@minLength(1)
@description('DATABRICKS_HTTP_PATH: the SQL warehouse\'s HTTP path (Connection details), e.g. /sql/1.0/warehouses/1234567890abcdef.')
param databricksHttpPath string

@description('DATABRICKS_WORKSPACE_IDS: comma-separated workspace IDs to export; empty for every workspace the warehouse sees.')
param databricksWorkspaceIds string = ''

@description('Optional Key Vault secret URI of a Databricks personal access token (https://<vault>.vault.azure.net/secrets/<name>). Empty (recommended): the app signs in to Databricks with its managed identity.')
param databricksAccessTokenSecretUri string = ''

@description('DATABRICKS_SCOPE: Entra ID scope of the Azure Databricks application; empty for the app\'s default (public cloud).')
param databricksScope string = ''

@description('DATABRICKS_CLOUD_FETCH: auto (CloudFetch links from 2,048 MB instances, inline pages on 512 MB), true or false; empty for auto.')
@allowed([
  ''
  'auto'
  'true'
  'false'
])
param databricksCloudFetch string = ''

@maxLength(16)
@description('DATABRICKS_SOURCES: the SQL warehouses to read, one per region, as a list of {"name": "westeurope", "serverHostname": "adb-1234567890123456.7.azuredatabricks.net", "httpPath": "/sql/1.0/warehouses/1234567890abcdef", "workspaceIds": ["1234567890123456"] (optional), "accessTokenSetting": "AN_APP_SETTING" (optional; else the managed identity)}. The first must be the warehouse of databricksServerHostname and databricksHttpPath. Empty: that one warehouse alone.')
param databricksSources array = []

// ---------------------------------------------------------------------------------------------
// Export options: empty means the app's default (shared/config.ts). Same names as the app settings.

@description('AUDIT_SERVICES: comma-separated service_name values, or * for all; empty for the documented workspace-level list.')
param auditServices string = ''

@description('AUDIT_INCLUDE_ACCOUNT_LEVEL: true or false; empty for the default (true).')
param auditIncludeAccountLevel string = ''

@description('AUDIT_REDACT_PARAMS: request_params keys to drop or mask before any sink.')
param auditRedactParams string = ''

@description('EXPORT_SCHEDULE: six-field NCRONTAB (UTC); empty for hourly at minute 5.')
param exportSchedule string = ''

@description('EXPORT_START: where the first run starts, an ISO timestamp or an ISO-8601 duration back from now; empty for PT24H.')
param exportStart string = ''

@description('EXPORT_SETTLE_DELAY: ISO-8601 duration; empty for the default.')
param exportSettleDelay string = ''

@description('EXPORT_LATE_HORIZON: ISO-8601 duration; empty for the default.')
param exportLateHorizon string = ''

@description('EXPORT_TIME_BUDGET: ISO-8601 duration a run may spend fetching; keep it under functionTimeout in host.json (30 minutes). Empty for the default.')
param exportTimeBudget string = ''

@description('EXPORT_QUERY_TIMEOUT: ISO-8601 duration each query may run on the warehouse; empty for the default (PT10M).')
param exportQueryTimeout string = ''

@description('EXPORT_SOURCE_CONCURRENCY: how many sources (regions) are exported at once; empty for the default (1 on instances under 1.5 GB, else 4).')
param exportSourceConcurrency string = ''

@description('CHECK_WORKSPACE_LOOKBACK_HOURS: hours the prerequisite check looks back for events per workspace; empty for the default.')
param checkWorkspaceLookbackHours string = ''

// ---------------------------------------------------------------------------------------------
// Backfill (dbx-audit backfill start: one message per source and UTC day on a Storage queue of the
// Function App's own storage account, exported by the backfillSlice queue trigger)

@minLength(3)
@maxLength(56)
@description('BACKFILL_QUEUE: the Storage queue of backfill slices, created in the Function App\'s own storage account (AzureWebJobsStorage) together with its poison queue <name>-poison. 3-56 characters (so the poison queue\'s name stays within 63): lowercase letters, digits and single hyphens, starting and ending with a letter or digit.')
param backfillQueueName string = 'dbx-audit-backfill'

@description('BACKFILL_TIME_BUDGET: ISO-8601 duration after which a backfill slice\'s invocation stops starting batches and re-enqueues the rest; like EXPORT_TIME_BUDGET it must leave 2 minutes inside functionTimeout in host.json (30 minutes). Empty for the default (PT20M).')
param backfillTimeBudget string = ''

@description('Backfill slices one instance runs at once (AzureFunctionsJobHost__extensions__queues__batchSize; host.json sets newBatchThreshold 0, so this is the ceiling). Each slice runs one export, sized for the instance\'s memory: keep 1 on 512 MB instances. Slices across the app: this times maximumInstanceCount.')
@minValue(1)
@maxValue(8)
param backfillSlicesPerInstance int = 1

@description('Further app settings by name, for settings no parameter sets: the ones the accessTokenSetting fields of databricksSources name, as Key Vault references, e.g. {"DATABRICKS_TOKEN_EASTUS": "@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>)"}. Kept on every deployment; a name the template sets is refused.')
param extraAppSettings object = {}

// ---------------------------------------------------------------------------------------------
// Detections (the runDetections timer; app settings of the same names)

@description('DETECTIONS_SCHEDULE: six-field NCRONTAB (UTC) of runDetections; hourly at minute 15, after the export at minute 5.')
param detectionsSchedule string = '0 15 * * * *'

@description('DETECTIONS_WORKSPACE_IDS: comma-separated workspace IDs the detections look at; empty for every workspace.')
param detectionsWorkspaceIds string = ''

@description('DETECTIONS_CONFIG: blob name, in the export container, of the detections\' overrides file; empty for none.')
param detectionsConfig string = ''

// ---------------------------------------------------------------------------------------------
// Sinks and hosting

@description('Replication of the export storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param exportStorageSkuName string = 'Standard_LRS'

@description('Archive blobs move to the Cool tier after this many days; 0 keeps them Hot.')
@minValue(0)
param archiveCoolTierAfterDays int = 30

@description('Days each archived blob stays immutable (write-once: version-level WORM on the archive\'s container).')
@minValue(1)
@maxValue(146000)
param archiveRetentionDays int = 365

@description('Interactive retention of DatabricksAudit_CL, in days.')
@minValue(4)
@maxValue(730)
param auditTableRetentionInDays int = 90

@description('Total retention of DatabricksAudit_CL (interactive plus long-term), in days; at least auditTableRetentionInDays.')
@minValue(4)
@maxValue(4383)
param auditTableTotalRetentionInDays int = 365

@description('Interactive retention of DatabricksAuditAlerts_CL, in days.')
@minValue(4)
@maxValue(730)
param alertsTableRetentionInDays int = 90

@description('Total retention of DatabricksAuditAlerts_CL (interactive plus long-term), in days; at least alertsTableRetentionInDays.')
@minValue(4)
@maxValue(4383)
param alertsTableTotalRetentionInDays int = 365

@description('Retention of the workspace\'s other tables (the app\'s telemetry), in days.')
@minValue(30)
@maxValue(730)
param workspaceRetentionInDays int = 30

@description('Optional: logs ingestion endpoint of a DCR deployed elsewhere (for example next to an existing Sentinel workspace, see infra/README.md). With logsIngestionRuleId it replaces the DCR this template creates in the app settings.')
param logsIngestionEndpoint string = ''

@description('Optional: immutable ID (dcr-...) of that DCR.')
param logsIngestionRuleId string = ''

@description('LOG_ANALYTICS_WORKSPACE_ID (azd: EXTERNAL_LOG_ANALYTICS_WORKSPACE_ID): workspace ID (customer ID GUID) of the workspace that DCR writes to, for reconciliation; empty for the app\'s own workspace (left unset with an external DCR: grant the identity Log Analytics Reader there and set it).')
param logAnalyticsWorkspaceId string = ''

@description('LOG_ANALYTICS_QUERY_ENDPOINT: the Logs Query API base URL for sovereign clouds; empty for https://api.loganalytics.io/v1.')
param logAnalyticsQueryEndpoint string = ''

@allowed([
  '22'
])
@description('Node.js major version of the Functions runtime: 22 (Node 20 reached end of life on 2026-04-30).')
param nodeVersion string = '22'

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of Flex Consumption instances. It also bounds the backfill slices running at once (one per instance by default, backfillSlicesPerInstance each), and so their share of the DCR\'s 2 GB/min and 12,000 requests/min budget (with --sinks both) and of the SQL warehouse\'s concurrent queries: lower it for a backfill that must leave room to the hourly export. Timers stay singletons.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Private network: the app reaches both storage accounts through private endpoints in a virtual network it is integrated with, and their public endpoints are closed. Off by default (every endpoint public, reachable only with Entra ID tokens).')
param vnetEnabled bool = false

@description('Also deploy the Sentinel content (sentinel/: analytic rules and the workbook) into the app\'s workspace, which must have Microsoft Sentinel enabled. Off by default; infra/README.md shows how to deploy it into another workspace.')
param deploySentinelContent bool = false

// ---------------------------------------------------------------------------------------------
// Names

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var resourceGroupName = '${abbrs.resourcesResourceGroups}${environmentName}'
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var exportContainerName = 'databricks-audit'
// What the app rewrites, apart from the write-once archive (EXPORT_STATE_CONTAINER).
var exportStateContainerName = 'databricks-audit-state'
var operatorPrincipalId = grantPrincipalDataAccess ? principalId : ''
var virtualNetworkName = '${abbrs.networkVirtualNetworks}${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------
// Resources

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: workspaceRetentionInDays
  }
}

module functionStorage 'app/function-storage.bicep' = {
  name: 'functionStorage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    backfillQueueName: backfillQueueName
    vnetEnabled: vnetEnabled
  }
}

module exportStorage 'app/export-storage.bicep' = {
  name: 'exportStorage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}audit${resourceToken}'
    location: location
    tags: tags
    containerName: exportContainerName
    stateContainerName: exportStateContainerName
    archiveRetentionDays: archiveRetentionDays
    skuName: exportStorageSkuName
    coolTierAfterDays: archiveCoolTierAfterDays
    vnetEnabled: vnetEnabled
  }
}

module logsIngestion 'app/logs-ingestion.bicep' = {
  name: 'logsIngestion'
  scope: rg
  params: {
    workspaceName: monitoring.outputs.logAnalyticsName
    location: location
    tags: tags
    dataCollectionEndpointName: '${abbrs.insightsDataCollectionEndpoints}${resourceToken}'
    dataCollectionRuleName: '${abbrs.insightsDataCollectionRules}databricks-audit-${resourceToken}'
    principalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: principalType
    tableRetentionInDays: auditTableRetentionInDays
    tableTotalRetentionInDays: auditTableTotalRetentionInDays
    alertsTableRetentionInDays: alertsTableRetentionInDays
    alertsTableTotalRetentionInDays: alertsTableTotalRetentionInDays
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    functionStorageAccountName: functionStorage.outputs.name
    exportStorageAccountName: exportStorage.outputs.name
    archiveContainerName: exportStorage.outputs.containerName
    stateContainerName: exportStorage.outputs.stateContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    principalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: principalType
  }
}

// ---------------------------------------------------------------------------------------------
// Optional private network: the storage accounts' blob endpoints inside a virtual network

module network 'app/vnet.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: virtualNetworkName
    location: location
    tags: tags
  }
}

module functionStoragePrivateEndpoint 'app/storage-private-endpoint.bicep' = if (vnetEnabled) {
  name: 'functionStoragePrivateEndpoint'
  scope: rg
  params: {
    name: '${abbrs.networkPrivateEndpoints}${functionStorage.outputs.name}-blob'
    location: location
    tags: tags
    storageAccountName: functionStorage.outputs.name
    subnetId: network!.outputs.privateEndpointSubnetId
    privateDnsZoneId: network!.outputs.blobPrivateDnsZoneId
  }
}

// The host's queue endpoint too: the backfill's queue trigger reads its slices there.
module functionStorageQueuePrivateEndpoint 'app/storage-private-endpoint.bicep' = if (vnetEnabled) {
  name: 'functionStorageQueuePrivateEndpoint'
  scope: rg
  params: {
    name: '${abbrs.networkPrivateEndpoints}${functionStorage.outputs.name}-queue'
    location: location
    tags: tags
    storageAccountName: functionStorage.outputs.name
    groupId: 'queue'
    subnetId: network!.outputs.privateEndpointSubnetId
    privateDnsZoneId: network!.outputs.queuePrivateDnsZoneId
  }
}

module exportStoragePrivateEndpoint 'app/storage-private-endpoint.bicep' = if (vnetEnabled) {
  name: 'exportStoragePrivateEndpoint'
  scope: rg
  params: {
    name: '${abbrs.networkPrivateEndpoints}${exportStorage.outputs.name}-blob'
    location: location
    tags: tags
    storageAccountName: exportStorage.outputs.name
    subnetId: network!.outputs.privateEndpointSubnetId
    privateDnsZoneId: network!.outputs.blobPrivateDnsZoneId
  }
}

// ---------------------------------------------------------------------------------------------
// App settings (see local.settings.sample.json and shared/config.ts)

var useExternalLogsIngestion = !empty(logsIngestionEndpoint) && !empty(logsIngestionRuleId)

var requiredAppSettings = {
  AZURE_CLIENT_ID: identity.outputs.clientId
  DATABRICKS_SERVER_HOSTNAME: databricksServerHostname
  DATABRICKS_HTTP_PATH: databricksHttpPath
  EXPORT_STORAGE_ACCOUNT_URL: exportStorage.outputs.blobEndpoint
  EXPORT_CONTAINER: exportStorage.outputs.containerName
  EXPORT_STATE_CONTAINER: exportStorage.outputs.stateContainerName
  LOGS_INGESTION_ENDPOINT: useExternalLogsIngestion ? logsIngestionEndpoint : (logsIngestion.outputs.endpoint)
  LOGS_INGESTION_RULE_ID: useExternalLogsIngestion ? logsIngestionRuleId : (logsIngestion.outputs.ruleId)
  LOGS_INGESTION_STREAM: logsIngestion.outputs.streamName
  LOGS_INGESTION_ALERTS_STREAM: logsIngestion.outputs.alertsStreamName
  // The queue functionStorage creates (and its '-poison' one): the trigger's queueName and the CLI's.
  BACKFILL_QUEUE: backfillQueueName
}

// Reconciliation reads the app's own workspace, unless an external DCR writes elsewhere: then only the one given.
var defaultLogAnalyticsWorkspaceId = useExternalLogsIngestion ? '' : (monitoring.outputs.logAnalyticsCustomerId)

// Set only when given, so the app's own defaults stay the single source of truth.
var optionalAppSettings = {
  DATABRICKS_WORKSPACE_IDS: databricksWorkspaceIds
  DATABRICKS_ACCESS_TOKEN: empty(databricksAccessTokenSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${databricksAccessTokenSecretUri})'
  DATABRICKS_SCOPE: databricksScope
  DATABRICKS_CLOUD_FETCH: databricksCloudFetch
  AUDIT_SERVICES: auditServices
  AUDIT_INCLUDE_ACCOUNT_LEVEL: auditIncludeAccountLevel
  AUDIT_REDACT_PARAMS: auditRedactParams
  EXPORT_SCHEDULE: exportSchedule
  EXPORT_START: exportStart
  EXPORT_SETTLE_DELAY: exportSettleDelay
  EXPORT_LATE_HORIZON: exportLateHorizon
  EXPORT_TIME_BUDGET: exportTimeBudget
  BACKFILL_TIME_BUDGET: backfillTimeBudget
  EXPORT_QUERY_TIMEOUT: exportQueryTimeout
  EXPORT_SOURCE_CONCURRENCY: exportSourceConcurrency
  CHECK_WORKSPACE_LOOKBACK_HOURS: checkWorkspaceLookbackHours
  DETECTIONS_SCHEDULE: detectionsSchedule
  DETECTIONS_WORKSPACE_IDS: detectionsWorkspaceIds
  DETECTIONS_CONFIG: detectionsConfig
  LOG_ANALYTICS_WORKSPACE_ID: empty(logAnalyticsWorkspaceId) ? defaultLogAnalyticsWorkspaceId : logAnalyticsWorkspaceId
  LOG_ANALYTICS_QUERY_ENDPOINT: logAnalyticsQueryEndpoint
}

var givenOptionalAppSettings = toObject(filter(items(optionalAppSettings), setting => !empty(setting.value)), setting => setting.key, setting => setting.value)

// An extra setting named like one a parameter sets would fight it (and win or lose by the order of a
// union): refused, so each setting has one place. app/api.bicep refuses the host's likewise.
var extraTemplateSettingNames = intersection(objectKeys(extraAppSettings), union(objectKeys(requiredAppSettings), objectKeys(optionalAppSettings), ['DATABRICKS_SOURCES']))
var checkedExtraAppSettings = empty(extraTemplateSettingNames) ? extraAppSettings : fail('extraAppSettings (EXTRA_APP_SETTINGS) may not set ${join(extraTemplateSettingNames, ', ')}: set them with their own parameters (infra/README.md).')

// The first of DATABRICKS_SOURCES is the warehouse the single-source settings name, so an existing
// deployment's progress carries over. The app refuses the two disagreeing; checked here as well, so a
// mismatch stops the deployment instead of every hourly run.
var firstSourceAgrees = empty(databricksSources) ? true : ((databricksSources[0].serverHostname == databricksServerHostname) && (databricksSources[0].httpPath == databricksHttpPath))
var checkedDatabricksSources = firstSourceAgrees ? databricksSources : fail('The first of databricksSources (DATABRICKS_SOURCES) must be the warehouse of databricksServerHostname and databricksHttpPath (DATABRICKS_SERVER_HOSTNAME, DATABRICKS_HTTP_PATH): list that warehouse first, with the same serverHostname and httpPath.')

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: functionStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    appSettings: union(requiredAppSettings, givenOptionalAppSettings)
    databricksSources: checkedDatabricksSources
    extraAppSettings: checkedExtraAppSettings
    nodeVersion: nodeVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    backfillSlicesPerInstance: backfillSlicesPerInstance
    virtualNetworkSubnetId: vnetEnabled ? network!.outputs.appSubnetId : ''
  }
  // Roles first, so the first start of the host can already reach its storage and Application Insights;
  // with the private network, its endpoints first too.
  dependsOn: [
    rbac
    functionStoragePrivateEndpoint
    functionStorageQueuePrivateEndpoint
    exportStoragePrivateEndpoint
  ]
}

// ---------------------------------------------------------------------------------------------
// Optional Sentinel content: the analytic rules and the workbook of sentinel/

module sentinelContent 'app/sentinel-content.bicep' = if (deploySentinelContent) {
  name: 'sentinelContent'
  scope: rg
  params: {
    workspaceName: monitoring.outputs.logAnalyticsName
    location: location
  }
  // The rules query both tables: they must exist first.
  dependsOn: [
    logsIngestion
  ]
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment: azd env get-values)

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name

output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_URL string = api.outputs.uri
@description('GET with ?code=<function key>: 200 when every prerequisite passes, 503 otherwise.')
output CHECK_PREREQUISITES_URL string = '${api.outputs.uri}/api/checkPrerequisites'

// For the Databricks side. Deliberately not named AZURE_CLIENT_ID: in a local shell that variable
// would make the CLI try a managed identity that only exists in Azure.
@description('Application ID to add to the Databricks workspace as a service principal.')
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
@description('Object ID of the identity: what role assignments (for example on an external DCR) name.')
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

// The sinks, under the app settings' names, so the CLI can target the deployment from an admin shell.
output EXPORT_STORAGE_ACCOUNT_NAME string = exportStorage.outputs.name
output EXPORT_STORAGE_ACCOUNT_URL string = exportStorage.outputs.blobEndpoint
output EXPORT_CONTAINER string = exportStorage.outputs.containerName
output EXPORT_STATE_CONTAINER string = exportStorage.outputs.stateContainerName
output LOGS_INGESTION_ENDPOINT string = requiredAppSettings.LOGS_INGESTION_ENDPOINT
output LOGS_INGESTION_RULE_ID string = requiredAppSettings.LOGS_INGESTION_RULE_ID
output LOGS_INGESTION_STREAM string = logsIngestion.outputs.streamName
output LOGS_INGESTION_ALERTS_STREAM string = logsIngestion.outputs.alertsStreamName
output AUDIT_TABLE_NAME string = logsIngestion.outputs.tableName
output ALERTS_TABLE_NAME string = logsIngestion.outputs.alertsTableName
output DATA_COLLECTION_RULE_ID string = logsIngestion.outputs.dataCollectionRuleId
// Under the app setting's name: the workspace ID (GUID) the CLI's reconcile takes; the resource ID beside it.
output LOG_ANALYTICS_WORKSPACE_ID string = optionalAppSettings.LOG_ANALYTICS_WORKSPACE_ID
output LOG_ANALYTICS_WORKSPACE_RESOURCE_ID string = monitoring.outputs.logAnalyticsId
// The backfill queue for `dbx-audit backfill start/status/cancel` from an admin shell, under the names
// the CLI reads (as in the app): the queue, and the host storage's queue endpoint it reaches with az login.
output BACKFILL_QUEUE string = requiredAppSettings.BACKFILL_QUEUE
output AzureWebJobsStorage__queueServiceUri string = functionStorage.outputs.queueEndpoint
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
