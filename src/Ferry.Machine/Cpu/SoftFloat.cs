using System.Numerics;
using System.Runtime.CompilerServices;

namespace Ferry.Machine.Cpu;

/// <summary>
/// An IEEE 754 binary format, as the soft-float sees it (binary32 or binary64 in the low bits of a ulong).
/// </summary>
internal readonly struct FloatFormat
{
    /// <summary>Significand precision in bits, hidden bit included (24 or 53).</summary>
    public readonly int P;
    public readonly int FracBits;
    public readonly int Bias;
    public readonly ulong ExpMax;
    public readonly ulong FracMask;
    public readonly ulong SignBit;
    public readonly ulong Inf;
    public readonly ulong MaxFinite;
    public readonly ulong QuietBit;

    /// <summary>The canonical NaN RISC-V returns for every NaN result.</summary>
    public readonly ulong DefaultNaN;

    public FloatFormat(int precision, int expBits)
    {
        P = precision;
        FracBits = precision - 1;
        Bias = (1 << (expBits - 1)) - 1;
        ExpMax = (1UL << expBits) - 1;
        FracMask = (1UL << FracBits) - 1;
        SignBit = 1UL << (FracBits + expBits);
        Inf = ExpMax << FracBits;
        MaxFinite = Inf - 1;
        QuietBit = 1UL << (FracBits - 1);
        DefaultNaN = Inf | QuietBit;
    }

    public int Emin => 1 - Bias;

    public int Emax => Bias;
}

/// <summary>
/// Software IEEE 754 arithmetic with all five rounding modes and exact exception flags, as
/// QEMU's softfloat computes them for RISC-V: tininess detected after rounding, underflow only
/// when inexact, every NaN result the canonical NaN, invalid on signalling NaN inputs.
///
/// Values are raw bits (binary32 in the low 32 bits); <paramref name="rm"/> is a resolved
/// rounding mode (0..4); flags are accrued into <c>ref uint flags</c> (fflags bit layout).
/// The arithmetic is exact: significands are integers (UInt128 where products need it) with a
/// sticky bit ("jamming") below the rounding point, rounded once by <see cref="RoundPack"/>.
/// No allocation anywhere: the interpreter calls this on its hot path.
/// </summary>
internal static class SoftFloat
{
    public const uint NX = 1, UF = 2, OF = 4, DZ = 8, NV = 16;
    public const int Rne = 0, Rtz = 1, Rdn = 2, Rup = 3, Rmm = 4;

    public static readonly FloatFormat S = new(24, 8);
    public static readonly FloatFormat D = new(53, 11);

    // ---- classification

    public static bool IsNaN(ulong a, in FloatFormat f) => (a & ~f.SignBit) > f.Inf;

    public static bool IsSNaN(ulong a, in FloatFormat f) => IsNaN(a, f) && (a & f.QuietBit) == 0;

    private static bool IsInf(ulong a, in FloatFormat f) => (a & ~f.SignBit) == f.Inf;

    private static bool IsZero(ulong a, in FloatFormat f) => (a & ~f.SignBit) == 0;

    private static bool Sign(ulong a, in FloatFormat f) => (a & f.SignBit) != 0;

    /// <summary>Finite non-zero value = sig * 2^e (sig an integer, not normalized).</summary>
    private static void Unpack(ulong a, in FloatFormat f, out int e, out ulong sig)
    {
        int biased = (int)((a >> f.FracBits) & f.ExpMax);
        ulong frac = a & f.FracMask;
        if (biased == 0)
        {
            sig = frac;
            e = f.Emin - f.FracBits;
        }
        else
        {
            sig = frac | (1UL << f.FracBits);
            e = biased - f.Bias - f.FracBits;
        }
    }

    /// <summary>Unpacks and normalizes so the significand's top bit is bit <paramref name="top"/>.</summary>
    private static void UnpackNormalized(ulong a, in FloatFormat f, int top, out int e, out ulong sig)
    {
        Unpack(a, f, out e, out sig);
        int shift = top - (63 - BitOperations.LeadingZeroCount(sig));
        sig <<= shift;
        e -= shift;
    }

