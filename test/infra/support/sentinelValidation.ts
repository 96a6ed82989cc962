// The checks Microsoft Sentinel applies to a scheduled analytic rule, ported from the Azure-Sentinel
// repository's own validation of rule templates, .script/tests/detectionTemplateSchemaValidation/
// (C#: Models/*.cs and Models/ModelValidationAttributes/*.cs), plus the ARM rules the service adds for
// a rule that is not created from a template. Each table below names the file it comes from; the
// functions return every problem found (empty when the rule passes), in the words of the original
// messages where there are some, so a failing test says what Sentinel would have said.

const SOURCE = ".script/tests/detectionTemplateSchemaValidation";

/** Models/AttackTactic.cs: the tactics a rule may list. */
export const ATTACK_TACTICS = [
  "InitialAccess",
  "Execution",
  "Persistence",
  "PrivilegeEscalation",
  "DefenseEvasion",
  "CredentialAccess",
  "Discovery",
  "LateralMovement",
  "Collection",
  "Exfiltration",
  "CommandAndControl",
  "Impact",
  "Reconnaissance",
  "ResourceDevelopment",
  "ImpairProcessControl",
  "InhibitResponseFunction",
] as const;

const ids = (text: string): string[] => text.trim().split(/\s+/);

/**
 * Models/ModelValidationAttributes/KillChainTechniquesHelper.cs: the techniques of each tactic (MITRE
 * ATT&CK enterprise, mobile and ICS matrices as the validation knows them). A technique may sit under
 * several tactics.
 */
export const TECHNIQUES_BY_TACTIC: Record<(typeof ATTACK_TACTICS)[number], string[]> = {
  InitialAccess: ids(`T1189 T1190 T1133 T1200 T1566 T1091 T1195 T1199 T1078 T0817 T0819 T0866 T0822 T0883 T0886 T0847 T0848
    T0865 T0862 T0864 T0860 T1456 T1461 T1458 T1474`),
  Persistence: ids(`T1098 T1197 T1547 T1037 T1176 T1554 T1136 T1543 T1546 T1133 T1574 T1525 T1556 T1137 T1542 T1053 T1505
    T1205 T1078 T1398 T1577 T1645 T1624 T1541 T1625 T1603 T0891 T0889 T0839 T0873 T0857 T0859`),
  PrivilegeEscalation: ids(`T1548 T1134 T1547 T1037 T1543 T1484 T1611 T1546 T1068 T1574 T1055 T1053 T1078 T1626 T1404 T1631
    T0890 T0874`),
  DefenseEvasion: ids(`T1548 T1134 T1197 T1612 T1622 T1140 T1610 T1006 T1484 T1480 T1211 T1222 T1564 T1574 T1562 T1070
    T1202 T1036 T1556 T1578 T1112 T1601 T1599 T1027 T1647 T1542 T1055 T1620 T1207 T1014 T1553 T1218 T1216 T1221 T1205 T1127
    T1535 T1550 T1078 T1497 T1600 T1220 T1407 T1627 T1541 T1628 T1617 T1629 T1630 T1516 T1575 T1406 T1631 T1604 T1632 T1633
    T0858 T0820 T0872 T0849 T0851 T0856`),
  CredentialAccess: ids(`T1557 T1110 T1555 T1212 T1187 T1606 T1056 T1556 T1111 T1621 T1040 T1003 T1528 T1539 T1649 T1558
    T1552 T1517 T1414 T1634 T1417 T1635`),
  Discovery: ids(`T1087 T1010 T1217 T1580 T1538 T1526 T1619 T1613 T1622 T1652 T1482 T1083 T1615 T1046 T1135 T1040 T1201
    T1120 T1069 T1057 T1012 T1018 T1518 T1082 T1614 T1016 T1049 T1033 T1007 T1124 T1497 T1420 T1430 T1423 T1424 T1418 T1426
    T1422 T1421 T0840 T0842 T0846 T0888 T0887`),
  LateralMovement: ids(`T1210 T1534 T1570 T1563 T1021 T1091 T1072 T1080 T1550 T1428 T1458 T0812 T0866 T0891 T0867 T0843
    T0886 T0859`),
  Execution: ids(`T1651 T1059 T1609 T1610 T1203 T1559 T1106 T1053 T1648 T1129 T1072 T1569 T1204 T1047 T1623 T1575 T1603
    T0858 T0807 T0871 T0823 T0874 T0821 T0834 T0853 T0863`),
  Collection: ids(`T1557 T1560 T1123 T1119 T1185 T1115 T1074 T1530 T1602 T1213 T1005 T1039 T1025 T1114 T1056 T1113 T1125
    T1517 T1638 T1532 T1429 T1616 T1414 T1533 T1417 T1430 T1636 T1513 T1409 T1512 T0830 T0802 T0811 T0893 T0868 T0877 T0801
    T0861 T0845 T0852 T0887`),
  Exfiltration: ids(`T1020 T1030 T1048 T1041 T1011 T1052 T1567 T1029 T1537 T1639 T1646`),
  CommandAndControl: ids(`T1071 T1092 T1132 T1001 T1568 T1573 T1008 T1105 T1104 T1095 T1571 T1572 T1090 T1219 T1205 T1102
    T1437 T1616 T1637 T1521 T1544 T1509 T1644 T1481 T0885 T0884 T0869`),
  Impact: ids(`T1531 T1485 T1486 T1565 T1491 T1561 T1499 T1495 T1490 T1498 T1496 T1489 T1529 T1640 T1616 T1471 T1641 T1642
    T1643 T1516 T1464 T1582 T0879 T0813 T0815 T0826 T0827 T0828 T0837 T0880 T0829 T0831 T0832 T0882`),
  ImpairProcessControl: ids(`T0806 T0836 T0839 T0856 T0855`),
  InhibitResponseFunction: ids(`T0800 T0878 T0803 T0804 T0805 T0892 T0809 T0814 T0816 T0835 T0838 T0851 T0881 T0857`),
  Reconnaissance: ids(`T1595 T1592 T1589 T1590 T1591 T1598 T1597 T1596 T1593 T1594`),
  ResourceDevelopment: ids(`T1650 T1583 T1586 T1584 T1587 T1585 T1588 T1608`),
};

