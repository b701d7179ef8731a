using System.Runtime.InteropServices;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// fsync of a directory: makes a rename or a new file's directory entry durable (a file's own
/// fsync does not). Linux only; elsewhere, and where the directory cannot be opened, it is a no-op
/// that says so by returning false.
/// </summary>
internal static partial class DirectorySync
{
    private const int ReadOnly = 0; // O_RDONLY: a directory opens read-only on every Linux architecture

    public static bool Sync(string directory)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        int fd = Open(directory, ReadOnly);
        if (fd < 0)
        {
            return false;
        }

        try
        {
            return Fsync(fd) == 0;
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
