using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ferry.Migration.Metrics;

/// <summary>How a migration ended. In JSON (report.json, the host API) as kebab-case names: completed, failed, cancelled.</summary>
[JsonConverter(typeof(KebabCaseEnumConverter<MigrationOutcome>))]
public enum MigrationOutcome
{
    Completed,
    Failed,
    Cancelled,
}

/// <summary>
/// Where the VM is once a migration has ended. In JSON as source, source-paused, destination.
/// </summary>
[JsonConverter(typeof(KebabCaseEnumConverter<VmLocation>))]
public enum VmLocation
{
    /// <summary>Running (or resumable) at the source: the migration did not take it.</summary>
    Source,

    /// <summary>Paused at the source, the destination's state unknown: an operator decides (it may run there).</summary>
    SourcePaused,

    /// <summary>Running at the destination.</summary>
    Destination,
}

/// <summary>
/// An enum as its kebab-case name in JSON (SourcePaused as "source-paused"); names only, no
/// numbers, so a renamed member is a changed document that the round-trip tests catch.
/// </summary>
public sealed class KebabCaseEnumConverter<T>() : JsonStringEnumConverter<T>(JsonNamingPolicy.KebabCaseLower, allowIntegerValues: false)
    where T : struct, Enum;

public static class EnumNames
{
    /// <summary>The name an enum member has in JSON and in what Ferry prints (SourcePaused: source-paused).</summary>
    public static string Kebab<T>(T value)
        where T : struct, Enum
        => JsonNamingPolicy.KebabCaseLower.ConvertName(value.ToString());
}