/** The tactics a technique (or the parent of a sub-technique, 'T1562.007' -> 'T1562') belongs to. */
export function tacticsOf(technique: string): string[] {
  const parent = technique.split(".")[0]!;
  return Object.entries(TECHNIQUES_BY_TACTIC)
    .filter(([, techniques]) => techniques.includes(parent))
    .map(([tactic]) => tactic);
}

/**
 * Models/EntityMappingIdentifiers.cs: per entity type, the identifiers it has and the combinations of
 * which at least one must be mapped.
 */
export const ENTITY_IDENTIFIERS: Record<string, { identifiers: string[]; required: string[][] }> = {
  Account: {
    identifiers: ids("Name FullName NTDomain DnsDomain UPNSuffix Sid AadTenantId AadUserId PUID IsDomainJoined DisplayName ObjectGuid"),
    required: [["FullName"], ["Sid"], ["Name"], ["AadUserId"], ["PUID"], ["ObjectGuid"]],
  },
  AzureResource: { identifiers: ["ResourceId"], required: [["ResourceId"]] },
  CloudApplication: { identifiers: ["AppId", "Name", "InstanceName"], required: [["AppId"], ["Name"]] },
  DNS: { identifiers: ["DomainName"], required: [["DomainName"]] },
  File: { identifiers: ["Directory", "Name"], required: [["Name"]] },
  FileHash: { identifiers: ["Algorithm", "Value"], required: [["Algorithm", "Value"]] },
  Host: {
    identifiers: ids("DnsDomain NTDomain HostName FullName NetBiosName AzureID OMSAgentID OSFamily OSVersion IsDomainJoined"),
    required: [["FullName"], ["HostName"], ["NetBiosName"], ["AzureID"], ["OMSAgentID"]],
  },
  IoTDevice: {
    identifiers: ids(
      "DeviceId DeviceName Manufacturer Model FirmwareVersion OperatingSystem MacAddress Protocols SerialNumber Source IoTSecurityAgentId DeviceType",
    ),
    required: [["DeviceId"]],
  },
  IP: { identifiers: ["Address"], required: [["Address"]] },
  Mailbox: { identifiers: ids("MailboxPrimaryAddress DisplayName Upn ExternalDirectoryObjectId RiskLevel"), required: [["MailboxPrimaryAddress"]] },
  MailCluster: {
    identifiers: ids(`NetworkMessageIds CountByDeliveryStatus CountByThreatType CountByProtectionStatus Threats Query QueryTime MailCount
      IsVolumeAnomaly Source ClusterSourceIdentifier ClusterSourceType ClusterQueryStartTime ClusterQueryEndTime ClusterGroup`),
    required: [["Query"], ["Source"]],
  },
  MailMessage: {
    identifiers: ids(`Recipient Urls Threats Sender P1Sender P1SenderDisplayName P1SenderDomain SenderIP P2Sender P2SenderDisplayName
      P2SenderDomain ReceivedDate NetworkMessageId InternetMessageId Subject BodyFingerprintBin1 BodyFingerprintBin2 BodyFingerprintBin3
      BodyFingerprintBin4 BodyFingerprintBin5 AntispamDirection DeliveryAction DeliveryLocation Language ThreatDetectionMethods`),
    required: [["NetworkMessageId"], ["Recipient"]],
  },
  Malware: { identifiers: ["Name", "Category"], required: [["Name"]] },
  Process: { identifiers: ["ProcessId", "CommandLine", "ElevationToken", "CreationTimeUtc"], required: [["CommandLine"], ["ProcessId"]] },
  RegistryKey: { identifiers: ["Hive", "Key"], required: [["Key"], ["Hive"]] },
  RegistryValue: { identifiers: ["Name", "Value", "ValueType"], required: [["Name"]] },
  SecurityGroup: { identifiers: ["DistinguishedName", "SID", "ObjectGuid"], required: [["DistinguishedName"], ["SID"], ["ObjectGuid"]] },
  SubmissionMail: {
    identifiers: ids("NetworkMessageId Timestamp Recipient Sender SenderIp Subject ReportType SubmissionId SubmissionDate Submitter"),
    required: [["SubmissionId"], ["NetworkMessageId"], ["Recipient"], ["Submitter"]],
  },
  URL: { identifiers: ["Url"], required: [["Url"]] },
};

