using System.Collections.Concurrent;
using System.Diagnostics;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Memory;

/// <summary>Page facts (dirty, accessed, absent, populated, code) checked against what a program provably did.</summary>
public sealed class PageFactsTests : IDisposable
{
    private static readonly ulong PageA = Rig.Data + 0x5000, PageB = Rig.Data + 0x9000, PageC = Rig.Data + 0xC000;
    private readonly Rig _rig = new();

    public void Dispose() => _rig.Dispose();

    private GuestMemory Memory => _rig.Memory;

    private PageBitmap NewBitmap() => new(Memory.PageCount);

    private static int[] Pages(PageBitmap bitmap)
    {
        var list = new List<int>();
        foreach (int p in bitmap.EnumerateSet())
        {
            list.Add(p);
        }

        return [.. list];
    }

    private int[] CollectDirty()
    {
        PageBitmap b = NewBitmap();
        Memory.CollectDirtyLog(b);
        return Pages(b);
    }

    private static int P(ulong address) => Rig.PageOf(address);

    /// <summary>sd to A (twice) and B, ld from C; then, after label <c>phase2</c>, sd to A again; then spin.</summary>
    private (int Phase1, int Phase2) LoadStoreProgram()
    {
        var p = Rig.NewProgram()
            .Li(R.S0, PageA + 0x10).Li(R.S1, PageB + 0x800).Li(R.S2, PageC + 0x18).Li(R.A0, 0x1111);
        int setup = (p.Size / 4);
        p.Emit(Asm.Sd(R.A0, R.S0, 0), Asm.Sd(R.A0, R.S0, 8), Asm.Sd(R.A0, R.S1, 0), Asm.Ld(R.A1, R.S2, 0));
        p.Emit(Asm.Sd(R.A0, R.S0, 16));
        p.Halt();
        _rig.Load(p);
        return (setup + 4, 1);
    }

    [Fact]
    public void DirtyLog_HoldsExactlyThePagesTheGuestWrote_AndLogsAgainAfterCollection()
    {
        (int phase1, int phase2) = LoadStoreProgram();
        CollectDirty(); // the loader's writes
        Assert.Empty(CollectDirty());

        _rig.Step(phase1);
        Assert.Equal([P(PageA), P(PageB)], CollectDirty());
        Assert.Empty(CollectDirty()); // no writes since: nothing logged

        // The write TLB held page A; the collection must have flushed it so this store is logged again.
        _rig.Step(phase2);
        Assert.Equal(0x1111UL, _rig.ReadU64(PageA + 0x10 + 16));
        Assert.Equal([P(PageA)], CollectDirty());

        _rig.Step(1000); // spinning on `j .` writes nothing
        Assert.Empty(CollectDirty());
    }

    [Fact]
    public void AccessWindow_RecordsReadsWritesAndFetches()
    {
        (int phase1, int phase2) = LoadStoreProgram();
        Memory.StartAccessWindow(null);
        Assert.Equal(0, Memory.Accessed.PopCount());

        _rig.Step(phase1);
        Assert.Equal([P(Rig.Code), P(PageA), P(PageB), P(PageC)], Pages(Memory.Accessed));

        PageBitmap window = NewBitmap();
        Memory.StartAccessWindow(window);
        Assert.Equal([P(Rig.Code), P(PageA), P(PageB), P(PageC)], Pages(window));
        Assert.Equal(0, Memory.Accessed.PopCount());

        // New window: only the code page (fetch, re-recorded after the flush) and A (one store).
        _rig.Step(phase2 + 100);
        Assert.Equal([P(Rig.Code), P(PageA)], Pages(Memory.Accessed));
    }

    [Fact]
    public void Populated_OnlyForWrittenPages_ReadsDoNotPopulate()
    {
        (int phase1, _) = LoadStoreProgram();
        _rig.Step(phase1);
        Assert.Equal([P(Rig.Code), P(Rig.TrapHandler), P(PageA), P(PageB)], Pages(Memory.Populated));
        Assert.True(Memory.IsZeroPage(P(PageC)));
        Assert.False(Memory.IsZeroPage(P(PageA)));
        Assert.Equal(0UL, _rig.X(R.A1)); // C read as zero
    }

