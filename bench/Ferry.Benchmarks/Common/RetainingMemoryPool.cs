using System.Buffers;
using System.Collections.Concurrent;
using System.Numerics;

namespace Ferry.Benchmarks.Common;

/// <summary>
/// A MemoryPool that keeps every buffer it ever handed out (per power-of-two size) and never
/// trims: a Pipe using it allocates nothing once warm, however many segments are in flight.
/// ArrayPool.Shared, the default Pipe pool, keeps only a few dozen buffers per size, so a pipe
/// holding megabytes of 4 KiB segments allocates roughly one new buffer per 4 KiB written.
/// Bench-local: it exists to separate the transport's allocations from PageSender's.
/// </summary>
internal sealed class RetainingMemoryPool : MemoryPool<byte>
{
    private readonly ConcurrentQueue<Owner>[] _free = Enumerable.Range(0, 32).Select(_ => new ConcurrentQueue<Owner>()).ToArray();

    public override int MaxBufferSize => 1 << 20;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(minBufferSize, 4096));
        int bucket = BitOperations.Log2((uint)size);
        if (!_free[bucket].TryDequeue(out Owner? owner))
        {
            owner = new Owner(this, bucket, new byte[size]);
        }

        owner.Rented = true;
        return owner;
    }

    protected override void Dispose(bool disposing)
    {
    }

    private sealed class Owner(RetainingMemoryPool pool, int bucket, byte[] array) : IMemoryOwner<byte>
    {
        public bool Rented { get; set; }

        public Memory<byte> Memory => array;

        public void Dispose()
        {
            if (Rented)
            {
                Rented = false;
                pool._free[bucket].Enqueue(this);
            }
        }
    }
}