/** The limits the models declare with [StringLength], [Range], [DictionaryLength], [ValidEntityMappings], ... */
export const LIMITS = {
  nameLength: 256, // AnalyticsTemplateInternalModelBase.cs
  descriptionLength: 5000,
  queryLength: 10000, // QueryBasedTemplateInternalModel.cs
  versionLength: 20,
  customDetails: 20, // [DictionaryLength(20)]
  customDetailKeyLength: 20, // [DictionaryMaxKeyAndValueLengths(20, 500)]
  columnNameLength: 500, // "500 is the max length of a column name in LA"
  entityMappings: { min: 1, max: 5 }, // ScheduledTemplateInternalModel.cs [ValidEntityMappings(1, 5, 1, 3)]
  fieldMappings: { min: 1, max: 3 },
  triggerThreshold: { min: 0, max: 10000 },
  queryWindowMinutes: { min: 5, max: 14 * 24 * 60 }, // [RangeTimeSpanIsoFormat("00:05:00", "14.00:00:00")]
  placeholders: 3, // AlertDetailsOverride.cs [MaxAmountOfDynamicContentPlaceHolders(3)]
  displayNameFormatLength: 256,
  descriptionFormatLength: 5000,
};

export const SEVERITIES = ["Informational", "Low", "Medium", "High"];
export const AGGREGATION_KINDS = ["SingleAlert", "AlertPerResult"]; // EventGroupingSettings.cs
const TRIGGER_OPERATORS = ["gt", "lt", "eq", "ne"]; // ScheduledTemplateTriggerOperatorConverter.cs
const ARM_TRIGGER_OPERATORS = ["GreaterThan", "LessThan", "Equal", "NotEqual"];
const CUSTOM_DETAIL_KEY = /^[a-zA-Z]+\w*$/; // [DictionaryKeyMatchesRegex]
const COLUMN_NAME = /^[a-zA-Z_]+\w*$/; // [DictionaryValueMatchesRegex], ValidEntityMappingsAttribute.cs
const TECHNIQUE = /^T\d{4}$/; // KillChainTechniquesHelper.cs: "T####"
const SUB_TECHNIQUE = /^T\d{4}\.\d{3}$/; // "T####.###"
const VERSION = /^(\d+\.)(\d+\.)(\d+)$/; // QueryBasedTemplateVersionValidator.cs
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const PLACEHOLDER = /{{([^{}]*)}}/g;

