using CsCheck;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Tests.Units;

public sealed class PageBitmapTests
{
    [Fact]
    public void SetAndClear_ReportThePreviousState()
    {
        var b = new PageBitmap(200);
        Assert.True(b.Set(130));
        Assert.False(b.Set(130));
        Assert.True(b.Get(130));
        Assert.False(b.Get(129));
        Assert.True(b.Clear(130));
        Assert.False(b.Clear(130));
        Assert.Equal(0, b.PopCount());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(130)]
    public void SetAll_SetsExactlyBitCountBits(int count)
    {
        var b = new PageBitmap(count);
        b.SetAll();
        Assert.Equal(count, b.PopCount());
        Assert.Equal(count - 1, b.NextSet(count - 1));
        Assert.Equal(-1, b.NextSet(count));
        int n = 0;
        foreach (int bit in b.EnumerateSet())
        {
            Assert.Equal(n++, bit);
        }

        Assert.Equal(count, n);
    }

    [Fact]
    public void Model_RandomOperationsMatchASet()
    {
        // Random sequences of set/clear on a bitmap and on a HashSet: every query must agree.
        Gen.Select(Gen.Int[1, 300], Gen.Int[0, 299].Array[0, 120], Gen.Bool.Array[120]).Sample((size, bits, sets) =>
        {
            var b = new PageBitmap(size);
            var model = new HashSet<int>();
            for (int i = 0; i < bits.Length; i++)
            {
                int bit = bits[i] % size;
                if (sets[i])
                {
                    Assert.Equal(model.Add(bit), b.Set(bit));
                }
                else
                {
                    Assert.Equal(model.Remove(bit), b.Clear(bit));
                }
            }

            Assert.Equal(model.Count, b.PopCount());
            var listed = new List<int>();
            foreach (int bit in b.EnumerateSet())
            {
                listed.Add(bit);
            }

            Assert.Equal(model.Order(), listed);
            for (int from = 0; from <= size; from += 7)
            {
                int expected = model.Where(x => x >= from).DefaultIfEmpty(-1).Min();
                Assert.Equal(expected, b.NextSet(from));
            }
        }, iter: 300);
    }

    [Fact]
    public void DrainInto_MovesBitsAndClearsTheSource()
    {
        var source = new PageBitmap(100);
        var target = new PageBitmap(100);
        source.Set(3);
        source.Set(99);
        target.Set(50);
        source.DrainInto(target);
        Assert.Equal(0, source.PopCount());
        Assert.Equal(3, target.PopCount());
        Assert.True(target.Get(3) && target.Get(50) && target.Get(99));
    }

    [Fact]
    public void SetAlgebra()
    {
        var a = new PageBitmap(70);
        var b = new PageBitmap(70);
        a.Set(1);
        a.Set(64);
        b.Set(64);
        b.Set(69);
        var or = new PageBitmap(70);
        or.CopyFrom(a);
        or.Or(b);
        Assert.Equal(3, or.PopCount());
        a.AndNot(b);
        Assert.True(a.Get(1));
        Assert.False(a.Get(64));
        Assert.Equal(1, a.PopCount());
    }

    [Fact]
    public void SizeMismatch_AndNegativeSize_AreRejected()
    {
        Assert.Throws<ArgumentException>(() => new PageBitmap(10).DrainInto(new PageBitmap(11)));
        Assert.Throws<ArgumentException>(() => new PageBitmap(10).CopyFrom(new PageBitmap(11)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageBitmap(-1));
    }

    [Fact]
    public void ConcurrentSets_AreNotLost()
    {
        var b = new PageBitmap(64 * 4);
        Parallel.For(0, 256, i => b.Set(i));
        Assert.Equal(256, b.PopCount());
    }
}