    [Fact]
    public void SelfModifyingCode_OnTheExecutingPage_RunsTheNewInstruction()
    {
        // Three passes over `patched` (addi a0, a0, 1): the first decodes and runs it, the second
        // overwrites it from the same (decoded) page right before reaching it, without fence.i:
        // Ferry keeps decoded code coherent with every store. The third runs the new code again.
        var p = Rig.NewProgram();
        Label patched = p.NewLabel(), loop = p.NewLabel();
        p.La(R.S0, patched).Li(R.S1, Asm.Addi(R.A0, R.A0, 100)).Li(R.A0, 0).Li(R.A2, 0);
        p.Bind(loop);
        p.Emit(Asm.Addi(R.A2, R.A2, 1), Asm.Addi(R.T0, R.Zero, 2));
        p.Emit(Asm.Bne(R.A2, R.T0, 12));  // only on pass 2: fall into the store
        p.Emit(Asm.Sw(R.S1, R.S0, 0), Asm.Nop());
        p.Bind(patched);
        p.Emit(Asm.Addi(R.A0, R.A0, 1), Asm.Addi(R.T0, R.Zero, 3));
        p.Emit(loop, off => Asm.Bne(R.A2, R.T0, off));
        p.Exit();
        _rig.Load(p).RunToExit();

        Assert.Equal(201UL, _rig.X(R.A0));
        Assert.Equal(3UL, _rig.X(R.A2));
    }

    [Fact]
    public void HostWriteOverDecodedCode_IsExecutedOnTheNextRun()
    {
        var p = Rig.NewProgram();
        Label loop = p.Mark();
        p.Emit(Asm.Addi(R.A0, R.A0, 1)).J(loop);
        _rig.Load(p);
        _rig.Step(10);
        Assert.Equal(5UL, _rig.X(R.A0));
        Assert.True(_rig.Hart.DecodedPageCount > 0);

        Memory.WritePhysical(Rig.Code, BitConverter.GetBytes(Asm.Addi(R.A0, R.A0, 1000)));
        _rig.Step(2);
        Assert.Equal(1005UL, _rig.X(R.A0));
    }

    [Fact]
    public void Concurrent_deliveries_of_one_page_install_it_exactly_once()
    {
        // A fault reply sent again while the push carries the same page: two receivers deliver
        // it at the same moment, and only one may count it as arrived.
        const int pages = 4096;
        using var memory = new GuestMemory(pages * (ulong)GuestMemory.PageSize);
        var absent = new PageBitmap(pages);
        absent.SetAll();
        for (int round = 0; round < 4; round++)
        {
            memory.MarkAbsent(absent);
            int installed = 0;
            using var start = new Barrier(2);
            void Deliver()
            {
                byte[] content = PageContent(7);
                start.SignalAndWait();
                for (int p = 0; p < pages; p++)
                {
                    if (memory.InstallPage(p, content))
                    {
                        Interlocked.Increment(ref installed);
                    }
                }
            }

            Task a = Task.Run(Deliver), b = Task.Run(Deliver);
            Task.WaitAll(a, b);
            Assert.Equal(pages, installed);
            Assert.Equal(0, memory.Absent.PopCount());
        }
    }

    [Fact]
    public void A_page_installed_while_the_hart_writes_its_request_is_reported_installed_and_the_hart_does_not_sleep()
    {
        // The page was on its way: it lands while the hart is still in PageNeeded (writing its
        // request). The handler must hear of the installation (the stall's stages end there),
        // and the hart must not announce a sleep it never takes.
        (bool present, List<string> calls) = WaitLogged(3, CallLog.During.PageNeeded, CancellationToken.None);
        Assert.True(present);
        Assert.Equal(["needed 3", "installed 3", "wait ended", "stall ended 3"], calls);
    }

    [Fact]
    public void A_hart_whose_spin_ends_before_its_page_announces_its_sleep_and_its_wake_up()
    {
        (bool present, List<string> calls) = WaitLogged(5, CallLog.During.Sleeping, CancellationToken.None);
        Assert.True(present);
        Assert.Equal(["needed 5", "sleeping", "installed 5", "wait ended", "stall ended 5"], calls);
    }