/**
 * Microsoft.SecurityInsights/alertRules@2024-03-01, AlertPropertyMapping.alertProperty: the alert
 * properties alertDetailsOverride.alertDynamicProperties can set from a column (Azure/bicep-types-az,
 * generated/securityinsights/microsoft.securityinsights/2024-03-01/types.md). SubTechniques comes only
 * with later preview versions.
 */
export const ALERT_DYNAMIC_PROPERTIES = ids(
  "AlertLink ConfidenceLevel ConfidenceScore ExtendedLinks ProductComponentName ProductName ProviderName RemediationSteps Techniques",
);

export interface EntityMapping {
  entityType: string;
  fieldMappings: { identifier: string; columnName: string }[];
}
export interface AlertDetailsOverride {
  alertDisplayNameFormat?: string;
  alertDescriptionFormat?: string;
  alertSeverityColumnName?: string;
  alertTacticsColumnName?: string;
  alertDynamicProperties?: { alertProperty: string; value: string }[];
}
/** A rule in the Azure-Sentinel YAML schema (sentinel/analytic-rules/*.yaml). */
export interface TemplateRule {
  id: string;
  name: string;
  description: string;
  severity: string;
  requiredDataConnectors?: unknown[];
  queryFrequency: string;
  queryPeriod: string;
  triggerOperator: string;
  triggerThreshold: number;
  tactics?: string[];
  relevantTechniques?: string[];
  query: string;
  entityMappings?: EntityMapping[];
  customDetails?: Record<string, string>;
  alertDetailsOverride?: AlertDetailsOverride;
  eventGroupingSettings?: { aggregationKind: string };
  version?: string;
  kind: string;
}

/** ScheduledTemplateTimeSpanConverter.cs: '5m', '1h', '14d' as minutes; NaN when not that form. */
export function templateMinutes(value: string): number {
  const match = /^(\d+)([mhd])$/.exec(value);
  if (!match) return Number.NaN;
  return Number(match[1]) * { m: 1, h: 60, d: 1440 }[match[2] as "m" | "h" | "d"];
}

/** ARM's ISO 8601 durations of days, hours and minutes ('P1D', 'PT1H', 'P1DT30M') as minutes; NaN otherwise. */
export function isoMinutes(value: string): number {
  const match = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$/.exec(value);
  if (!match || value === "P" || value.endsWith("T")) return Number.NaN;
  return Number(match[1] ?? 0) * 1440 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0);
}

