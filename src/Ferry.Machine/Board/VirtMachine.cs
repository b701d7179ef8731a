using System.Collections.Concurrent;
using Ferry.Machine.Cpu;
using Ferry.Machine.Devices;
using Ferry.Machine.Devices.Virtio;
using Ferry.Machine.Memory;
using Ferry.Machine.State;

namespace Ferry.Machine.Board;

/// <summary>
/// The RISC-V "virt" computer: RAM at 0x8000_0000, ns16550a UART at 0x1000_0000 (PLIC source
/// 10), PLIC at 0x0c00_0000, CLINT at 0x0200_0000, sifive_test at 0x0010_0000, mask ROM at
/// 0x1000, one RV64GC hart, and QEMU virt's eight virtio-mmio transports at 0x1000_1000 (PLIC
/// sources 1..8) holding the <see cref="MachineDevices"/> it was given (a disk, a network card). <see cref="Load"/> boots an ELF; <see cref="LinuxBoot"/> boots
/// firmware, a Linux kernel and an initramfs. The board lays the interrupt lines: CLINT to the hart's MSIP and MTIP, PLIC contexts
/// 0 and 1 to MEIP and SEIP, the UART to PLIC source 10; no device holds another.
///
/// <see cref="Run"/> drives the hart in bounded runs on the calling thread (the VM's thread).
/// Between runs it serves safe-point requests (<see cref="AtSafePointAsync"/>): the only
/// moments another thread may read or change machine state, collect the dirty log or start an
/// access window. Stopping is a request honoured between runs.
/// </summary>
public sealed class VirtMachine : IDisposable
{
    /// <summary>Longest run between checks of the clock, stop requests and safe points.</summary>
    public const long MaxRunInstructions = 200_000;

    /// <summary>The UART's PLIC source (QEMU virt's UART0_IRQ).</summary>
    public const int UartIrq = 10;

    /// <summary>The devices' state sections, in encoding order (after the configuration and the hart's).</summary>
    public static readonly IReadOnlyList<StateSection> DeviceSections =
        [ClockState.Section, ClintState.Section, UartState.Section, PlicState.Section, VirtioState.Section];

    private readonly object _gate = new();
    private readonly ConcurrentQueue<(Action Action, TaskCompletionSource Done)> _safePoints = new();
    private readonly AutoResetEvent _wake = new(false);
    private CancellationTokenSource _stallCancellation = new();
    private volatile bool _stopRequested;
    private bool _running;
    private volatile bool _networkDeparted;

    public VirtMachine(MachineConfig config, ConsoleLog? console = null, MachineDevices? devices = null)
    {
        Config = config;
        Devices = devices ?? MachineDevices.None;
        Console = console ?? new ConsoleLog();
        Memory = new GuestMemory(config.MemorySize);
        Hart? hart = null;
        Clock = new MachineClock(config.Icount, () => hart!.VirtualClock);
        Finisher = new SifiveTest(OnGuestExit);
        var bus = new DeferredBus();
        hart = new Hart(Memory, bus);
        Hart = hart;
        var hartInputs = new HartInterruptInputs(hart);
        Clint = new Clint(Clock, new InterruptLine(hartInputs, Irq.MSI), new InterruptLine(hartInputs, Irq.MTI));
        Plic = new Plic(new InterruptLine(hartInputs, Irq.MEI), new InterruptLine(hartInputs, Irq.SEI));
        Uart = new Uart16550(Console, new InterruptLine(Plic, UartIrq), OnConsoleInput);
        Rom = new MaskRom(LinuxBoot.FirmwareAddress, LinuxBoot.DeviceTreeAddress(config.MemorySize), LinuxBoot.KernelAddress);
        try
        {
            Virtio = CreateVirtio(Devices);
        }
        catch
        {
            // A disk that cannot be opened, a TAP that cannot be made: nothing is left behind.
            Hart.Dispose();
            Memory.Dispose();
            _wake.Dispose();
            _stallCancellation.Dispose();
            throw;
        }

        bus.Target = new Bus(Clock, [Uart, Clint, Plic, Finisher, Rom, .. Virtio]);
        Hart.StallCancellation = _stallCancellation.Token;
    }

    /// <summary>The virtio devices and their backends this machine was built with.</summary>
    public MachineDevices Devices { get; }

    /// <summary>QEMU virt's eight virtio-mmio transports (slot n at 0x1000_1000 + 0x1000·n, PLIC source n + 1); empty slots have no device.</summary>
    public IReadOnlyList<VirtioMmio> Virtio { get; }

