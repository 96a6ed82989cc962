// Sentinel content for the Databricks audit tables, deployed into a Log Analytics workspace that it
// onboards to Microsoft Sentinel: the analytic rules of sentinel/analytic-rules/*.yaml (through
// sentinel/analytic-rules.json, which `npm run sentinel` generates from them: Bicep cannot read
// YAML, and a test fails when the two disagree), the workbook of sentinel/workbooks/, and the
// workspace functions of sentinel/parsers/: ASIM parsers (Audit Event, Authentication) and the
// deduplicated view DatabricksAuditDeduped (docs/asim.md).
//
// main.bicep deploys it into the app's own workspace when deploySentinelContent is true
// (DEPLOY_SENTINEL_CONTENT). It also deploys on its own into any Sentinel workspace that has the
// two tables: see infra/README.md.

@description('Log Analytics workspace, in this deployment\'s resource group, with both tables; this module onboards it to Microsoft Sentinel.')
param workspaceName string

@description('Region of the workbook: the workspace\'s.')
param location string = resourceGroup().location

@description('Create the analytic rules enabled (they create incidents); false to review them first.')
param enableRules bool = true

@description('Display name of the workbook.')
param workbookDisplayName string = 'Databricks audit log'

var rules = loadJsonContent('../../sentinel/analytic-rules.json')

// ASIM's standard filtering parameters of each schema, with ASIM's defaults, as Azure-Sentinel's own
// parsers declare them (Parsers/ASimAuditEvent, Parsers/ASimAuthentication); `disabled` lets a
// unifying parser switch the source off.
var auditEventParameters = 'starttime:datetime=datetime(null),endtime:datetime=datetime(null),srcipaddr_has_any_prefix:dynamic=dynamic([]),eventtype_in:dynamic=dynamic([]),eventresult:string=\'*\',actorusername_has_any:dynamic=dynamic([]),operation_has_any:dynamic=dynamic([]),object_has_any:dynamic=dynamic([]),newvalue_has_any:dynamic=dynamic([]),disabled:bool=False'
var authenticationParameters = 'starttime:datetime=datetime(null),endtime:datetime=datetime(null),username_has_any:dynamic=dynamic([]),targetappname_has_any:dynamic=dynamic([]),srcipaddr_has_any_prefix:dynamic=dynamic([]),srchostname_has_any:dynamic=dynamic([]),eventtype_in:dynamic=dynamic([]),eventresultdetails_in:dynamic=dynamic([]),eventresult:string=\'*\',disabled:bool=False'

// Each function's name is its alias, as in Azure-Sentinel's parser templates. The ASim* ones are
// the parameter-less forms ASIM's unifying parsers ask for besides the filtering vim* ones.
var workspaceFunctions = [
  {
    name: 'vimAuditEventDatabricks'
    displayName: 'Audit Event ASIM filtering parser for the Databricks audit log'
    category: 'ASIM'
    parameters: auditEventParameters
    query: loadTextContent('../../sentinel/parsers/vimAuditEventDatabricks.kql')
  }
  {
    name: 'ASimAuditEventDatabricks'
    displayName: 'Audit Event ASIM parser for the Databricks audit log'
    category: 'ASIM'
    parameters: 'disabled:bool=False'
    query: 'vimAuditEventDatabricks(disabled=disabled)'
  }
  {
    name: 'vimAuthenticationDatabricks'
    displayName: 'Authentication ASIM filtering parser for the Databricks audit log'
    category: 'ASIM'
    parameters: authenticationParameters
    query: loadTextContent('../../sentinel/parsers/vimAuthenticationDatabricks.kql')
  }
  {
    name: 'ASimAuthenticationDatabricks'
    displayName: 'Authentication ASIM parser for the Databricks audit log'
    category: 'ASIM'
    parameters: 'disabled:bool=False'
    query: 'vimAuthenticationDatabricks(disabled=disabled)'
  }
  {
    name: 'DatabricksAuditDeduped'
    displayName: 'Databricks audit log, each EventId once'
    category: 'Databricks audit'
    parameters: ''
    query: loadTextContent('../../sentinel/parsers/DatabricksAuditDeduped.kql')
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// Microsoft Sentinel on the workspace: without it every alertRules call fails, so a first
// `azd up` with DEPLOY_SENTINEL_CONTENT=true needs it. Its one instance is named 'default'.
resource sentinelOnboarding 'Microsoft.SecurityInsights/onboardingStates@2024-03-01' = {
  scope: workspace
  name: 'default'
  properties: {}
}

// The rules' IDs are fixed GUIDs (the YAML's id): deploying again updates them instead of adding copies.
resource alertRules 'Microsoft.SecurityInsights/alertRules@2024-03-01' = [
  for rule in rules: {
    scope: workspace
    name: rule.id
    kind: rule.kind
    properties: union(rule.properties, {
      enabled: enableRules
    })
    dependsOn: [
      sentinelOnboarding
    ]
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A stable name per workspace, so a second deployment updates the same workbook.
  name: guid(workspace.id, 'databricks-audit-workbook')
  location: location
  kind: 'shared'
  properties: {
    displayName: workbookDisplayName
    category: 'sentinel'
    sourceId: workspace.id
    serializedData: loadTextContent('../../sentinel/workbooks/DatabricksAudit.json')
    // The workbook format's version, as in the serialized workbook itself; not a version of ours.
    version: 'Notebook/1.0'
  }
}

// Saved searches with a functionAlias are workspace functions, the way ASIM parsers deploy. The name
// is fixed, so deploying again updates each function instead of adding a copy.
resource functions 'Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01' = [
  for fn in workspaceFunctions: {
    parent: workspace
    name: fn.name
    properties: {
      category: fn.category
      displayName: fn.displayName
      functionAlias: fn.name
      functionParameters: empty(fn.parameters) ? null : (fn.parameters)
      query: fn.query
      version: 2
    }
  }
]

output ruleIds array = [for (rule, i) in rules: alertRules[i].name]
output workbookId string = workbook.id
output functionAliases array = [for fn in workspaceFunctions: fn.name]