function scheduleProblems(frequency: number, period: number, shown: { frequency: string; period: string }): string[] {
  const problems: string[] = [];
  const { min, max } = LIMITS.queryWindowMinutes;
  if (!(frequency >= min && frequency <= max)) problems.push(`queryFrequency ${shown.frequency} is outside 5 minutes to 14 days`);
  if (!(period >= min && period <= max)) problems.push(`queryPeriod ${shown.period} is outside 5 minutes to 14 days`);
  // PeriodGreaterThanOrEqualFrequencyAttribute.cs
  if (!(period >= frequency)) problems.push("'queryPeriod' should be greater than or equal to 'queryFrequency'");
  // FrequencyLimitationForLongPeriodQuery.cs
  if (period >= 2 * 1440 && !(frequency >= 60))
    problems.push("When 'queryPeriod' greater than or equal to 2 days, the 'queryFrequency' should be greater than or equal to 1 hour");
  return problems;
}

/** NoTechniquesWithoutMatchingTactics.cs: each technique's tactics are among the rule's tactics. */
function techniqueTacticProblems(techniques: string[], tactics: string[]): string[] {
  const problems: string[] = [];
  for (const technique of techniques) {
    const expected = tacticsOf(technique);
    // Versions of the check differ: most ask for any of the technique's tactics, one for all of them.
    // All satisfies both.
    if (expected.length === 0 || !expected.every((tactic) => tactics.includes(tactic))) {
      problems.push(
        `No valid tactic corresponding to the technique ${technique} was provided in the tactics field (it needs ${expected.join(", ") || "a known technique"})`,
      );
    }
  }
  return problems;
}

function entityMappingProblems(mappings: EntityMapping[] | undefined): string[] {
  if (mappings === undefined) return [];
  const problems: string[] = [];
  const { entityMappings, fieldMappings } = LIMITS;
  if (mappings.length < entityMappings.min || mappings.length > entityMappings.max)
    problems.push(`Invalid length of '${mappings.length}' for 'entityMappings': between ${entityMappings.min} and ${entityMappings.max}`);
  for (const mapping of mappings) {
    const type = ENTITY_IDENTIFIERS[mapping.entityType];
    if (!type) {
      problems.push(`entity type ${mapping.entityType} is not one Sentinel knows`);
      continue;
    }
    const fields = mapping.fieldMappings ?? [];
    if (fields.length < fieldMappings.min || fields.length > fieldMappings.max)
      problems.push(`Invalid length of '${fields.length}' for 'FieldMappings' of ${mapping.entityType}: between ${fieldMappings.min} and ${fieldMappings.max}`);
    const used = new Set<string>();
    for (const field of fields) {
      if (!type.identifiers.includes(field.identifier))
        problems.push(
          `Invalid identifier '${field.identifier}' for entity type '${mapping.entityType}' encountered. Valid identifiers are: [${type.identifiers.join(", ")}]`,
        );
      if (used.has(field.identifier)) problems.push(`Identifier '${field.identifier}' is defined multiple times in ${mapping.entityType}`);
      if (field.columnName.length > LIMITS.columnNameLength) problems.push(`Maximum length of ColumnName '${field.columnName}' exceeded`);
      if (!COLUMN_NAME.test(field.columnName)) problems.push(`The ColumnName '${field.columnName}' is invalid`);
      used.add(field.identifier);
    }
    if (!type.required.some((combination) => combination.every((identifier) => used.has(identifier))))
      problems.push(`Missing required identifiers for type '${mapping.entityType}': one of ${type.required.map((c) => c.join(" + ")).join("; ")}`);
  }
  return problems;
}

function customDetailProblems(details: Record<string, string> | undefined): string[] {
  if (details === undefined) return [];
  const problems: string[] = [];
  const entries = Object.entries(details);
  if (entries.length > LIMITS.customDetails) problems.push(`customDetails has ${entries.length} entries; at most ${LIMITS.customDetails}`);
  for (const [key, value] of entries) {
    if (key.length > LIMITS.customDetailKeyLength) problems.push(`Maximum length of key '${key}' in customDetails exceeded (${LIMITS.customDetailKeyLength})`);
    if (value.length > LIMITS.columnNameLength) problems.push(`Maximum length of value '${value}' in customDetails exceeded`);
    if (!CUSTOM_DETAIL_KEY.test(key)) problems.push(`customDetails key '${key}' must start with a letter and hold only [a-zA-Z0-9_]`);
    if (!COLUMN_NAME.test(value)) problems.push(`customDetails value '${value}' must start with a letter or _ and hold only [a-zA-Z0-9_]`);
  }
  return problems;
}

