// The one identity the app uses for everything: its own storage, the export archive, the
// Logs Ingestion API, Application Insights and, as a Databricks service principal, the SQL warehouse.

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
@description('Application (client) ID: AZURE_CLIENT_ID in the app, and the application ID to add to Databricks as a service principal.')
output clientId string = identity.properties.clientId
@description('Object ID of the service principal: what role assignments name.')
output principalId string = identity.properties.principalId
