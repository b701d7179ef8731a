namespace Ferry.Machine.Tests.Guests;

/// <summary>A guest with a small configuration and the console output it must print (from QEMU 7.2 runs of the same image).</summary>
public sealed record GuestCase(string Id, string Guest, (string Key, ulong Value)[] Config, string Expected)
{
    public override string ToString() => Id;

    public static readonly GuestCase[] All =
    [
        new("hello", "hello", [],
            "Hello from Ferry guest (hart 0)\n" +
            "printf: 42 -7 4000000000 deadbeef 123456789abcdef0 ok Z %\n" +
            "64-bit: -9223372036854775808 18446744073709551615 0x0000000000000abc [   12] [34   ] [-0056]\n" +
            "lcg10 = 0x32ccf775fe645423, 1000000007 * 998244353 = 998244359987710471\n"),
        new("compute-k0", "compute", [("iterations", 20000)],
            "compute: kernel=0 iterations=20000\ncompute kernel 0 result 0x6ad28a6b9bb05ca7\n"),
        new("compute-k1", "compute", [("kernel", 1), ("iterations", 20000)],
            "compute: kernel=1 iterations=20000\ncompute kernel 1 result 0xc60a77db6308e44\n"),
        new("verify", "verify", [("size_mib", 2), ("passes", 2)],
            "verify: size_mib=2 passes=2\nOK pass 1\nOK pass 2\n"),
        new("dirty-seq", "dirty", [("size_mib", 4), ("passes", 3)],
            "dirty: size_mib=4 pattern=0 rate=0 passes=3\npass 1\npass 2\npass 3\n"),
        new("dirty-random", "dirty", [("size_mib", 4), ("passes", 3), ("pattern", 1)],
            "dirty: size_mib=4 pattern=1 rate=0 passes=3\npass 1\npass 2\npass 3\n"),
        new("kvstore", "kvstore", [("table_mib", 8), ("ops", 400000), ("report_every", 100000)],
            "kvstore: table_mib=8 hot_pct=2 hot_ops_pct=95 put_pct=10 report_every=100000 ops=400000\n" +
            "kvstore: 131072 slots, 98304 keys, hot 1968 keys in 2624 slots (164 KiB)\n" +
            "populated 98304 keys\n" +
            "ops 100000 hits 94957 sum 0x6834436fa62e7c22\n" +
            "ops 200000 hits 189766 sum 0x5bb2503082b68b4a\n" +
            "ops 300000 hits 284834 sum 0xd44670dfd5910020\n" +
            "ops 400000 hits 379825 sum 0xf2781c6e6bbba836\n"),
        new("idle", "idle", [("interval_ms", 1), ("beats", 5)],
            "idle: interval_ms=1 pages=4 beats=5\nbeat 1\nbeat 2\nbeat 3\nbeat 4\nbeat 5\n"),
    ];

    public static TheoryData<GuestCase> Data
    {
        get
        {
            var data = new TheoryData<GuestCase>();
            foreach (GuestCase c in All)
            {
                data.Add(c);
            }

            return data;
        }
    }
}