function alertDetailsProblems(override: AlertDetailsOverride | undefined): string[] {
  if (override === undefined) return [];
  const problems: string[] = [];
  const formats: [string, string | undefined, number][] = [
    ["alertDisplayNameFormat", override.alertDisplayNameFormat, LIMITS.displayNameFormatLength],
    ["alertDescriptionFormat", override.alertDescriptionFormat, LIMITS.descriptionFormatLength],
  ];
  for (const [name, format, maxLength] of formats) {
    if (format === undefined) continue;
    if (format.trim().length === 0 || format.length > maxLength) problems.push(`${name} must be 1 to ${maxLength} characters, not blank`);
    const placeholders = [...format.matchAll(PLACEHOLDER)].length;
    if (placeholders > LIMITS.placeholders)
      problems.push(`You have defined ${placeholders} parameters in '${name}'. The maximum allowed is ${LIMITS.placeholders}.`);
  }
  for (const dynamic of override.alertDynamicProperties ?? []) {
    if (!ALERT_DYNAMIC_PROPERTIES.includes(dynamic.alertProperty))
      problems.push(`alertDynamicProperties: ${dynamic.alertProperty} is not an alert property of alertRules@2024-03-01`);
    if (!COLUMN_NAME.test(dynamic.value)) problems.push(`alertDynamicProperties: '${dynamic.value}' is not a column name`);
  }
  return problems;
}

/** What both forms of a rule share, under the names of each. */
interface RuleContent {
  name: string;
  description: string;
  severity: string;
  query: string;
  tactics: string[];
  techniques: string[];
  entityMappings?: EntityMapping[];
  customDetails?: Record<string, string>;
  alertDetailsOverride?: AlertDetailsOverride;
  eventGroupingSettings?: { aggregationKind: string };
}

/** The checks of the fields both forms have; `techniqueProblem` says what a technique of this form may look like. */
function contentProblems(rule: RuleContent, techniqueProblem: (technique: string) => string | undefined): string[] {
  const problems: string[] = [];
  if (!rule.name || rule.name.length > LIMITS.nameLength) problems.push(`name must be 1 to ${LIMITS.nameLength} characters`);
  if (!rule.description || rule.description.length > LIMITS.descriptionLength) problems.push(`description must be 1 to ${LIMITS.descriptionLength} characters`);
  if (!SEVERITIES.includes(rule.severity)) problems.push(`severity ${rule.severity} is not one of ${SEVERITIES.join(", ")}`);
  if (!rule.query || rule.query.length > LIMITS.queryLength) problems.push(`query must be 1 to ${LIMITS.queryLength} characters`);
  for (const tactic of rule.tactics) if (!(ATTACK_TACTICS as readonly string[]).includes(tactic)) problems.push(`tactic ${tactic} is not an AttackTactic`);
  problems.push(...rule.techniques.flatMap((technique) => techniqueProblem(technique) ?? []));
  problems.push(...techniqueTacticProblems(rule.techniques, rule.tactics));
  problems.push(...entityMappingProblems(rule.entityMappings));
  problems.push(...customDetailProblems(rule.customDetails));
  problems.push(...alertDetailsProblems(rule.alertDetailsOverride));
  if (rule.eventGroupingSettings && !AGGREGATION_KINDS.includes(rule.eventGroupingSettings.aggregationKind))
    problems.push(`Invalid aggregation kind '${rule.eventGroupingSettings.aggregationKind}'`);
  return problems;
}