    /// <summary>fclass: one bit of ten.</summary>
    public static ulong Classify(ulong a, in FloatFormat f)
    {
        bool neg = Sign(a, f);
        ulong mag = a & ~f.SignBit;
        if (mag > f.Inf)
        {
            return (a & f.QuietBit) != 0 ? 1UL << 9 : 1UL << 8;
        }

        if (mag == f.Inf)
        {
            return neg ? 1UL << 0 : 1UL << 7;
        }

        if (mag == 0)
        {
            return neg ? 1UL << 3 : 1UL << 4;
        }

        if ((mag >> f.FracBits) == 0)
        {
            return neg ? 1UL << 2 : 1UL << 5;
        }

        return neg ? 1UL << 1 : 1UL << 6;
    }

    // ---- rounding

    /// <summary>Shifts right, ORing every bit shifted out into bit 0 (sticky).</summary>
    private static ulong ShiftRightJam(ulong v, int n)
    {
        if (n <= 0)
        {
            return v;
        }

        if (n >= 64)
        {
            return v != 0 ? 1UL : 0UL;
        }

        return (v >> n) | ((v << (64 - n)) != 0 ? 1UL : 0UL);
    }

    private static UInt128 ShiftRightJam(UInt128 v, int n)
    {
        if (n <= 0)
        {
            return v;
        }

        if (n >= 128)
        {
            return v != 0 ? UInt128.One : UInt128.Zero;
        }

        return (v >> n) | ((v << (128 - n)) != 0 ? UInt128.One : UInt128.Zero);
    }

    /// <summary>Reduces a 128-bit significand to at most 63 bits (sticky below), adjusting the exponent.</summary>
    private static ulong Jam128(UInt128 v, ref int e)
    {
        ulong hi = (ulong)(v >> 64);
        int bits = hi != 0 ? 128 - BitOperations.LeadingZeroCount(hi) : 64 - BitOperations.LeadingZeroCount((ulong)v);
        if (bits <= 63)
        {
            return (ulong)v;
        }

        int n = bits - 63;
        e += n;
        return (ulong)ShiftRightJam(v, n);
    }

    /// <summary>Whether rounding increments the kept magnitude. halfCmp: remainder below (-1), at (0) or above (1) half an ulp.</summary>
    private static bool RoundsUp(int rm, bool sign, bool odd, int halfCmp, bool inexact)
    {
        if (!inexact)
        {
            return false;
        }

        return rm switch
        {
            Rne => halfCmp > 0 || (halfCmp == 0 && odd),
            Rtz => false,
            Rdn => sign,
            Rup => !sign,
            _ => halfCmp >= 0,
        };
    }

    private static bool RoundsUp(int rm, bool sign, ulong kept, ulong rem, int shift)
    {
        ulong half = 1UL << (shift - 1);
        return RoundsUp(rm, sign, (kept & 1) != 0, rem > half ? 1 : rem == half ? 0 : -1, rem != 0);
    }

    /// <summary>
    /// Rounds sign * sig * 2^e (sig != 0; bit 0 may be a sticky bit, so sig must carry at least
    /// two bits below the format's precision when it is inexact) to the format.
    /// </summary>
    private static ulong RoundPack(bool sign, int e, ulong sig, in FloatFormat f, int rm, ref uint flags)
    {
        ulong signBit = sign ? f.SignBit : 0;
        if (sig == 0)
        {
            return signBit;
        }

        int lz = BitOperations.LeadingZeroCount(sig);
        sig <<= lz;
        int x = e - lz + 63; // value = (sig / 2^63) * 2^x, sig has bit 63 set
        int p = f.P;
        int shift = 64 - p;
        bool tiny = false;
        if (x < f.Emin)
        {
            // Tininess after rounding (RISC-V): tiny unless rounding to p bits with an unbounded
            // exponent reaches 2^emin.
            if (x < f.Emin - 1)
            {
                tiny = true;
            }
            else
            {
                ulong k = sig >> shift;
                tiny = !(RoundsUp(rm, sign, k, sig & ((1UL << shift) - 1), shift) && k + 1 == 1UL << p);
            }

            shift += f.Emin - x;
            x = f.Emin;
            if (shift > 64)
            {
                sig = 1; // below half of the smallest subnormal
                shift = 64;
            }
        }

        ulong kept, rem;
        if (shift == 64)
        {
            kept = 0;
            rem = sig;
        }
        else
        {
            kept = sig >> shift;
            rem = sig & ((1UL << shift) - 1);
        }

        if (RoundsUp(rm, sign, kept, rem, shift))
        {
            kept++;
        }

        if (rem != 0)
        {
            flags |= tiny ? NX | UF : NX;
        }

        if (kept == 1UL << p)
        {
            kept >>= 1;
            x++;
        }

        if (kept < 1UL << (p - 1))
        {
            return signBit | kept; // subnormal or zero
        }

        if (x > f.Emax)
        {
            flags |= OF | NX;
            bool toInf = rm switch
            {
                Rtz => false,
                Rdn => sign,
                Rup => !sign,
                _ => true,
            };
            return signBit | (toInf ? f.Inf : f.MaxFinite);
        }

        return signBit | ((ulong)(x + f.Bias) << f.FracBits) | (kept & f.FracMask);
    }

