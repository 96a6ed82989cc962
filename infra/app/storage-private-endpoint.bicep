// A private endpoint for one storage account's blob service, registered in the network's
// privatelink.blob DNS zone so the account's usual host name resolves to it inside the network.

param name string
param location string
param tags object = {}
param storageAccountName string

@description('Resource ID of the subnet that holds the endpoint.')
param subnetId string

@description('Resource ID of the privatelink.blob private DNS zone.')
param privateDnsZoneId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'blob'
          ]
        }
      }
    ]
  }

  resource dnsZoneGroup 'privateDnsZoneGroups' = {
    name: 'blob'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: 'blob'
          properties: {
            privateDnsZoneId: privateDnsZoneId
          }
        }
      ]
    }
  }
}

output id string = privateEndpoint.id
