using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The source's durable copy of the pages a post-copy (or hybrid) migration still owes at the
/// switchover, written while the VM still runs (then, in the pause, what it dirtied since) and
/// fsync'd (and its directory entry) before the switchover state is sent, so that a source agent
/// killed after the switchover can be restarted (same state directory) and serve them: the
/// destination's VM then survives the crash with its exact memory.
/// <para>Format (little-endian): magic "FERRYPGF", u16 version, token (32 bytes), strings (u16
/// length + UTF-8) destination data endpoint, VM name and migration id, u64 memory size, u8
/// icount, u8 idle-sleep, u8 strategy, u64 stop-at, u32 peer timeout ms,
/// then records of (u32 page, 4096 bytes), a later record of a page replacing an earlier one,
/// then the trailer: u64 memory digest of the whole memory at the pause, u32 its non-zero
/// pages, u32 record count; then CRC-64 (ECMA-182) of everything before it. Everything is checked against
/// its own limits before anything is built from it.</para>
/// </summary>
public sealed record PageFile
{
    public const ulong Magic = 0x4647_5059_5252_4546; // "FERRYPGF"
    public const ushort Version = 1;
    public const string Extension = ".pages";

    public required byte[] Token { get; init; }

    public required string Destination { get; init; }

    public required string VmName { get; init; }

    public required string MigrationId { get; init; }

    public required MachineConfig Machine { get; init; }

    public required StrategyKind Strategy { get; init; }

    public ulong StopAt { get; init; } = ulong.MaxValue;

    public uint PeerTimeoutMs { get; init; } = Hello.DefaultPeerTimeoutMs;

    /// <summary>Digest of the whole memory at the pause (set by <see cref="Complete"/>).</summary>
    public ulong MemoryDigest { get; private set; }

    public uint NonZeroPages { get; private set; }

    /// <summary>Pages held by the file.</summary>
    public PageBitmap? Pages { get; private set; }

    /// <summary>Where the file is (once complete, or read).</summary>
    public string? Path { get; private set; }

    private FileStream? _file;
    private string? _temporary;
    private string? _final;
    private Crc64? _crc;
    private uint _records;
    private readonly byte[] _copy = new byte[GuestMemory.PageSize];

    /// <summary>Starts the file in <paramref name="directory"/> (a temporary name until <see cref="Complete"/>) with its header.</summary>
    public void Open(string directory, int pageCount)
    {
        Directory.CreateDirectory(directory);
        string name = string.Concat(MigrationId.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_'));
        _final = System.IO.Path.Combine(directory, name + Extension);
        _temporary = _final + ".tmp";
        _file = new FileStream(_temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        _crc = new Crc64();
        Pages = new PageBitmap(pageCount);
        Put(Header());
    }

    private void Put(ReadOnlySpan<byte> bytes)
    {
        _crc!.Append(bytes);
        _file!.Write(bytes);
    }

    /// <summary>
    /// Appends <paramref name="pages"/> of <paramref name="memory"/> as they are now (a page
    /// written again later replaces its earlier record when the file is read). The VM may be
    /// running: each page is copied once, and the copy is what both the checksum and the file
    /// get (checksumming guest memory and then writing it could record two different contents).
    /// A page the VM writes meanwhile is in the dirty log, and the pause appends it again.
    /// </summary>
    public void Append(GuestMemory memory, PageBitmap pages)
    {
        Span<byte> index = stackalloc byte[4];
        Span<byte> copy = _copy;
        foreach (int page in pages.EnumerateSet())
        {
            BinaryPrimitives.WriteUInt32LittleEndian(index, (uint)page);
            Put(index);
            memory.Page(page).CopyTo(copy);
            Put(copy);
            Pages!.Set(page);
            _records++;
        }
    }

    /// <summary>What was appended so far reaches the disk (fsync): the live part, before the pause.</summary>
    public void Sync() => _file!.Flush(flushToDisk: true);

    /// <summary>The trailer (the memory digest of the pause), fsync, and the rename that makes the file whole: call before the switchover state leaves.</summary>
    public (string Path, long Bytes) Complete(ulong memoryDigest, uint nonZeroPages)
    {
        MemoryDigest = memoryDigest;
        NonZeroPages = nonZeroPages;
        Span<byte> trailer = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(trailer, memoryDigest);
        BinaryPrimitives.WriteUInt32LittleEndian(trailer[8..], nonZeroPages);
        BinaryPrimitives.WriteUInt32LittleEndian(trailer[12..], _records);
        Put(trailer);
        Span<byte> sum = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(sum, _crc!.GetCurrentHashAsUInt64());
        _file!.Write(sum);
        _file.Flush(flushToDisk: true);
        long bytes = _file.Length;
        _file.Dispose();
        _file = null;

        // The rename makes the file whole or absent: a crash while writing leaves only the .tmp;
        // the directory's fsync makes the rename itself survive a power loss.
        File.Move(_temporary!, _final!, overwrite: true);
        DirectorySync.Sync(System.IO.Path.GetDirectoryName(_final!)!);
        Path = _final;
        return (_final!, bytes);
    }

    /// <summary>Writes a whole file at once: the header, <paramref name="pages"/>, the trailer.</summary>
    public (string Path, long Bytes) Write(string directory, GuestMemory memory, PageBitmap pages, ulong memoryDigest, uint nonZeroPages)
    {
        Open(directory, memory.PageCount);
        Append(memory, pages);
        return Complete(memoryDigest, nonZeroPages);
    }

    private byte[] Header()
    {
        var buffer = new byte[4096];
        var w = new WireWriter(buffer);
        w.U64(Magic);
        w.U16(Version);
        w.Bytes(Token);
        w.String(Destination);
        w.String(VmName);
        w.String(MigrationId);
        w.U64(Machine.MemorySize);
        w.U8(Machine.Icount ? (byte)1 : (byte)0);
        w.U8(Machine.IdleSleep ? (byte)1 : (byte)0);
        w.U8((byte)Strategy);
        w.U64(StopAt);
        w.U32(PeerTimeoutMs);
        return buffer[..w.Position];
    }

    /// <summary>
    /// Reads a page file into a new machine's memory (pages loaded, nothing else): the file and
    /// the machine. A damaged, truncated or inconsistent file is an <see cref="InvalidDataException"/>.
    /// </summary>
    public static (PageFile File, VirtMachine Machine) Read(string path, ulong maxMemory)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8 + 64)
        {
            throw new InvalidDataException($"{path}: too short for a page file");
        }

        ulong stored = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(bytes.Length - 8));
        if (Crc64.HashToUInt64(bytes.AsSpan(0, bytes.Length - 8)) != stored)
        {
            throw new InvalidDataException($"{path}: checksum mismatch");
        }