    private static ulong PropagateNaN(ulong a, ulong b, in FloatFormat f, ref uint flags)
    {
        if (IsSNaN(a, f) || IsSNaN(b, f))
        {
            flags |= NV;
        }

        return f.DefaultNaN;
    }

    // ---- arithmetic

    public static ulong Add(ulong a, ulong b, in FloatFormat f, int rm, ref uint flags) => AddSigned(a, b, false, f, rm, ref flags);

    public static ulong Sub(ulong a, ulong b, in FloatFormat f, int rm, ref uint flags) => AddSigned(a, b, true, f, rm, ref flags);

    private static ulong AddSigned(ulong a, ulong b, bool negateB, in FloatFormat f, int rm, ref uint flags)
    {
        if (IsNaN(a, f) || IsNaN(b, f))
        {
            return PropagateNaN(a, b, f, ref flags);
        }

        if (negateB)
        {
            b ^= f.SignBit;
        }

        bool sa = Sign(a, f), sb = Sign(b, f);
        if (IsInf(a, f))
        {
            if (IsInf(b, f) && sa != sb)
            {
                flags |= NV;
                return f.DefaultNaN;
            }

            return a;
        }

        if (IsInf(b, f))
        {
            return b;
        }

        bool za = IsZero(a, f), zb = IsZero(b, f);
        if (za && zb)
        {
            return sa == sb ? a : (rm == Rdn ? f.SignBit : 0);
        }

        if (za)
        {
            return b;
        }

        if (zb)
        {
            return a;
        }

        UnpackNormalized(a, f, 62, out int ea, out ulong ma);
        UnpackNormalized(b, f, 62, out int eb, out ulong mb);
        if (ea < eb)
        {
            (ea, eb) = (eb, ea);
            (ma, mb) = (mb, ma);
            (sa, sb) = (sb, sa);
        }

        mb = ShiftRightJam(mb, ea - eb);
        if (sa == sb)
        {
            return RoundPack(sa, ea, ma + mb, f, rm, ref flags);
        }

        if (ma == mb)
        {
            return rm == Rdn ? f.SignBit : 0;
        }

        return ma > mb ? RoundPack(sa, ea, ma - mb, f, rm, ref flags) : RoundPack(sb, ea, mb - ma, f, rm, ref flags);
    }

    public static ulong Mul(ulong a, ulong b, in FloatFormat f, int rm, ref uint flags)
    {
        if (IsNaN(a, f) || IsNaN(b, f))
        {
            return PropagateNaN(a, b, f, ref flags);
        }

        bool sign = Sign(a, f) ^ Sign(b, f);
        ulong signBit = sign ? f.SignBit : 0;
        if (IsInf(a, f) || IsInf(b, f))
        {
            if (IsZero(a, f) || IsZero(b, f))
            {
                flags |= NV;
                return f.DefaultNaN;
            }

            return signBit | f.Inf;
        }

        if (IsZero(a, f) || IsZero(b, f))
        {
            return signBit;
        }

        Unpack(a, f, out int ea, out ulong ma);
        Unpack(b, f, out int eb, out ulong mb);
        int e = ea + eb;
        ulong sig = Jam128((UInt128)ma * mb, ref e);
        return RoundPack(sign, e, sig, f, rm, ref flags);
    }

