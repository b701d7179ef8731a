using System.Buffers.Binary;
using Ferry.Machine.Board;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Units;

public sealed class MachineConfigTests
{
    [Theory]
    [InlineData("256M", 256UL << 20)]
    [InlineData("256MiB", 256UL << 20)]
    [InlineData("256mb", 256UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("1GiB", 1UL << 30)]
    [InlineData("65536K", 64UL << 20)]
    [InlineData("4KB", 4096UL)]
    [InlineData("4096", 4096UL)]
    [InlineData(" 2MiB ", 2UL << 20)]
    public void ParseSize_Accepts(string text, ulong expected) => Assert.Equal(expected, MachineConfig.ParseSize(text));

    [Theory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("0M")]
    [InlineData("M")]
    [InlineData("-1M")]
    [InlineData("12X")]
    [InlineData("1.5G")]
    [InlineData("abc")]
    public void ParseSize_Rejects(string text) => Assert.Throws<FormatException>(() => MachineConfig.ParseSize(text));

    [Fact]
    public void ParseSize_OverflowIsAnError() => Assert.Throws<OverflowException>(() => MachineConfig.ParseSize("99999999999999G"));
}

public sealed class GuestImageTests
{
    private static byte[] HelloBytes() => File.ReadAllBytes(Repo.Guest("hello"));

    private static GuestImageException Refused(byte[] bytes) => Assert.Throws<GuestImageException>(() => GuestImage.Parse("bad", bytes));

    [Fact]
    public void Config_ListsTheBlockInOrder()
    {
        GuestImage dirty = GuestImage.Load(Repo.Guest("dirty"));
        Assert.Equal(["size_mib", "pattern", "rate", "passes"], dirty.Config.Select(c => c.Key));
        Assert.Equal(64UL, dirty.Config[0].Value);
        Assert.Empty(GuestImage.Load(Repo.Guest("hello")).Config);
    }

    [Fact]
    public void WithConfig_PatchesValues_AndThePatchedBytesParseBack()
    {
        GuestImage image = GuestImage.Load(Repo.Guest("kvstore"));
        GuestImage patched = image.WithConfig(GuestImage.ParseConfig("ops=0x400, table_mib=8"));
        Assert.Equal(0x400UL, patched.Config.Single(c => c.Key == "ops").Value);
        Assert.Equal(8UL, patched.Config.Single(c => c.Key == "table_mib").Value);
        Assert.Equal(192UL, image.Config.Single(c => c.Key == "table_mib").Value); // the original is unchanged

        GuestImage reparsed = GuestImage.Parse("kvstore", patched.Bytes.ToArray());
        Assert.Equal(patched.Config, reparsed.Config);
        Assert.Equal(image.Bytes.Length, patched.Bytes.Length);
        int differing = 0;
        for (int i = 0; i < image.Bytes.Length; i++)
        {
            differing += image.Bytes[i] != patched.Bytes[i] ? 1 : 0;
        }

        Assert.InRange(differing, 2, 16); // only the two values' bytes
    }

    [Fact]
    public void WithConfig_UnknownKey_IsRefusedWithTheKnownKeys()
    {
        var e = Assert.Throws<GuestImageException>(() => GuestImage.Load(Repo.Guest("verify")).WithConfig([new("size", 1)]));
        Assert.Contains("'size'", e.Message, StringComparison.Ordinal);
        Assert.Contains("size_mib", e.Message, StringComparison.Ordinal);
        var none = Assert.Throws<GuestImageException>(() => GuestImage.Load(Repo.Guest("hello")).WithConfig([new("x", 1)]));
        Assert.Contains("none", none.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a=1,b=2", "a", 1UL)]
    [InlineData(" size_mib=16 , passes=3", "size_mib", 16UL)]
    [InlineData("x=0xFF", "x", 255UL)]
    [InlineData("x=18446744073709551615", "x", ulong.MaxValue)]
    public void ParseConfig_Accepts(string text, string key, ulong value)
    {
        var list = GuestImage.ParseConfig(text);
        Assert.Equal(value, list.Single(kv => kv.Key == key).Value);
    }

    [Theory]
    [InlineData("novalue")]
    [InlineData("=5")]
    [InlineData("a=")]
    [InlineData("a=-1")]
    [InlineData("a=0xZZ")]
    [InlineData("a=18446744073709551616")]
    public void ParseConfig_Rejects(string text) => Assert.Throws<GuestImageException>(() => GuestImage.ParseConfig(text));

    [Fact]
    public void NotAnElf_IsRefused()
    {
        Assert.Contains("not an ELF", Refused("hello, world, this is not an ELF file at all ........................"u8.ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("not an ELF", Refused([0x7F, (byte)'E', (byte)'L']).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Elf32_IsRefused()
    {
        byte[] b = HelloBytes();
        b[4] = 1; // ELFCLASS32
        Assert.Contains("64-bit", Refused(b).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BigEndian_IsRefused()
    {
        byte[] b = HelloBytes();
        b[5] = 2;
        Assert.Contains("little-endian", Refused(b).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NonRiscVMachine_IsRefused()
    {
        byte[] b = HelloBytes();
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(18), 62); // EM_X86_64
        Assert.Contains("not RISC-V", Refused(b).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NotAnExecutable_IsRefused()
    {
        byte[] b = HelloBytes();
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(16), 3); // ET_DYN
        Assert.Contains("ET_EXEC", Refused(b).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ProgramHeadersOutsideTheFile_AreRefused()
    {
        byte[] b = HelloBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(32), (ulong)b.Length - 10);
        Assert.Contains("program headers", Refused(b).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SegmentOutsideRam_IsRefusedByTheLoader()
    {
        byte[] b = HelloBytes();
        int ph = FirstLoadHeader(b);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(ph + 24), 0x1000); // p_paddr below RAM
        GuestImage image = GuestImage.Parse("low", b);
        using var m = new VirtMachine(new MachineConfig { MemorySize = 16UL << 20 });
        var e = Assert.Throws<GuestImageException>(() => m.Load(image));
        Assert.Contains("outside RAM", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ImageLargerThanRam_IsRefusedByTheLoader()
    {
        GuestImage image = GuestImage.Load(Repo.Guest("hello"));
        using var m = new VirtMachine(new MachineConfig { MemorySize = 8UL << 10 }); // 8 KiB: the RW segment is past it
        Assert.Throws<GuestImageException>(() => m.Load(image));
    }

    [Fact]
    public void MissingFile_IsAGuestImageException()
        => Assert.Throws<GuestImageException>(() => GuestImage.Load(Path.Combine(Path.GetTempPath(), "no-such-ferry-image.elf")));

    private static int FirstLoadHeader(byte[] elf)
    {
        int phoff = (int)BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(54));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(56));
        for (int i = 0; i < phnum; i++)
        {
            int ph = phoff + (i * phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(elf.AsSpan(ph)) == 1)
            {
                return ph;
            }
        }

        throw new InvalidOperationException("no PT_LOAD");
    }
}
