using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Tests;

/// <summary>A certificate authority made for one test, and certificates it issues (generated, never committed).</summary>
internal sealed class TestPki : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public TestPki(string name = "Ferry test CA")
    {
        var request = new CertificateRequest($"CN={name}", _key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        Ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-10), DateTimeOffset.UtcNow.AddDays(2));
    }

    public X509Certificate2 Ca { get; }

    /// <summary>A host certificate for localhost, 127.0.0.1 and ::1, for servers and clients alike.</summary>
    public X509Certificate2 Issue(string host)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={host}", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        byte[] serial = RandomNumberGenerator.GetBytes(12);
        using X509Certificate2 issued = request.Create(Ca, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), serial);
        using X509Certificate2 withKey = issued.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A host's TLS settings: a certificate of this CA, trusting <paramref name="trusted"/> (default: this CA).</summary>
    public TlsSettings Settings(string host, TestPki? trusted = null) => new(Issue(host), [(trusted ?? this).Ca]);

    /// <summary>Writes host.crt, host.key (PEM) and ca.crt into <paramref name="directory"/>; returns their paths.</summary>
    public (string Certificate, string Key, string Ca) WritePem(string directory, string host)
    {
        using X509Certificate2 certificate = Issue(host);
        string cert = Path.Combine(directory, host + ".crt");
        string key = Path.Combine(directory, host + ".key");
        string ca = Path.Combine(directory, "ca.crt");
        File.WriteAllText(cert, certificate.ExportCertificatePem());
        File.WriteAllText(key, certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(ca, Ca.ExportCertificatePem());
        return (cert, key, ca);
    }

    public void Dispose()
    {
        Ca.Dispose();
        _key.Dispose();
    }
}