    public static ulong Div(ulong a, ulong b, in FloatFormat f, int rm, ref uint flags)
    {
        if (IsNaN(a, f) || IsNaN(b, f))
        {
            return PropagateNaN(a, b, f, ref flags);
        }

        bool sign = Sign(a, f) ^ Sign(b, f);
        ulong signBit = sign ? f.SignBit : 0;
        bool ia = IsInf(a, f), ib = IsInf(b, f), za = IsZero(a, f), zb = IsZero(b, f);
        if ((ia && ib) || (za && zb))
        {
            flags |= NV;
            return f.DefaultNaN;
        }

        if (ia)
        {
            return signBit | f.Inf;
        }

        if (ib || za)
        {
            return signBit;
        }

        if (zb)
        {
            flags |= DZ;
            return signBit | f.Inf;
        }

        UnpackNormalized(a, f, 62, out int ea, out ulong ma);
        UnpackNormalized(b, f, 62, out int eb, out ulong mb);
        UInt128 num = (UInt128)ma << 64;
        UInt128 q = num / mb;
        bool inexact = q * mb != num;
        int e = ea - eb - 64;
        ulong sig = Jam128(q | (inexact ? UInt128.One : UInt128.Zero), ref e);
        return RoundPack(sign, e, sig, f, rm, ref flags);
    }

    public static ulong Sqrt(ulong a, in FloatFormat f, int rm, ref uint flags)
    {
        if (IsNaN(a, f))
        {
            return PropagateNaN(a, a, f, ref flags);
        }

        if (IsZero(a, f))
        {
            return a;
        }

        if (Sign(a, f))
        {
            flags |= NV;
            return f.DefaultNaN;
        }

        if (IsInf(a, f))
        {
            return a;
        }

        UnpackNormalized(a, f, 62, out int e, out ulong m);
        if ((e & 1) != 0)
        {
            m <<= 1;
            e--;
        }

        UInt128 v = (UInt128)m << 64;
        e -= 64;
        UInt128 root = ISqrt(v);
        bool inexact = root * root != v;
        return RoundPack(false, e / 2, (ulong)root | (inexact ? 1UL : 0UL), f, rm, ref flags);
    }

    /// <summary>floor(sqrt(v)) for v below 2^128: a double estimate refined by Newton's iteration from above.</summary>
    private static UInt128 ISqrt(UInt128 v)
    {
        UInt128 x = (UInt128)Math.Sqrt((double)v) + 4096;
        while (true)
        {
            UInt128 y = (x + (v / x)) >> 1;
            if (y >= x)
            {
                break;
            }

            x = y;
        }

        while (x * x > v)
        {
            x--;
        }

        while ((x + 1) * (x + 1) <= v)
        {
            x++;
        }

        return x;
    }

    /// <summary>(±a × b) ± c with one rounding: fmadd, fmsub (negateC), fnmsub (negateProduct), fnmadd (both).</summary>
    public static ulong MulAdd(ulong a, ulong b, ulong c, bool negateProduct, bool negateC, in FloatFormat f, int rm, ref uint flags)
    {
        bool ia = IsInf(a, f), ib = IsInf(b, f), za = IsZero(a, f), zb = IsZero(b, f);
        bool infZero = (ia && zb) || (ib && za);
        if (IsNaN(a, f) || IsNaN(b, f) || IsNaN(c, f))
        {
            // The spec (and QEMU) raise invalid for inf × 0 even when the addend is a quiet NaN.
            if (IsSNaN(a, f) || IsSNaN(b, f) || IsSNaN(c, f) || (infZero && !IsNaN(a, f) && !IsNaN(b, f)))
            {
                flags |= NV;
            }

            return f.DefaultNaN;
        }

        if (infZero)
        {
            flags |= NV;
            return f.DefaultNaN;
        }

        bool sp = Sign(a, f) ^ Sign(b, f) ^ negateProduct;
        if (negateC)
        {
            c ^= f.SignBit;
        }

        bool sc = Sign(c, f);
        if (ia || ib)
        {
            if (IsInf(c, f) && sc != sp)
            {
                flags |= NV;
                return f.DefaultNaN;
            }

            return (sp ? f.SignBit : 0) | f.Inf;
        }

        if (IsInf(c, f))
        {
            return c;
        }

        bool zc = IsZero(c, f);
        if (za || zb)
        {
            if (zc)
            {
                return sp == sc ? c : (rm == Rdn ? f.SignBit : 0);
            }

            return c;
        }

        Unpack(a, f, out int ea, out ulong ma);
        Unpack(b, f, out int eb, out ulong mb);
        UInt128 p = (UInt128)ma * mb;
        int ep = ea + eb;
        if (zc)
        {
            ulong sig = Jam128(p, ref ep);
            return RoundPack(sp, ep, sig, f, rm, ref flags);
        }

        // Both terms with their top bit at bit 125 (two bits of headroom), then aligned with jamming.
        int pTop = 127 - (int)UInt128.LeadingZeroCount(p);
        p <<= 125 - pTop;
        ep -= 125 - pTop;
        Unpack(c, f, out int ec, out ulong mcs);
        int cTop = 63 - BitOperations.LeadingZeroCount(mcs);
        UInt128 mc = (UInt128)mcs << (125 - cTop);
        ec -= 125 - cTop;

        int e;
        if (ep >= ec)
        {
            mc = ShiftRightJam(mc, ep - ec);
            e = ep;
        }
        else
        {
            p = ShiftRightJam(p, ec - ep);
            e = ec;
        }

        bool sign;
        UInt128 sum;
        if (sp == sc)
        {
            sum = p + mc;
            sign = sp;
        }
        else if (p == mc)
        {
            return rm == Rdn ? f.SignBit : 0;
        }
        else if (p > mc)
        {
            sum = p - mc;
            sign = sp;
        }
        else
        {
            sum = mc - p;
            sign = sc;
        }

        ulong s = Jam128(sum, ref e);
        return RoundPack(sign, e, s, f, rm, ref flags);
    }