        try
        {
            var r = new WireReader(bytes.AsSpan(0, bytes.Length - 8));
            if (r.U64() != Magic || r.U16() != Version)
            {
                throw new InvalidDataException($"{path}: not a page file of version {Version}");
            }

            byte[] token = r.Bytes(Hello.TokenLength).ToArray();
            string destination = r.String(300);
            string vm = r.String(Hello.MaxNameBytes);
            string id = r.String(300);
            ulong memorySize = r.U64();
            if (memorySize == 0 || memorySize > maxMemory || memorySize % GuestMemory.PageSize != 0)
            {
                throw new InvalidDataException($"{path}: memory size {memorySize} is not acceptable");
            }

            var config = new MachineConfig { MemorySize = memorySize, Icount = r.U8() != 0, IdleSleep = r.U8() != 0 };
            byte strategy = r.U8();
            if (!Strategies.StrategyPolicy.IsKnown(strategy))
            {
                throw new InvalidDataException($"{path}: unknown strategy {strategy}");
            }

            ulong stopAt = r.U64();
            uint timeout = r.U32();
            if (timeout is < Hello.MinPeerTimeoutMs or > Hello.MaxPeerTimeoutMs)
            {
                throw new InvalidDataException($"{path}: peer timeout {timeout} ms out of range");
            }

            const int record = 4 + GuestMemory.PageSize;
            if (r.Remaining < 16 || (r.Remaining - 16) % record != 0)
            {
                throw new InvalidDataException($"{path}: truncated page records");
            }

            long count = (r.Remaining - 16) / record;
            var machine = new VirtMachine(config);
            try
            {
                GuestMemory memory = machine.Memory;
                var pages = new PageBitmap(memory.PageCount);
                for (long i = 0; i < count; i++)
                {
                    uint page = r.U32();
                    if (page >= (uint)memory.PageCount)
                    {
                        throw new InvalidDataException($"{path}: page {page} is outside the memory");
                    }

                    // A page written again (dirtied after the live part) replaces its earlier record.
                    pages.Set((int)page);
                    memory.LoadPage((int)page, r.Bytes(GuestMemory.PageSize));
                }

                ulong digest = r.U64();
                uint nonZero = r.U32();
                if (r.U32() != count)
                {
                    throw new InvalidDataException($"{path}: record count mismatch");
                }

                r.End();
                var file = new PageFile
                {
                    Token = token,
                    Destination = destination,
                    VmName = vm,
                    MigrationId = id,
                    Machine = config,
                    Strategy = (StrategyKind)strategy,
                    StopAt = stopAt,
                    PeerTimeoutMs = timeout,
                };
                file.MemoryDigest = digest;
                file.NonZeroPages = nonZero;
                file.Pages = pages;
                file.Path = path;
                return (file, machine);
            }
            catch
            {
                machine.Dispose();
                throw;
            }
        }
        catch (ProtocolException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}");
        }
    }

    /// <summary>Removes the file once its pages are no longer owed (the migration completed, or the VM is back at the source), or an unfinished one.</summary>
    public void Delete()
    {
        _file?.Dispose();
        _file = null;
        foreach (string? path in new[] { Path, _temporary })
        {
            if (path is not null)
            {
                File.Delete(path);
            }
        }
    }

    /// <summary>The page files in a state directory.</summary>
    public static string[] Find(string directory) => Directory.Exists(directory) ? Directory.GetFiles(directory, "*" + Extension) : [];
}

/// <summary>
/// The source of a migration resumed from a page file by a restarted agent: a machine whose
/// memory holds only the pages still owed. It never runs: its CPU state went with the process.
/// </summary>
public sealed class PageFileSource(PageFile file, VirtMachine machine) : IMigrationSource, IDisposable
{
    public string Name => file.VmName;

    public VirtMachine Machine => machine;

    public ulong StopAt => file.StopAt;

    public WorkingSetEstimator? WorkingSet => null;

    public InstructionRateMeter Rate { get; } = new();

    public Task PauseAsync(CancellationToken cancellation) => Task.CompletedTask;

    /// <summary>Nothing to resume: the VM's CPU state was lost with the agent (the destination would have to hold it).</summary>
    public void ResumeHere()
    {
    }

    public void Dispose() => machine.Dispose();
}
