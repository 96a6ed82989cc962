// Log Analytics workspace (the app's telemetry and the DatabricksAudit_CL table) and a
// workspace-based Application Insights that accepts only Entra ID-authenticated telemetry.

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@description('Interactive retention of the workspace\'s tables, in days (DatabricksAudit_CL sets its own).')
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // No workspace keys: data arrives through Application Insights and the Logs Ingestion API, both Entra ID.
      disableLocalAuth: true
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // The instrumentation key alone cannot send telemetry: the app authenticates with its identity
    // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and needs Monitoring Metrics Publisher on this resource.
    DisableLocalAuth: true
  }
}

output logAnalyticsName string = logAnalytics.name
output logAnalyticsId string = logAnalytics.id
// The workspace ID (a GUID) the Logs Query API takes, not the resource ID.
output logAnalyticsCustomerId string = logAnalytics.properties.customerId
output applicationInsightsName string = applicationInsights.name
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
