// Optional private network (main.bicep: vnetEnabled, azd: VNET_ENABLED), as the Functions
// quickstart template offers: a virtual network with a subnet the Function App is integrated with
// (delegated to Microsoft.App/environments, what Flex Consumption uses) and a subnet for the
// storage accounts' private endpoints, plus the private DNS zones that make their blob host names
// (and the host storage's queue host name, for the backfill queue trigger) resolve to those endpoints
// inside the network.

param name string
param location string
param tags object = {}

@description('Address space of the network.')
param addressPrefix string = '10.0.0.0/16'

@description('Subnet of the private endpoints.')
param privateEndpointSubnetPrefix string = '10.0.1.0/28'

@description('Subnet the Function App is integrated with (at least /27 for Flex Consumption).')
param appSubnetPrefix string = '10.0.2.0/26'

var privateEndpointSubnetName = 'private-endpoints'
var appSubnetName = 'app'
var blobPrivateDnsZoneName = 'privatelink.blob.${environment().suffixes.storage}'
var queuePrivateDnsZoneName = 'privatelink.queue.${environment().suffixes.storage}'

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }

  resource privateEndpointSubnet 'subnets' existing = {
    name: privateEndpointSubnetName
  }

  resource appSubnet 'subnets' existing = {
    name: appSubnetName
  }
}

resource blobPrivateDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: blobPrivateDnsZoneName
  location: 'global'
  tags: tags

  resource link 'virtualNetworkLinks' = {
    name: '${name}-link'
    location: 'global'
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

resource queuePrivateDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: queuePrivateDnsZoneName
  location: 'global'
  tags: tags

  resource link 'virtualNetworkLinks' = {
    name: '${name}-link'
    location: 'global'
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

output id string = virtualNetwork.id
output appSubnetId string = virtualNetwork::appSubnet.id
output privateEndpointSubnetId string = virtualNetwork::privateEndpointSubnet.id
output blobPrivateDnsZoneId string = blobPrivateDnsZone.id
output queuePrivateDnsZoneId string = queuePrivateDnsZone.id
