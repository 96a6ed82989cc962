// A private endpoint for one storage account's blob or queue service, registered in the network's
// privatelink.blob or privatelink.queue DNS zone so the account's usual host name resolves to it
// inside the network.

param name string
param location string
param tags object = {}
param storageAccountName string

@description('The storage service the endpoint serves: blob (both accounts) or queue (the host\'s, for the backfill queue trigger).')
@allowed([
  'blob'
  'queue'
])
param groupId string = 'blob'

@description('Resource ID of the subnet that holds the endpoint.')
param subnetId string

@description('Resource ID of the private DNS zone of that service (privatelink.blob or privatelink.queue).')
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
            groupId
          ]
        }
      }
    ]
  }

  resource dnsZoneGroup 'privateDnsZoneGroups' = {
    name: groupId
    properties: {
      privateDnsZoneConfigs: [
        {
          name: groupId
          properties: {
            privateDnsZoneId: privateDnsZoneId
          }
        }
      ]
    }
  }
}

output id string = privateEndpoint.id
