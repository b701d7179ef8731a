using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Ferry.Migration.Transport;

/// <summary>
/// A host's TLS identity and whom it trusts: its certificate (with the private key), presented
/// to every peer, and the certificate authorities a peer's certificate must chain to (none:
/// the system's trust store). Authentication is mutual: servers require a client certificate.
/// </summary>
public sealed class TlsSettings
{
    public TlsSettings(X509Certificate2 certificate, X509Certificate2Collection authorities)
    {
        if (!certificate.HasPrivateKey)
        {
            throw new ArgumentException("the TLS certificate has no private key", nameof(certificate));
        }

        Certificate = certificate;
        Authorities = authorities;
        Context = SslStreamCertificateContext.Create(certificate, null, offline: true);
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>The trusted roots; empty: the system's store.</summary>
    public X509Certificate2Collection Authorities { get; }

    private SslStreamCertificateContext Context { get; }

    /// <summary>Loads PEM files: the certificate, its private key and (optionally) the CA certificates to trust.</summary>
    public static TlsSettings Load(string certificateFile, string keyFile, string? caFile)
    {
        X509Certificate2 certificate;
        try
        {
            using X509Certificate2 pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);

            // An ephemeral PEM key is not usable by every TLS backend: re-imported from PKCS#12.
            certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException or ArgumentException)
        {
            throw new ArgumentException($"cannot load the TLS certificate '{certificateFile}' with key '{keyFile}': {e.Message}", e);
        }

        var authorities = new X509Certificate2Collection();
        if (caFile is not null)
        {
            try
            {
                authorities.ImportFromPemFile(caFile);
            }
            catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException)
            {
                throw new ArgumentException($"cannot load the CA certificates '{caFile}': {e.Message}", e);
            }

            if (authorities.Count == 0)
            {
                throw new ArgumentException($"'{caFile}' holds no PEM certificate");
            }
        }

        return new TlsSettings(certificate, authorities);
    }

    /// <summary>Options for the server side of a handshake: a client certificate is required.</summary>
    public SslServerAuthenticationOptions ServerOptions(Action<string> onRefused) => new()
    {
        ServerCertificateContext = Context,
        ClientCertificateRequired = true,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, errors) => Check(certificate, errors, checkName: false, onRefused),
    };

    /// <summary>Options for the client side of a handshake with <paramref name="host"/> (the name its certificate must carry).</summary>
    public SslClientAuthenticationOptions ClientOptions(string host, Action<string> onRefused) => new()
    {
        TargetHost = host,
        ClientCertificateContext = Context,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, errors) => Check(certificate, errors, checkName: true, onRefused),
    };

    /// <summary>Whether a peer's certificate is acceptable; if not, why (to <paramref name="onRefused"/>).</summary>
    public bool Check(X509Certificate? certificate, SslPolicyErrors errors, bool checkName, Action<string> onRefused)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            onRefused("the peer presented no certificate");
            return false;
        }

        if (checkName && errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            onRefused($"the peer's certificate ({certificate.Subject}) is not issued for the address dialled");
            return false;
        }

        if (Authorities.Count == 0)
        {
            if (errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors))
            {
                onRefused($"the peer's certificate ({certificate.Subject}) is not trusted by this system");
                return false;
            }

            return true;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using X509Certificate2 peer = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if (!chain.Build(peer))
        {
            string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status));
            onRefused($"the peer's certificate ({peer.Subject}) is not issued by the trusted CA ({status})");
            return false;
        }

        return true;
    }
}