    // ---- sign injection, min/max, compares

    /// <summary>Orders non-NaN values as signed integers (both zeros are 0).</summary>
    private static long Key(ulong a, in FloatFormat f)
    {
        long mag = (long)(a & ~f.SignBit);
        return Sign(a, f) ? -mag : mag;
    }

    public static ulong Min(ulong a, ulong b, in FloatFormat f, ref uint flags) => MinMax(a, b, f, true, ref flags);

    public static ulong Max(ulong a, ulong b, in FloatFormat f, ref uint flags) => MinMax(a, b, f, false, ref flags);

    /// <summary>IEEE 754-2019 minimumNumber/maximumNumber (-0 below +0; a NaN loses to a number).</summary>
    private static ulong MinMax(ulong a, ulong b, in FloatFormat f, bool min, ref uint flags)
    {
        bool na = IsNaN(a, f), nb = IsNaN(b, f);
        if (na || nb)
        {
            if (IsSNaN(a, f) || IsSNaN(b, f))
            {
                flags |= NV;
            }

            return na && nb ? f.DefaultNaN : na ? b : a;
        }

        long ka = Key(a, f), kb = Key(b, f);
        if (ka == kb)
        {
            // Equal values: only the zeros differ (by sign).
            bool negA = Sign(a, f);
            return min ? (negA ? a : b) : (negA ? b : a);
        }

        return (ka < kb) == min ? a : b;
    }

    public static bool Eq(ulong a, ulong b, in FloatFormat f, ref uint flags)
    {
        if (IsNaN(a, f) || IsNaN(b, f))
        {
            if (IsSNaN(a, f) || IsSNaN(b, f))
            {
                flags |= NV;
            }

            return false;
        }

        return Key(a, f) == Key(b, f);
    }

    public static bool Lt(ulong a, ulong b, in FloatFormat f, ref uint flags)
    {
        if (IsNaN(a, f) || IsNaN(b, f))
        {
            flags |= NV;
            return false;
        }

        return Key(a, f) < Key(b, f);
    }

    public static bool Le(ulong a, ulong b, in FloatFormat f, ref uint flags)
    {
        if (IsNaN(a, f) || IsNaN(b, f))
        {
            flags |= NV;
            return false;
        }

        return Key(a, f) <= Key(b, f);
    }

    // ---- conversions

