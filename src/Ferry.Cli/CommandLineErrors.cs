using System.Text.RegularExpressions;

namespace Ferry.Cli;

/// <summary>System.CommandLine's parse errors in the user's terms: what was given, for which option, and what it takes.</summary>
internal static partial class CommandLineErrors
{
    public static string Describe(string message)
    {
        Match m = CannotParse().Match(message);
        if (!m.Success)
        {
            return message;
        }

        string type = m.Groups["type"].Value;
        string expected = type switch
        {
            _ when type.Contains("UInt64", StringComparison.Ordinal) || type.Contains("UInt32", StringComparison.Ordinal) => "a whole number, 0 or more",
            _ when type.Contains("Int32", StringComparison.Ordinal) || type.Contains("Int64", StringComparison.Ordinal) => "a whole number",
            _ when type.Contains("Double", StringComparison.Ordinal) => "a number",
            _ when type.Contains("Boolean", StringComparison.Ordinal) => "true or false",
            _ => "a different kind of value",
        };
        return $"'{m.Groups["value"].Value}' is not a valid value for {m.Groups["option"].Value}: it takes {expected}";
    }

    [GeneratedRegex("Cannot parse argument '(?<value>.*)' for (?:option|argument) '(?<option>[^']*)' as expected type '(?<type>[^']*)'")]
    private static partial Regex CannotParse();
}
