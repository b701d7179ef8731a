using System.CommandLine;
using Ferry.Migration.Transport;

namespace Ferry.Cli;

/// <summary>What a host agent or a CLI call authenticates with: the shared secret and/or a TLS identity.</summary>
internal sealed record ApiCredentials(string? Secret, TlsSettings? Tls)
{
    public static readonly ApiCredentials None = new(null, null);
}

/// <summary>
/// The options that give <see cref="ApiCredentials"/>, the same on `ferry host` and every command
/// that calls a host: --secret or --secret-file (else $FERRY_SECRET, $FERRY_SECRET_FILE), and
/// --tls-cert, --tls-key, --tls-ca (else $FERRY_TLS_CERT, $FERRY_TLS_KEY, $FERRY_TLS_CA).
/// An empty secret is refused, never taken as "no authentication".
/// </summary>
internal sealed class CredentialOptions
{
    public Option<string?> Secret { get; } = new("--secret") { Description = "shared API secret (default: $FERRY_SECRET; shows in ps: prefer --secret-file)" };

    public Option<string?> SecretFile { get; } = new("--secret-file") { Description = "read the shared secret from this file (default: $FERRY_SECRET_FILE)" };

    public Option<string?> TlsCert { get; } = new("--tls-cert") { Description = "TLS certificate (PEM) this side presents (default: $FERRY_TLS_CERT)" };

    public Option<string?> TlsKey { get; } = new("--tls-key") { Description = "its private key (PEM) (default: $FERRY_TLS_KEY)" };

    public Option<string?> TlsCa { get; } = new("--tls-ca") { Description = "CA certificates (PEM) the peer's certificate must chain to (default: $FERRY_TLS_CA; none: the system's)" };

    public IEnumerable<Option> All => [Secret, SecretFile, TlsCert, TlsKey, TlsCa];

    public ApiCredentials Resolve(ParseResult p) => new(ResolveSecret(p), ResolveTls(p));

    private string? ResolveSecret(ParseResult p)
    {
        string? value = p.GetValue(Secret);
        string? file = p.GetValue(SecretFile);
        if (value is not null && file is not null)
        {
            throw new CliException("give --secret or --secret-file, not both");
        }

        if (value is null && file is null)
        {
            value = Environment.GetEnvironmentVariable("FERRY_SECRET");
            file = value is null ? Environment.GetEnvironmentVariable("FERRY_SECRET_FILE") : null;
        }

        if (file is not null)
        {
            try
            {
                value = File.ReadAllText(file).TrimEnd('\r', '\n');
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                throw new CliException($"cannot read the secret file '{file}': {e.Message}");
            }

            if (value.Length == 0)
            {
                throw new CliException($"the secret file '{file}' is empty (an empty secret would disable authentication)");
            }
        }

        if (value is { Length: 0 })
        {
            throw new CliException("the secret is empty (an empty secret would disable authentication)");
        }

        return value;
    }

    private TlsSettings? ResolveTls(ParseResult p)
    {
        string? cert = p.GetValue(TlsCert) ?? Environment.GetEnvironmentVariable("FERRY_TLS_CERT");
        string? key = p.GetValue(TlsKey) ?? Environment.GetEnvironmentVariable("FERRY_TLS_KEY");
        string? ca = p.GetValue(TlsCa) ?? Environment.GetEnvironmentVariable("FERRY_TLS_CA");
        if (cert is null && key is null && ca is null)
        {
            return null;
        }

        if (cert is null || key is null)
        {
            throw new CliException("TLS needs both --tls-cert and --tls-key (and --tls-ca for a private CA)");
        }

        try
        {
            return TlsSettings.Load(cert, key, ca);
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message);
        }
    }
}

internal static class CredentialOptionsExtensions
{
    /// <summary>Adds every credential option (lets a command's collection initializer take a <see cref="CredentialOptions"/>).</summary>
    public static void Add(this Command command, CredentialOptions credentials)
    {
        foreach (Option option in credentials.All)
        {
            command.Options.Add(option);
        }
    }
}