    /// <summary>
    /// Float to integer (fcvt.w/wu/l/lu): rounded with rm; NaN and overflow saturate with invalid
    /// only (no inexact, as QEMU); W forms return the 32-bit result sign-extended.
    /// </summary>
    public static ulong ToInt(ulong a, in FloatFormat f, bool word, bool unsigned, int rm, ref uint flags)
    {
        ulong max = unsigned ? (word ? uint.MaxValue : ulong.MaxValue) : (word ? (ulong)int.MaxValue : (ulong)long.MaxValue);
        ulong min = unsigned ? 0 : (word ? unchecked((ulong)int.MinValue) : unchecked((ulong)long.MinValue));
        ulong result;
        if (IsNaN(a, f))
        {
            flags |= NV;
            result = max;
        }
        else if (IsInf(a, f))
        {
            flags |= NV;
            result = Sign(a, f) ? min : max;
        }
        else if (IsZero(a, f))
        {
            result = 0;
        }
        else
        {
            bool sign = Sign(a, f);
            Unpack(a, f, out int e, out ulong m);
            ulong mag;
            bool inexact = false;
            bool overflow = false;
            if (e >= 0)
            {
                int bits = 64 - BitOperations.LeadingZeroCount(m);
                if (bits + e > 64)
                {
                    overflow = true;
                    mag = 0;
                }
                else
                {
                    mag = m << e;
                }
            }
            else
            {
                int shift = -e;
                ulong kept;
                int halfCmp;
                if (shift >= 64)
                {
                    kept = 0;
                    halfCmp = -1; // m < 2^53: far below half
                }
                else
                {
                    kept = m >> shift;
                    ulong rem = m & ((1UL << shift) - 1);
                    ulong half = 1UL << (shift - 1);
                    halfCmp = rem > half ? 1 : rem == half ? 0 : -1;
                    inexact = rem != 0;
                }

                if (shift >= 64)
                {
                    inexact = true;
                }

                mag = kept + (RoundsUp(rm, sign, (kept & 1) != 0, halfCmp, inexact) ? 1UL : 0UL);
            }

            if (!overflow)
            {
                if (unsigned)
                {
                    overflow = sign ? mag != 0 : mag > max;
                }
                else
                {
                    overflow = mag > (sign ? max + 1 : max);
                }
            }

            if (overflow)
            {
                flags |= NV;
                result = sign ? min : max;
            }
            else
            {
                if (inexact)
                {
                    flags |= NX;
                }

                result = sign ? (ulong)(-(long)mag) : mag;
            }
        }

        return word ? (ulong)(long)(int)(uint)result : result;
    }

    /// <summary>Integer to float (fcvt.s/d.w/wu/l/lu).</summary>
    public static ulong FromInt(ulong v, bool word, bool unsigned, in FloatFormat f, int rm, ref uint flags)
    {
        if (word)
        {
            v = unsigned ? (uint)v : (ulong)(long)(int)v;
        }

        bool sign = !unsigned && (long)v < 0;
        ulong mag = sign ? (ulong)(-(long)v) : v;
        return mag == 0 ? 0 : RoundPack(sign, 0, mag, f, rm, ref flags);
    }

    /// <summary>fcvt.s.d and fcvt.d.s.</summary>
    public static ulong Convert(ulong a, in FloatFormat from, in FloatFormat to, int rm, ref uint flags)
    {
        bool sign = Sign(a, from);
        if (IsNaN(a, from))
        {
            if (IsSNaN(a, from))
            {
                flags |= NV;
            }

            return to.DefaultNaN;
        }

        if (IsInf(a, from))
        {
            return (sign ? to.SignBit : 0) | to.Inf;
        }

        if (IsZero(a, from))
        {
            return sign ? to.SignBit : 0;
        }

        Unpack(a, from, out int e, out ulong m);
        return RoundPack(sign, e, m, to, rm, ref flags);
    }

    // ---- the round-to-nearest-even fast paths
    //
    // The common case computed by the host FPU (which rounds to nearest even) with the flags
    // derived exactly: inexact from an error-free residual (TwoSum for sums, FusedMultiplyAdd
    // for products, quotients and square roots; each residual is exactly representable while
    // nothing underflows, hence the magnitude bounds). Overflow, underflow, NaN and infinity
    // results are left to the soft-float path (the method returns false). Single precision is
    // computed in double: products of singles are exact there, and rounding a double sum,
    // product, quotient or root once more to single gives the correctly rounded single
    // (53 >= 2 * 24 + 2, so double rounding is innocuous for these operations).

    /// <summary>2^-969: products, quotients and roots above it leave a representable (non-underflowing) residual.</summary>
    private const double ResidualSafe = 2.0041683600089728e-292;