    /// <summary>The transports that hold a device, highest slot first (the device tree's order).</summary>
    public IEnumerable<VirtioMmio> VirtioDevices => Virtio.Where(t => t.Device is not null).OrderByDescending(t => t.Slot);

    /// <summary>Where devices report what a guest did wrong (DEVICE_NEEDS_RESET and why); standard error unless set.</summary>
    public Action<string> DeviceLog { get; set; } = message => System.Console.Error.WriteLine($"ferry: {message}");

    public MachineConfig Config { get; }

    public GuestMemory Memory { get; }

    public Hart Hart { get; }

    public MachineClock Clock { get; }

    public Uart16550 Uart { get; }

    public Clint Clint { get; }

    public Plic Plic { get; }

    public SifiveTest Finisher { get; }

    /// <summary>QEMU's mask ROM at 0x1000: reset vector and fw_dynamic_info (a function of the memory size; no state).</summary>
    public MaskRom Rom { get; }

    public ConsoleLog Console { get; }

    /// <summary>Set once the guest has written to the finisher.</summary>
    public GuestExit? Exit { get; private set; }

    /// <summary>Loads an ELF image into RAM and points the hart at its entry with a0 = hart id.</summary>
    public void Load(GuestImage image)
    {
        foreach (LoadSegment s in image.Segments)
        {
            if (!Memory.Contains(s.PhysicalAddress) || s.MemorySize > Memory.BaseAddress + Memory.Size - s.PhysicalAddress)
            {
                throw new GuestImageException(
                    $"{image.Name}: segment at 0x{s.PhysicalAddress:x} (+0x{s.MemorySize:x}) is outside RAM 0x{Memory.BaseAddress:x}-0x{Memory.BaseAddress + Memory.Size - 1:x}");
            }
        }

        if (!Memory.Contains(image.Entry))
        {
            throw new GuestImageException($"{image.Name}: entry point 0x{image.Entry:x} is outside RAM");
        }

        foreach (LoadSegment s in image.Segments)
        {
            // The part beyond the file size is zero already (fresh RAM): leave it unpopulated.
            Memory.WritePhysical(s.PhysicalAddress, image.Bytes.Slice(s.FileOffset, s.FileSize));
        }

        Hart.Pc = image.Entry;
        Hart.SetRegister(10, Hart.HartId);
        Memory.Dirty.ClearAll();
    }

    /// <summary>
    /// Runs the machine on this thread until the guest exits, <paramref name="stopAtInstructions"/>
    /// instructions have retired in total, or a stop is requested.
    /// </summary>
    public RunOutcome Run(ulong stopAtInstructions = ulong.MaxValue)
    {
        lock (_gate)
        {
            if (_running)
            {
                throw new InvalidOperationException("the machine is already running");
            }

            _running = true;
            if (_stallCancellation.IsCancellationRequested)
            {
                _stallCancellation.Dispose();
                _stallCancellation = new CancellationTokenSource();
                Hart.StallCancellation = _stallCancellation.Token;
            }
        }

        if (_networkDeparted)
        {
            AnnounceAfterMove(); // a source's VM that did not leave: its network comes back
        }

        try
        {
            while (true)
            {
                DrainSafePoints();
                if (Exit is not null)
                {
                    return RunOutcome.GuestExited;
                }

                if (_stopRequested)
                {
                    return RunOutcome.Stopped;
                }

                ulong retired = Hart.InstructionsRetired;
                if (retired >= stopAtInstructions)
                {
                    return RunOutcome.InstructionLimit;
                }

                Clint.UpdateInterruptLines();
                Uart.SampleInput();
                if (_virtioPoll)
                {
                    PollVirtio();
                }

                if (Hart.WaitingForInterrupt && !Hart.InterruptPendingForWfi)
                {
                    Idle();
                    continue;
                }

                long budget = (long)Math.Min(stopAtInstructions - retired, MaxRunInstructions);
                if (Clock.Icount && (Hart.Mie & Irq.MTIP) != 0)
                {
                    // End the run exactly where mtime reaches mtimecmp, so the timer interrupt is
                    // taken at the same instruction on every run.
                    ulong deadline = Clock.VirtualClockAt(Clint.MTimeCmp);
                    ulong now = Hart.VirtualClock;
                    if (deadline > now && deadline - now < (ulong)budget)
                    {
                        budget = (long)(deadline - now);
                    }
                }

                long sliceStart = _throttle > 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                Hart.Run(budget);
                if (sliceStart != 0)
                {
                    SleepThrottle(sliceStart);
                }
            }
        }
        finally
        {
            lock (_gate)
            {
                _running = false;
            }

            DrainSafePoints();
            Console.Flush();
        }
    }

