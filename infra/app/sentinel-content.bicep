// Sentinel content for the Databricks audit tables, deployed into a Log Analytics workspace that it
// onboards to Microsoft Sentinel: the analytic rules of sentinel/analytic-rules/*.yaml (through
// sentinel/analytic-rules.json, which `npm run sentinel` generates from them: Bicep cannot read
// YAML, and a test fails when the two disagree) and the workbook of sentinel/workbooks/.
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

output ruleIds array = [for (rule, i) in rules: alertRules[i].name]
output workbookId string = workbook.id