    public static bool TryAddDRne(ulong a, ulong b, bool negateB, out ulong result, ref uint flags)
    {
        double x = BitConverter.UInt64BitsToDouble(a), y = BitConverter.UInt64BitsToDouble(b);
        if (negateB)
        {
            y = -y;
        }

        double r = x + y;
        result = BitConverter.DoubleToUInt64Bits(r);
        if (!double.IsFinite(r))
        {
            return false;
        }

        // TwoSum (Knuth): r + err == x + y exactly; subnormal sums are always exact.
        double bb = r - x;
        double err = (x - (r - bb)) + (y - bb);
        if (err != 0)
        {
            flags |= NX;
        }

        return true;
    }

    public static bool TryMulDRne(ulong a, ulong b, out ulong result, ref uint flags)
    {
        double x = BitConverter.UInt64BitsToDouble(a), y = BitConverter.UInt64BitsToDouble(b);
        double r = x * y;
        result = BitConverter.DoubleToUInt64Bits(r);
        if (r == 0)
        {
            return x == 0 || y == 0; // exact zero (else it underflowed)
        }

        if (!double.IsFinite(r) || Math.Abs(r) < ResidualSafe)
        {
            return false;
        }

        if (Math.FusedMultiplyAdd(x, y, -r) != 0)
        {
            flags |= NX;
        }

        return true;
    }

    public static bool TryDivDRne(ulong a, ulong b, out ulong result, ref uint flags)
    {
        double x = BitConverter.UInt64BitsToDouble(a), y = BitConverter.UInt64BitsToDouble(b);
        double r = x / y;
        result = BitConverter.DoubleToUInt64Bits(r);
        if (x == 0)
        {
            return y != 0 && double.IsFinite(y); // exact zero (0/0 and 0/NaN are invalid or NaN)
        }

        if (!double.IsFinite(r) || !double.IsFinite(y) || Math.Abs(r) < ResidualSafe || Math.Abs(x) < ResidualSafe)
        {
            return false;
        }

        if (Math.FusedMultiplyAdd(r, y, -x) != 0)
        {
            flags |= NX;
        }

        return true;
    }

    public static bool TrySqrtDRne(ulong a, out ulong result, ref uint flags)
    {
        double x = BitConverter.UInt64BitsToDouble(a);
        result = a;
        if (!(x >= ResidualSafe) || !double.IsFinite(x))
        {
            return false;
        }

        double r = Math.Sqrt(x);
        result = BitConverter.DoubleToUInt64Bits(r);
        if (Math.FusedMultiplyAdd(r, r, -x) != 0)
        {
            flags |= NX;
        }

        return true;
    }

    /// <summary>2^1020: sums of terms below it cannot overflow.</summary>
    private const double SumSafe = 1.1235582092889474e307;

    /// <summary>
    /// Fused multiply-add (the product negated for fnmsub/fnmadd, the addend for fmsub/fnmadd)
    /// in double. Inexact iff the exact x·y + z differs from the result r: with p + pl = x·y
    /// (pl from FusedMultiplyAdd), s + e1 = p + z and d + e2 = s - r (TwoSum), x·y + z - r is
    /// the four-term sum d + e2 + e1 + pl, tested for zero exactly.
    /// </summary>
    public static bool TryMulAddDRne(ulong a, ulong b, ulong c, bool negateProduct, bool negateC, out ulong result, ref uint flags)
    {
        double x = BitConverter.UInt64BitsToDouble(a), y = BitConverter.UInt64BitsToDouble(b), z = BitConverter.UInt64BitsToDouble(c);
        if (negateProduct)
        {
            x = -x;
        }

        if (negateC)
        {
            z = -z;
        }

        double r = Math.FusedMultiplyAdd(x, y, z);
        result = BitConverter.DoubleToUInt64Bits(r);
        if (!double.IsFinite(r))
        {
            return false; // a NaN or infinite operand, or overflow
        }

        if (x == 0 || y == 0)
        {
            return true; // ±0 + z: exact (IEEE's signed-zero rules, as the host computed them)
        }

        double p = x * y;
        double ap = Math.Abs(p);
        if (ap < ResidualSafe || ap > SumSafe || Math.Abs(z) > SumSafe || Math.Abs(r) < ResidualSafe)
        {
            return false;
        }

        double pl = Math.FusedMultiplyAdd(x, y, -p);
        (double s, double e1) = TwoSum(p, z);
        (double d, double e2) = TwoSum(s, -r);
        if (!SumIsZero(d, e2, e1, pl))
        {
            flags |= NX;
        }

        return true;
    }