    /// <summary>
    /// The share of wall time the VM thread sleeps between its runs of instructions (0 = none, at
    /// most 0.99): a live migration's auto-converge slows a guest that dirties memory faster than
    /// the link carries it. The guest sees nothing of it but speed (with icount, not even that).
    /// </summary>
    public double Throttle
    {
        get => _throttle;
        set
        {
            _throttle = Math.Clamp(value, 0, MaxThrottle);
        }
    }

    public const double MaxThrottle = 0.99;

    private double _throttle;
    private double _throttleDebtMs;

    /// <summary>After a run of <see cref="Hart.Run"/>: sleeps the throttle's share of the time it took, once at least 1 ms is owed.</summary>
    private void SleepThrottle(long sliceStart)
    {
        double t = _throttle;
        if (t <= 0)
        {
            _throttleDebtMs = 0;
            return;
        }

        _throttleDebtMs += System.Diagnostics.Stopwatch.GetElapsedTime(sliceStart).TotalMilliseconds * t / (1 - t);
        if (_throttleDebtMs < 1)
        {
            return;
        }

        // Sleeps in 1 ms steps: a stop (the switchover's pause) or the throttle's end cuts it short
        // at once, but not safe-point requests (dirty-log collections, working-set windows): they
        // wait, or a throttled guest would run again at every one of them.
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        double due = Math.Min(_throttleDebtMs, 1000);
        while (!_stopRequested && Volatile.Read(ref _throttle) > 0 && System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds < due)
        {
            Thread.Sleep(1);
        }

        _throttleDebtMs = Math.Max(0, _throttleDebtMs - System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }

    /// <summary>Forgets an earlier <see cref="RequestStop"/> so the next <see cref="Run"/> runs.</summary>
    public void ClearStopRequest() => _stopRequested = false;

    /// <summary>Asks <see cref="Run"/> to return at the next boundary (any thread). Unblocks absent-page waits; sticky until <see cref="ClearStopRequest"/>.</summary>
    public void RequestStop()
    {
        _stopRequested = true;
        Hart.RequestEndOfRun();
        try
        {
            _stallCancellation.Cancel();
            Memory.WakeWaiters();
            _wake.Set();
        }
        catch (ObjectDisposedException)
        {
            // A stop that arrives after the machine was disposed has nothing left to stop.
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> when no instruction is executing: between runs on the
    /// machine's thread, or at once on the caller's thread if the machine is not running.
    /// </summary>
    public Task AtSafePointAsync(Action action)
    {
        lock (_gate)
        {
            if (!_running)
            {
                action();
                return Task.CompletedTask;
            }

            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _safePoints.Enqueue((action, done));
            Hart.RequestEndOfRun();
            _wake.Set();
            return done.Task;
        }
    }

    public async Task<T> AtSafePointAsync<T>(Func<T> func)
    {
        T result = default!;
        await AtSafePointAsync(() => { result = func(); }).ConfigureAwait(false);
        return result;
    }

    /// <summary>The CPU and device state (not memory). Safe point only.</summary>
    public MachineState SaveState() =>
        new(Config, Hart.SaveState(), [Clock.SaveState(), Clint.SaveState(), Uart.SaveState(), Plic.SaveState(), SaveVirtio()]);

    /// <summary>Rebuilds CPU and devices from saved state. Safe point only; memory is restored separately.</summary>
    public void RestoreState(MachineState state)
    {
        if (state.Config.MemorySize != Config.MemorySize || state.Config.Icount != Config.Icount)
        {
            throw new InvalidDataException(
                $"state is for a {state.Config.MemorySize >> 20} MiB {(state.Config.Icount ? "icount" : "real-time")} machine, this one is {Config.MemorySize >> 20} MiB {(Config.Icount ? "icount" : "real-time")}");
        }

        // The CLINT and the PLIC drive the hart's MSIP/MTIP and MEIP/SEIP again from their restored
        // registers; the UART drives nothing into the PLIC (its saved pending bits hold what the line did).
        Hart.RestoreState(state.Hart);
        Clock.RestoreState(state.Device<ClockState>());
        Clint.RestoreState(state.Device<ClintState>());
        Plic.RestoreState(state.Device<PlicState>());
        UartState uart = state.Device<UartState>();
        Uart.RestoreState(uart);
        Console.ContinueAt((long)uart.Transmitted);
        RestoreVirtio(state.Device<VirtioState>());
    }

    /// <summary>
    /// The VM has just moved here (a migration's destination, after its state was restored), or
    /// runs again where it was after a move that failed: each network card reads its TAP again,
    /// announces the VM's MAC from the host side (QEMU's RARP rounds) and, if its driver negotiated
    /// GUEST_ANNOUNCE, asks the guest for its gratuitous ARPs, so that the network learns the
    /// VM's port. With <paramref name="guestToo"/> false the guest is asked later
    /// (<see cref="AskGuestsToAnnounce"/>): the host's RARP moves the MAC at once either way, and a
    /// guest whose memory is still arriving would fault on the cold code of its announcement while
    /// its clients wait. Safe point only.
    /// </summary>
    public void AnnounceAfterMove(bool guestToo = true)
    {
        _networkDeparted = false;
        foreach (VirtioNet net in NetworkCards)
        {
            net.Arrive(guestToo);
        }
    }

    /// <summary>Asks the guest of each network card to announce itself (GUEST_ANNOUNCE). Safe point only.</summary>
    public void AskGuestsToAnnounce()
    {
        foreach (VirtioNet net in NetworkCards)
        {
            net.Announce();
        }
    }

    /// <summary>A migration's destination, before the source pauses: the network cards discard what reaches them.</summary>
    public void NetworkStandBy()
    {
        foreach (VirtioNet net in NetworkCards)
        {
            net.StandBy();
        }
    }

    /// <summary>A migration's destination once the source has paused: the network cards keep what reaches them for the VM.</summary>
    public void NetworkHold()
    {
        foreach (VirtioNet net in NetworkCards)
        {
            net.Hold();
        }
    }

    /// <summary>
    /// A migration's source, paused: each network card takes its TAP's link down, so that the
    /// bridge stops sending the VM's frames to this port. If the VM runs here again, its next
    /// <see cref="Run"/> brings the links back up and announces it.
    /// </summary>
    public void NetworkDepart()
    {
        foreach (VirtioNet net in NetworkCards)
        {
            net.Depart();
            _networkDeparted = true;
        }
    }

    /// <summary>
    /// The pages the virtio devices will touch next: each ready queue's rings and the buffers the
    /// driver has made available to the device (a network card's posted receive buffers). A
    /// migration's source sends them ahead, so that the destination's devices do not fault on
    /// them while the guest's clients wait. <paramref name="maxChainsPerQueue"/> limits each queue
    /// to the chains it will use first. Safe point or paused machine only.
    /// </summary>
    public PageBitmap DeviceDmaPages(int maxChainsPerQueue = int.MaxValue)
    {
        var pages = new PageBitmap(Memory.PageCount);
        foreach (VirtioMmio t in Virtio)
        {
            if (t.Device is not null)
            {
                foreach (SplitQueue q in t.Queues)
                {
                    q.AddDmaPages(Memory, pages, maxChainsPerQueue);
                }
            }
        }

        return pages;
    }

    private IEnumerable<VirtioNet> NetworkCards => Virtio.Select(t => t.Device).OfType<VirtioNet>();

    public void Dispose()
    {
        foreach (VirtioMmio t in Virtio)
        {
            t.Device?.Dispose();
        }

        Hart.Dispose();
        Memory.Dispose();
        _wake.Dispose();
        _stallCancellation.Dispose();
    }

    private VirtioMmio[] CreateVirtio(MachineDevices devices)
    {
        var models = new List<VirtioDevice>();
        try
        {
            if (devices.Disk is { } disk)
            {
                models.Add(new VirtioBlock(disk, devices.DiskReadOnly));
            }

            if (devices.Net is { } net)
            {
                models.Add(new VirtioNet(net, OnExternalWork));
            }
        }
        catch
        {
            foreach (VirtioDevice d in models)
            {
                d.Dispose();
            }

            throw;
        }

        var dma = new GuestDma(Memory, () => Hart.StallCancellation);
        var transports = new VirtioMmio[VirtioMmio.SlotCount];
        for (int slot = 0; slot < transports.Length; slot++)
        {
            // QEMU fills the slots from the highest down.
            int index = VirtioMmio.SlotCount - 1 - slot;
            VirtioDevice? device = index < models.Count ? models[index] : null;
            transports[slot] = new VirtioMmio(slot, device, new InterruptLine(Plic, VirtioMmio.FirstIrq + slot), dma, m => DeviceLog(m));
        }

        return transports;
    }

    private volatile bool _virtioPoll;

    /// <summary>A device has work from outside the guest (any thread): end the run or the idle wait so it is served.</summary>
    private void OnExternalWork()
    {
        _virtioPoll = true;
        Hart.RequestEndOfRun();
        _wake.Set();
    }

    private void PollVirtio()
    {
        _virtioPoll = false;
        bool again = false;
        foreach (VirtioMmio t in Virtio)
        {
            if (t.PollNeeded)
            {
                t.Poll();
                again |= t.PollNeeded;
            }
        }

        // Work left (a retried notify waiting for a page, frames without buffers): look again at the next boundary.
        if (again)
        {
            _virtioPoll = true;
        }
    }

    private VirtioState SaveVirtio() => new([.. Virtio.Where(t => t.Device is not null).Select(t => t.SaveState())]);

    private void RestoreVirtio(VirtioState state)
    {
        var bySlot = state.Slots.ToDictionary(s => (int)s.Slot);
        foreach (VirtioMmio t in Virtio)
        {
            bool saved = bySlot.TryGetValue(t.Slot, out VirtioSlotState? s);
            if (saved != (t.Device is not null))
            {
                throw new InvalidDataException(saved
                    ? $"state has a virtio device (ID {s!.DeviceId}) in slot {t.Slot}, this machine has none there (start it with the same --disk and --net)"
                    : $"this machine has {t.Device!.Name} in slot {t.Slot}, the state has no device there");
            }

            if (s is not null)
            {
                t.RestoreState(s);
            }
        }

        _virtioPoll = true;
    }

    /// <summary>Host input was queued (any thread): end the run or the idle wait so the UART samples it.</summary>
    private void OnConsoleInput()
    {
        Hart.RequestEndOfRun();
        _wake.Set();
    }

    private void OnGuestExit(GuestExit exit)
    {
        Exit ??= exit;
        Hart.RequestEndOfRun();
    }

    private void DrainSafePoints()
    {
        while (_safePoints.TryDequeue(out var item))
        {
            try
            {
                item.Action();
                item.Done.TrySetResult();
            }
            catch (Exception e)
            {
                item.Done.TrySetException(e);
            }
        }
    }

    /// <summary>The hart waits for an interrupt: skip (icount) or sleep (real time) to the next timer event.</summary>
    private void Idle()
    {
        bool timerArmed = (Hart.Mie & Irq.MTIP) != 0 && Clint.MTimeCmp != ulong.MaxValue;
        if (Clock.Icount)
        {
            if (!timerArmed)
            {
                _wake.WaitOne(100);
                return;
            }

            ulong deadline = Clock.VirtualClockAt(Clint.MTimeCmp);
            ulong now = Hart.VirtualClock;
            if (deadline <= now)
            {
                return;
            }

            if (Config.IdleSleep)
            {
                // 1 instruction = 10 ns of guest time; a stop or safe point cuts the sleep short
                // and the skip is resumed on the next pass, so the result is the same.
                var sleep = TimeSpan.FromTicks((long)Math.Min((deadline - now) / 10, (ulong)TimeSpan.TicksPerSecond));
                if (sleep > TimeSpan.FromMilliseconds(1) && _wake.WaitOne(sleep))
                {
                    return;
                }
            }

            Hart.AdvanceVirtualClock(deadline - now);
            return;
        }

        TimeSpan wait = timerArmed ? Clock.RealTimeUntil(Clint.MTimeCmp) : TimeSpan.FromMilliseconds(100);
        if (wait == Timeout.InfiniteTimeSpan || wait > TimeSpan.FromMilliseconds(100))
        {
            wait = TimeSpan.FromMilliseconds(100);
        }

        if (wait >= TimeSpan.FromMilliseconds(1))
        {
            _wake.WaitOne(wait); // (whole milliseconds: what is left of a fraction comes back here)
        }
        else if (wait > TimeSpan.Zero)
        {
            // Less than a millisecond: a sleep of the kernel's, not a poll of the clock. What it
            // delays (a device's interrupt, a stop) waits at most this long.
            HostSleep.For(wait);
        }
    }

    /// <summary>Breaks the construction cycle hart -> bus -> CLINT -> hart.</summary>
    private sealed class DeferredBus : IHartBus
    {
        public IHartBus Target { get; set; } = null!;

        public bool Read(ulong address, int size, out ulong value) => Target.Read(address, size, out value);

        public bool Write(ulong address, int size, ulong value) => Target.Write(address, size, value);

        public ulong ReadTime() => Target.ReadTime();
    }
}

public enum RunOutcome
{
    GuestExited,
    InstructionLimit,
    Stopped,
}
