using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Devices;

namespace Ferry.Machine.State;

/// <summary>Everything about a VM except its memory: what crosses in a migration's switchover.</summary>
public sealed record MachineState(MachineConfig Config, HartState Hart, ClintState Clint, UartState Uart, ClockState Clock);