    /// <summary>Single-precision fused multiply-add in double, when x·y + z is exact there (then one rounding to single).</summary>
    public static bool TryMulAddSRne(ulong a, ulong b, ulong c, bool negateProduct, bool negateC, out ulong result, ref uint flags)
    {
        double x = BitConverter.Int32BitsToSingle((int)(uint)a), y = BitConverter.Int32BitsToSingle((int)(uint)b), z = BitConverter.Int32BitsToSingle((int)(uint)c);
        if (negateProduct)
        {
            x = -x;
        }

        if (negateC)
        {
            z = -z;
        }

        double p = x * y; // exact
        (double sum, double err) = TwoSum(p, z);
        float f = (float)sum;
        result = (uint)BitConverter.SingleToInt32Bits(f);
        if (err != 0 || !float.IsFinite(f) || double.IsNaN(sum) || (sum != 0 && Math.Abs(sum) < 1.1754943508222875e-38))
        {
            return false; // not exact in double (a second rounding could differ), special, or tiny
        }

        if ((double)f != sum)
        {
            flags |= NX;
        }

        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (double Sum, double Err) TwoSum(double a, double b)
    {
        double s = a + b;
        double bb = s - a;
        return (s, (a - (s - bb)) + (b - bb));
    }

    /// <summary>
    /// Whether a + b + c + d is exactly zero: Shewchuk's Grow-Expansion turns the terms into a
    /// non-overlapping expansion, which sums to zero only if every component is zero.
    /// </summary>
    private static bool SumIsZero(double a, double b, double c, double d)
    {
        (double q1, double h0) = TwoSum(b, a);
        (double q2, double g0) = TwoSum(c, h0);
        (double q3, double g1) = TwoSum(q2, q1);
        (double r1, double k0) = TwoSum(d, g0);
        (double r2, double k1) = TwoSum(r1, g1);
        (double r3, double k2) = TwoSum(r2, q3);
        return k0 == 0 && k1 == 0 && k2 == 0 && r3 == 0;
    }

    /// <summary>Single precision add/sub/mul/div/sqrt (op 0..4) in double, rounded once more to single.</summary>
    public static bool TryArithSRne(int op, ulong a, ulong b, out ulong result, ref uint flags)
    {
        double x = BitConverter.Int32BitsToSingle((int)(uint)a), y = BitConverter.Int32BitsToSingle((int)(uint)b);
        double r;
        bool inexact;
        switch (op)
        {
            case 0 or 1:
            {
                if (op == 1)
                {
                    y = -y;
                }

                r = x + y;
                double bb = r - x;
                inexact = (x - (r - bb)) + (y - bb) != 0;
                break;
            }

            case 2:
                r = x * y; // exact: 24 + 24 bits, far inside double's range
                inexact = false;
                break;
            case 3:
                r = x / y;
                inexact = double.IsFinite(r) && r != 0 && Math.FusedMultiplyAdd(r, y, -x) != 0;
                break;
            default:
                r = Math.Sqrt(x);
                inexact = x > 0 && double.IsFinite(x) && Math.FusedMultiplyAdd(r, r, -x) != 0;
                break;
        }

        float f = (float)r;
        result = (uint)BitConverter.SingleToInt32Bits(f);
        // Sums and differences of singles are exact when tiny; a tiny product, quotient or
        // root (|exact| < 2^-126, seen from the double, which is on the same side of 2^-126)
        // may underflow: the soft path decides. A zero double is an exact zero here (x × 0,
        // 0 / y, x / inf, sqrt(±0)): singles cannot underflow in double.
        if (!float.IsFinite(f) || double.IsNaN(r) || (r != 0 && Math.Abs(r) < 1.1754943508222875e-38 && op >= 2))
        {
            return false;
        }

        if (inexact || (double)f != r)
        {
            flags |= NX;
        }

        return true;
    }

    /// <summary>The 32-bit value of a register as single-precision operand: not NaN-boxed reads as the canonical NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Unbox(ulong reg) => (reg >> 32) == 0xFFFF_FFFF ? (uint)reg : 0x7FC0_0000UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Box(ulong single) => 0xFFFF_FFFF_0000_0000UL | (uint)single;
}
