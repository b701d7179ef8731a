using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace Ferry.Machine.Cpu.Translation;

/// <summary>
/// The translator's first tier: regions emitted as static methods of a collectible dynamic
/// assembly, marked NoOptimization so the JIT compiles them in its quick mode. The code is the
/// optimized tier's (same IL, same exactness), with registers in stack slots rather than host
/// registers; it costs a fraction of an optimizing compile, which is what code run only some
/// thousands of times (most of a Linux boot) can repay. Blocks that stay hot are compiled again
/// as optimized DynamicMethods (<see cref="Hart.PromotionThreshold"/>).
///
/// One per hart, used by its translation worker or, in the foreground, by the hart itself (a lock
/// covers a switch between the two while the worker still has work). The assembly is replaced after <see cref="MethodsPerAssembly"/> methods so that
/// dropped translations do not pin compiled code for the hart's whole life: an assembly is
/// collected once none of its blocks is referenced.
/// </summary>
internal sealed class QuickTier
{
    private const int MethodsPerAssembly = 2048;

    private readonly Lock _gate = new();
    private ModuleBuilder? _module;
    private int _methods;
    private int _types;

    /// <summary>Emits the regions as methods of one new type and returns their blocks, not yet compiled.</summary>
    public TranslatedBlock[] Translate(IReadOnlyList<TranslationRequest> requests)
    {
        lock (_gate)
        {
            return TranslateLocked(requests);
        }
    }

    private TranslatedBlock[] TranslateLocked(IReadOnlyList<TranslationRequest> requests)
    {
        if (_module is null || _methods >= MethodsPerAssembly)
        {
            _module = NewModule();
            _methods = 0;
        }

        TypeBuilder type = _module.DefineType($"Regions{_types++}", TypeAttributes.NotPublic | TypeAttributes.Abstract | TypeAttributes.Sealed);
        var lengths = new int[requests.Count];
        var ilBytes = new int[requests.Count];
        Type[] parameters = BlockTranslator.ParameterTypes;
        for (int i = 0; i < requests.Count; i++)
        {
            MethodBuilder method = type.DefineMethod($"rv{i}@{requests[i].Pc:x}", MethodAttributes.Public | MethodAttributes.Static, typeof(ulong), parameters);
            method.SetImplementationFlags(MethodImplAttributes.NoOptimization);
            method.InitLocals = false; // every local is written before it is read
            ILGenerator il = method.GetILGenerator(64 + (requests[i].Region.Count * 48));
            lengths[i] = BlockTranslator.Emit(il, requests[i]);
            ilBytes[i] = il.ILOffset;
        }

        _methods += requests.Count;
        Type created = type.CreateType();
        var blocks = new TranslatedBlock[requests.Count];
        for (int i = 0; i < requests.Count; i++)
        {
            var code = created.GetMethod($"rv{i}@{requests[i].Pc:x}", BindingFlags.Public | BindingFlags.Static)!.CreateDelegate<BlockCode>();
            blocks[i] = new TranslatedBlock(requests[i], lengths[i], ilBytes[i], code);
        }

        return blocks;
    }

    private static ModuleBuilder NewModule()
    {
        var name = new AssemblyName("Ferry.Translations");
        var assembly = AssemblyBuilder.DefineDynamicAssembly(name, AssemblyBuilderAccess.RunAndCollect);
        assembly.SetCustomAttribute(new CustomAttributeBuilder(
            typeof(IgnoresAccessChecksToAttribute).GetConstructor([typeof(string)])!,
            [typeof(Hart).Assembly.GetName().Name!]));
        return assembly.DefineDynamicModule(name.Name!);
    }
}
