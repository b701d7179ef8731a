using System.Net.Sockets;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Transport;

/// <summary>Which errors mean the link failed (closed, reset, silent past the deadline), as opposed to a peer that broke the protocol or refused.</summary>
public static class LinkFailure
{
    public static bool Is(Exception e) => e switch
    {
        AggregateException a => a.InnerExceptions.Count > 0 && a.InnerExceptions.All(Is),
        PeerTimeoutException or SocketException or ObjectDisposedException => true,
        IOException => true,
        ProtocolException p => p.Message.StartsWith("connection closed", StringComparison.Ordinal),
        _ => false,
    };
}
