namespace Ferry.Machine.Cpu;

/// <summary>
/// What a hart sees outside RAM: memory-mapped devices and the machine's clock. Only the slow
/// path calls it (device accesses never enter the TLB).
/// </summary>
public interface IHartBus
{
    /// <summary>Reads a device register; false if nothing answers at that address (access fault).</summary>
    bool Read(ulong address, int size, out ulong value);

    /// <summary>Writes a device register; false if nothing answers (access fault).</summary>
    bool Write(ulong address, int size, ulong value);

    /// <summary>The value of mtime now (the time CSR reads it too).</summary>
    ulong ReadTime();
}
