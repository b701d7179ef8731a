using Ferry.Machine.Cpu;

namespace Ferry.Machine.Devices;

/// <summary>The device half of the physical address map (RAM is the GuestMemory's, outside this).</summary>
public sealed class Bus : IHartBus
{
    private readonly IMmioDevice[] _devices;
    private readonly MachineClock _clock;

    public Bus(MachineClock clock, params IMmioDevice[] devices)
    {
        _clock = clock;
        _devices = devices;
    }

    public bool Read(ulong address, int size, out ulong value)
    {
        foreach (IMmioDevice d in _devices)
        {
            ulong offset = address - d.BaseAddress;
            if (offset < d.Size)
            {
                return d.Read(offset, size, out value);
            }
        }

        value = 0;
        return false;
    }

    public bool Write(ulong address, int size, ulong value)
    {
        foreach (IMmioDevice d in _devices)
        {
            ulong offset = address - d.BaseAddress;
            if (offset < d.Size)
            {
                return d.Write(offset, size, value);
            }
        }

        return false;
    }

    public ulong ReadTime() => _clock.MTime;
}