/** Every check of ScheduledTemplateInternalModel (and its bases and attributes) that applies to our rules. */
export function templateProblems(rule: TemplateRule): string[] {
  const problems: string[] = [];
  if (!GUID.test(String(rule.id))) problems.push(`id ${rule.id} is not a GUID`);
  if (rule.kind !== "Scheduled") problems.push(`kind ${rule.kind}: these checks are the Scheduled kind's`);
  if (!Array.isArray(rule.requiredDataConnectors)) problems.push("requiredDataConnectors is required (an empty list when none)");
  if (rule.version !== undefined && (!VERSION.test(rule.version) || rule.version.length > LIMITS.versionLength))
    problems.push("'templateVersion' should be in format X.Y.Z (all numbers)");
  if (!TRIGGER_OPERATORS.includes(rule.triggerOperator)) problems.push(`triggerOperator ${rule.triggerOperator} is not one of ${TRIGGER_OPERATORS.join(", ")}`);
  const { min, max } = LIMITS.triggerThreshold;
  if (!Number.isInteger(rule.triggerThreshold) || rule.triggerThreshold < min || rule.triggerThreshold > max)
    problems.push(`triggerThreshold ${rule.triggerThreshold} is not a whole number from ${min} to ${max}`);
  const shown = { frequency: rule.queryFrequency, period: rule.queryPeriod };
  problems.push(...scheduleProblems(templateMinutes(rule.queryFrequency), templateMinutes(rule.queryPeriod), shown));
  const content = { ...rule, tactics: rule.tactics ?? [], techniques: rule.relevantTechniques ?? [] };
  problems.push(
    ...contentProblems(content, (technique) =>
      TECHNIQUE.test(technique) || SUB_TECHNIQUE.test(technique) ? undefined : `technique ${technique} is not T#### or T####.###`,
    ),
  );
  return problems;
}

/** The properties of a Microsoft.SecurityInsights/alertRules resource of kind Scheduled, as deployed. */
export interface ArmRuleProperties {
  displayName: string;
  description: string;
  severity: string;
  enabled: boolean;
  query: string;
  queryFrequency: string;
  queryPeriod: string;
  triggerOperator: string;
  triggerThreshold: number;
  tactics?: string[];
  techniques?: string[];
  entityMappings?: EntityMapping[];
  customDetails?: Record<string, string>;
  alertDetailsOverride?: AlertDetailsOverride;
  eventGroupingSettings?: { aggregationKind: string };
  alertRuleTemplateName?: string;
  templateVersion?: string;
  [other: string]: unknown;
}

/**
 * The same checks on the ARM form, plus the service's own: NoTemplateVersionWithoutTemplateName.cs
 * ('templateVersion' only with 'alertRuleTemplateName'), ISO 8601 durations, the ARM trigger
 * operators, and `techniques` holding techniques only (T####: sub-techniques have their own field).
 */
export function armRuleProblems(properties: ArmRuleProperties): string[] {
  const problems: string[] = [];
  if (properties.templateVersion !== undefined && !properties.alertRuleTemplateName)
    problems.push("Invalid Properties for Scheduled alert rule: 'templateVersion' can only be used if 'alertRuleTemplateName' is not empty");
  if (typeof properties.enabled !== "boolean") problems.push("enabled must be a bool");
  if (!ARM_TRIGGER_OPERATORS.includes(properties.triggerOperator))
    problems.push(`triggerOperator ${properties.triggerOperator} is not one of ${ARM_TRIGGER_OPERATORS.join(", ")}`);
  const shown = { frequency: properties.queryFrequency, period: properties.queryPeriod };
  problems.push(...scheduleProblems(isoMinutes(properties.queryFrequency), isoMinutes(properties.queryPeriod), shown));
  const content = { ...properties, name: properties.displayName, tactics: properties.tactics ?? [], techniques: properties.techniques ?? [] };
  problems.push(...contentProblems(content, (technique) => (TECHNIQUE.test(technique) ? undefined : `techniques: ${technique} is not a technique ID (T####)`)));
  return problems;
}

export const VALIDATION_SOURCE = `Azure/Azure-Sentinel ${SOURCE}`;
