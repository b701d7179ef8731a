namespace Ferry.Machine.Devices;

/// <summary>A memory-mapped device: a window of the physical address space with register callbacks.</summary>
public interface IMmioDevice
{
    string Name { get; }

    ulong BaseAddress { get; }

    ulong Size { get; }

    /// <summary>Reads a register; false if the access is not valid (size, offset): an access fault.</summary>
    bool Read(ulong offset, int size, out ulong value);

    bool Write(ulong offset, int size, ulong value);
}
