using System.Diagnostics;
using System.Reflection;
using System.Runtime.CompilerServices;
using Ferry.Machine.Memory;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Compiles the migration's code before a host's first move depends on it: every method of
/// the mechanisms (fault server, remote pager, locality window, push, page batches), the
/// transports (frame channels, sockets, the link shaper), the metrics, both ends of a
/// migration and guest memory. The start-up warm-up migrations compile only the paths they
/// happen to take: measured with the runtime's JIT events, a host's first real network fault
/// still compiled the fault server's reply and window, the link shaper's wait and the
/// destination's locality window on the fault path's own threads (in one traced first fault of
/// 2.5 ms, its request alone took 0.6 ms to leave).
/// </summary>
public static class CodePreparation
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static readonly string[] Namespaces =
    [
        "Ferry.Migration.Mechanisms",
        "Ferry.Migration.Transport",
        "Ferry.Migration.Metrics",
        "Ferry.Machine.Memory",
    ];

    /// <summary>Compiles every non-generic method of the types above (and of their nested types); returns how many, and how long it took.</summary>
    public static (int Methods, TimeSpan Took) Run()
    {
        long start = Stopwatch.GetTimestamp();
        int methods = Prepare(TypesInScope());
        return (methods, Stopwatch.GetElapsedTime(start));
    }

    /// <summary>The types <see cref="Run"/> compiles.</summary>
    internal static IEnumerable<Type> TypesInScope()
        => typeof(CodePreparation).Assembly.GetTypes().Concat(typeof(GuestMemory).Assembly.GetTypes()).Where(InScope);

    /// <summary>Compiles every non-generic method and constructor declared by <paramref name="types"/>; returns how many.</summary>
    internal static int Prepare(IEnumerable<Type> types)
    {
        int methods = 0;
        foreach (Type type in types)
        {
            if (type.ContainsGenericParameters)
            {
                continue;
            }

            foreach (MethodBase method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
            {
                if (method.IsAbstract || method.ContainsGenericParameters || (method.MethodImplementationFlags & MethodImplAttributes.InternalCall) != 0)
                {
                    continue;
                }

                try
                {
                    RuntimeHelpers.PrepareMethod(method.MethodHandle);
                    methods++;
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or TypeLoadException or MissingMethodException or BadImageFormatException)
                {
                    // (a method the runtime will not compile ahead, such as a P/Invoke stub: it compiles on first use, as before)
                }
            }
        }

        return methods;
    }

    private static bool InScope(Type type)
    {
        Type outer = type;
        while (outer.DeclaringType is Type declaring)
        {
            outer = declaring;
        }

        return outer == typeof(SourceMigration) || outer == typeof(DestinationMigration) || Namespaces.Contains(outer.Namespace);
    }
}
