using System.Text.RegularExpressions;

namespace Ferry.Migration;

/// <summary>
/// What a VM may be called, checked everywhere a name enters (the control API, a migration's
/// Hello, the CLI): 1 to 64 ASCII letters, digits, '.', '_' and '-', starting with a letter or
/// digit. A name is a key, a file-name part and a log field: nothing in it may mean anything else.
/// </summary>
public static partial class VmName
{
    public const int MaxLength = 64;

    public const string Rule = "a VM name is 1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit";

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();

    public static bool IsValid(string? name) => name is not null && Pattern().IsMatch(name);

    /// <summary>Null if <paramref name="name"/> is acceptable, else the one-line reason (the name quoted safely).</summary>
    public static string? Check(string? name)
        => IsValid(name) ? null : $"'{Printable(name)}' is not a valid VM name ({Rule})";

    /// <summary>The name as it may be shown in a message or log: control characters escaped, at most 80 characters.</summary>
    public static string Printable(string? name)
    {
        if (name is null)
        {
            return "";
        }

        string shown = name.Length > 80 ? name[..80] + "..." : name;
        var text = new System.Text.StringBuilder(shown.Length);
        foreach (char c in shown)
        {
            text.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c);
        }

        return text.ToString();
    }
}
