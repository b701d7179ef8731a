using Ferry.Machine.Board;
using Ferry.Machine.State;

namespace Ferry.Cli;

internal static class Cli
{
    /// <summary>Exit status for errors of Ferry itself (bad input, unreachable host...), distinct from guest statuses.</summary>
    public const int ErrorExit = 125;

    /// <summary>Runs a command body; expected failures become one line on stderr and <see cref="ErrorExit"/>.</summary>
    public static int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Fail(e.Message);
            return ErrorExit;
        }
    }

    public static async Task<int> GuardAsync(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Fail(e.Message);
            return ErrorExit;
        }
    }

    public static void Fail(string message) => System.Console.Error.WriteLine($"ferry: {message}");

    private static bool IsUserError(Exception e) => e is GuestImageException or SnapshotException or FormatException or
        InvalidDataException or IOException or UnauthorizedAccessException or ArgumentException or OverflowException or CliException or
        System.Net.Http.HttpRequestException or System.Net.Sockets.SocketException or TimeoutException;
}

/// <summary>A failure the user caused or must fix: the message is the one line they see.</summary>
internal sealed class CliException(string message) : Exception(message);