    [Fact]
    public void A_cancelled_wait_still_ends_the_hart_threads_wait()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        (bool present, List<string> calls) = WaitLogged(5, CallLog.During.Never, cancel.Token);
        Assert.False(present);
        Assert.Equal(["needed 5", "sleeping", "wait ended"], calls);
    }

    /// <summary>A hart's wait (no spin) for absent <paramref name="page"/>, and the handler's calls in order.</summary>
    private static (bool Present, List<string> Calls) WaitLogged(int page, CallLog.During installIn, CancellationToken cancellation)
    {
        using var memory = new GuestMemory(16 * (ulong)GuestMemory.PageSize) { AbsentSpin = TimeSpan.Zero };
        var absent = new PageBitmap(16);
        absent.Set(page);
        memory.MarkAbsent(absent);
        var pager = new CallLog(memory, installIn);
        memory.AbsentPageHandler = pager;
        return (memory.WaitUntilPresent(page, cancellation), pager.Calls);
    }

    /// <summary>Records the handler's calls in order; installs the page at the chosen call (on another thread while the hart sleeps).</summary>
    private sealed class CallLog(GuestMemory memory, CallLog.During installIn) : IAbsentPageHandler
    {
        public enum During
        {
            Never,
            PageNeeded,
            Sleeping,
        }

        private int _page;

        public List<string> Calls { get; } = [];

        public void PageNeeded(int page, long blockedAt)
        {
            _page = page;
            Log($"needed {page}");
            if (installIn == During.PageNeeded)
            {
                Assert.True(memory.InstallPage(page, PageContent(1)));
            }
        }

        public void Sleeping()
        {
            Log("sleeping");
            if (installIn == During.Sleeping)
            {
                _ = Task.Run(async () =>
                {
                    await Task.Delay(20);
                    memory.InstallPage(_page, PageContent(2));
                });
            }
        }

        public void PageInstalled(int page, long at) => Log($"installed {page}");

        public void WaitEnded() => Log("wait ended");

        public void StallEnded(int page, long blockedAt, long resumedAt) => Log($"stall ended {page}");

        private void Log(string call)
        {
            lock (Calls)
            {
                Calls.Add(call);
            }
        }
    }

    private sealed class DelayedPager : IAbsentPageHandler
    {
        private readonly GuestMemory _memory;
        private readonly byte[] _content;
        private readonly TimeSpan _delay;

        public DelayedPager(GuestMemory memory, byte[] content, TimeSpan delay, bool install = true)
        {
            _memory = memory;
            _content = content;
            _delay = delay;
            Install = install;
        }

        public bool Install { get; set; }

        public ConcurrentQueue<(int Page, int Thread)> Needed { get; } = new();

        public ConcurrentQueue<(int Page, TimeSpan Stall)> Stalls { get; } = new();

        public void PageNeeded(int page, long blockedAt)
        {
            Needed.Enqueue((page, Environment.CurrentManagedThreadId));
            if (Install)
            {
                _ = Task.Run(async () =>
                {
                    await Task.Delay(_delay);
                    _memory.InstallPage(page, _content);
                });
            }
        }

        public void PageInstalled(int page, long at)
        {
        }

        public void StallEnded(int page, long blockedAt, long resumedAt)
            => Stalls.Enqueue((page, System.Diagnostics.Stopwatch.GetElapsedTime(blockedAt, resumedAt)));
    }

    private static byte[] PageContent(ulong marker)
    {
        var content = new byte[GuestMemory.PageSize];
        BitConverter.TryWriteBytes(content.AsSpan(0x18), marker);
        return content;
    }

    [Fact]
    public void AbsentPage_BlocksTheHartUntilInstalled_ThenTheLoadSeesTheContent()
    {
        var p = Rig.NewProgram().Li(R.S2, PageC + 0x18).Emit(Asm.Ld(R.A1, R.S2, 0)).Exit();
        _rig.Load(p);
        var pager = new DelayedPager(Memory, PageContent(0xABCD_EF01_2345_6789), TimeSpan.FromMilliseconds(150));
        Memory.AbsentPageHandler = pager;
        PageBitmap absent = NewBitmap();
        absent.Set(P(PageC));
        Memory.MarkAbsent(absent);

        var watch = Stopwatch.StartNew();
        _rig.RunToExit();
        watch.Stop();

        Assert.Equal(0xABCD_EF01_2345_6789UL, _rig.X(R.A1));
        Assert.Equal([(P(PageC), Environment.CurrentManagedThreadId)], pager.Needed.ToArray()); // on the hart's (this) thread
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(140), $"the run took {watch.Elapsed.TotalMilliseconds} ms: the hart did not wait");
        (int page, TimeSpan stall) = Assert.Single(pager.Stalls);
        Assert.Equal(P(PageC), page);
        Assert.True(stall >= TimeSpan.FromMilliseconds(140), $"stall reported as {stall.TotalMilliseconds} ms");
        Assert.False(Memory.Absent.Get(P(PageC)));
        Assert.True(Memory.Populated.Get(P(PageC)));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AbsentPage_WaiterSpinsFirstThenBlocks(bool spinLong)
    {
        // A waiter spins for AbsentSpin (the page usually comes back in tens of microseconds),
        // then blocks. Seen from outside: running while it spins, blocked after.
        using var memory = new GuestMemory(16 * GuestMemory.PageSize);
        memory.AbsentSpin = spinLong ? TimeSpan.FromSeconds(30) : TimeSpan.Zero;
        var pager = new DelayedPager(memory, PageContent(7), TimeSpan.Zero, install: false);
        memory.AbsentPageHandler = pager;
        memory.Absent.Set(3);
        var waiter = new Thread(() => memory.WaitUntilPresent(3, CancellationToken.None));
        waiter.Start();
        while (pager.Needed.IsEmpty)
        {
            Thread.Sleep(1);
        }

        Thread.Sleep(100);
        System.Threading.ThreadState seen = waiter.ThreadState;
        Assert.True(memory.InstallPage(3, PageContent(7)));
        Assert.True(waiter.Join(TimeSpan.FromSeconds(10)), "the waiter saw its page");
        Assert.Equal(spinLong ? System.Threading.ThreadState.Running : System.Threading.ThreadState.WaitSleepJoin, seen);
        Assert.Single(pager.Stalls);
    }

    [Fact]
    public void AbsentCodePage_BlocksTheFetch()
    {
        ulong far = Rig.Data + 0x2_0000;
        var p = Rig.NewProgram().Li(R.T0, far).Emit(Asm.Jalr(R.Ra, R.T0, 0));
        _rig.Load(p);
        byte[] code = new byte[GuestMemory.PageSize];
        byte[] body = new ProgramBuilder(far).Li(R.A3, 77).Exit().Build();
        body.CopyTo(code, 0);
        var pager = new DelayedPager(Memory, code, TimeSpan.FromMilliseconds(50));
        Memory.AbsentPageHandler = pager;
        PageBitmap absent = NewBitmap();
        absent.Set(P(far));
        Memory.MarkAbsent(absent);

        _rig.RunToExit();
        Assert.Equal(77UL, _rig.X(R.A3));
        Assert.Equal(P(far), Assert.Single(pager.Needed).Page);
    }

    [Fact]
    public void StopWhileBlockedOnAnAbsentPage_RetriesTheInstructionOnTheNextRun()
    {
        var p = Rig.NewProgram().Li(R.S2, PageC + 0x18);
        int before = p.Size / 4;
        p.Emit(Asm.Ld(R.A1, R.S2, 0)).Exit();
        _rig.Load(p);
        var pager = new DelayedPager(Memory, PageContent(42), TimeSpan.Zero, install: false);
        Memory.AbsentPageHandler = pager;
        PageBitmap absent = NewBitmap();
        absent.Set(P(PageC));
        Memory.MarkAbsent(absent);

        // The stop comes from another thread while the hart waits; the test waits for that thread
        // before going on, so no stop can arrive after the machine is gone.
        Task stopper = Task.Run(async () =>
        {
            await Task.Delay(100);
            _rig.Machine.RequestStop();
        });
        RunOutcome outcome = _rig.Step(1000);
        Assert.True(stopper.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(RunOutcome.Stopped, outcome);
        Assert.Equal((ulong)before, _rig.Hart.InstructionsRetired); // the load did not retire
        Assert.Equal(Rig.Code + (ulong)(before * 4), _rig.Hart.Pc);
        Assert.Empty(pager.Stalls);

        Assert.True(Memory.InstallPage(P(PageC), PageContent(42)));
        Assert.False(Memory.InstallPage(P(PageC), PageContent(43))); // a duplicate delivery is ignored
        _rig.Machine.ClearStopRequest(); // stop requests are sticky
        _rig.RunToExit();
        Assert.Equal(42UL, _rig.X(R.A1));
    }

    [Fact]
    public void InstallingAZeroPage_LeavesItUnpopulated()
    {
        PageBitmap absent = NewBitmap();
        absent.Set(P(PageC));
        Memory.MarkAbsent(absent);
        Assert.True(Memory.InstallPage(P(PageC), new byte[GuestMemory.PageSize]));
        Assert.False(Memory.Populated.Get(P(PageC)));
        Assert.False(Memory.Absent.Get(P(PageC)));
    }
}
