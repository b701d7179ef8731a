using System.Diagnostics;
using CsCheck;
using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.State;

/// <summary>
/// The machine-state loader with mutated input (bytes flipped, inserted, cut; the snapshot's
/// checksum recomputed so the mutations reach the parser): it decodes and restores, or refuses
/// with its own exception; never another exception, never a hang, never an allocation out of
/// proportion to the input.
/// </summary>
public sealed class StateLoaderFuzzTests
{
    private static readonly Lazy<byte[]> State = new(() => StateCodec.Encode(StateSamples.Busy()));

    private static readonly Lazy<byte[]> SnapshotFile = new(() =>
    {
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("hello"), memory: 4UL << 20);
        GuestRunner.RunTo(m, ulong.MaxValue);
        using var stream = new MemoryStream();
        Snapshot.Save(m, stream, compress: false);
        return stream.ToArray();
    });

    /// <summary>Up to 8 edits: (position, xor) flips, plus a cut and an inserted run.</summary>
    private static readonly Gen<((int, byte)[] Flips, int Cut, int InsertAt, byte[] Insert)> Mutations =
        Gen.Select(Gen.Select(Gen.Int[0, int.MaxValue], Gen.Byte[1, 255]).Array[0, 8], Gen.Int[0, int.MaxValue], Gen.Int[0, int.MaxValue], Gen.Byte.Array[0, 16]);

    private static byte[] Mutate(byte[] valid, ((int, byte)[] Flips, int Cut, int InsertAt, byte[] Insert) m)
    {
        var bytes = new List<byte>(valid);
        int at = m.InsertAt % (bytes.Count + 1);
        bytes.InsertRange(at, m.Insert);
        foreach ((int index, byte xor) in m.Flips)
        {
            bytes[index % bytes.Count] ^= xor;
        }

        int keep = m.Cut % 4 == 0 ? m.Cut % (bytes.Count + 1) : bytes.Count; // a quarter of the cases are cut short
        return [.. bytes.Take(keep)];
    }

    /// <summary>
    /// Runs one case: only <typeparamref name="TRefusal"/> may escape; time and managed allocation
    /// are bounded. <paramref name="load"/> returns the guest pages of the machine it loaded (0 if
    /// none): a machine's own per-page bookkeeping (its bitmaps and decode tables, about 17 bytes a
    /// page) is what that machine costs, not the parser. (A mutation of a snapshot's memory size to
    /// 3.5 GiB, still sparse and valid, made a 17.9 KB file load a machine whose bookkeeping was 19 MB.)
    /// </summary>
    private static void LoadsOrRefuses<TRefusal>(Func<long> load, int inputBytes)
        where TRefusal : Exception
    {
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var watch = Stopwatch.StartNew();
        long pages = 0;
        try
        {
            pages = load();
        }
        catch (TRefusal)
        {
        }

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"a case took {watch.Elapsed}"); // a hang, not a speed check
        long used = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.True(used < (16L << 20) + (64L * inputBytes) + (32L * pages), $"a {inputBytes}-byte input made the loader allocate {used >> 10} KiB (a machine of {pages} pages loaded)");
    }

    [Fact]
    public void Mutated_machine_state_decodes_and_restores_or_is_refused()
    {
        byte[] valid = State.Value;
        Mutations.Sample(m =>
        {
            byte[] input = Mutate(valid, m);
            LoadsOrRefuses<InvalidDataException>(() =>
            {
                MachineState state = StateCodec.Decode(input);
                if (state.Config.MemorySize == 4UL << 20)
                {
                    using var machine = new VirtMachine(state.Config);
                    machine.RestoreState(state);
                }

                return 0; // (only a 4 MiB machine is built: the allowance for the parser alone)
            }, input.Length);
        }, iter: 5_000);
    }

    [Fact]
    public void Mutated_snapshot_with_a_valid_checksum_loads_or_is_refused()
    {
        byte[] valid = SnapshotFile.Value;
        Mutations.Sample(m =>
        {
            byte[] input = Mutate(valid, m);
            if (input.Length > 8)
            {
                ulong crc = System.IO.Hashing.Crc64.HashToUInt64(input.AsSpan(0, input.Length - 8));
                BitConverter.TryWriteBytes(input.AsSpan(input.Length - 8), crc);
            }

            LoadsOrRefuses<SnapshotException>(() =>
            {
                using VirtMachine machine = Snapshot.Load(input);
                return (long)(machine.Config.MemorySize / Ferry.Machine.Memory.GuestMemory.PageSize);
            }, input.Length);
        }, iter: 2_000);
    }
}
