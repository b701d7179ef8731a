using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Machine.State;

/// <summary>
/// Everything about a VM except its memory: what crosses in a migration's switchover. The
/// configuration and the hart, then each device's own state record (clock, CLINT, UART, PLIC:
/// <see cref="VirtMachine.DeviceSections"/>), each of which the codec stores as its own section.
/// </summary>
public sealed record MachineState(MachineConfig Config, HartState Hart, IReadOnlyList<object> Devices)
{
    /// <summary>The state of the device whose state record is <typeparamref name="T"/>.</summary>
    public T Device<T>()
        where T : class
    {
        foreach (object d in Devices)
        {
            if (d is T t)
            {
                return t;
            }
        }

        throw new InvalidDataException($"machine state holds no {typeof(T).Name}");
    }

    /// <summary>This state with <typeparamref name="T"/>'s record replaced.</summary>
    public MachineState WithDevice<T>(T state)
        where T : class
    {
        _ = Device<T>();
        return this with { Devices = [.. Devices.Select(d => d is T ? state : d)] };
    }
}
